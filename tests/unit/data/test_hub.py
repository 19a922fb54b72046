"""Hub downloads against a local fake of the Hugging Face Hub HTTP API on 127.0.0.1.

The fake answers what huggingface_hub 2.4's ``snapshot_download(local_dir=...)`` asks for:
``GET /api/{models,datasets}/{repo}/revision/{rev}`` (the commit), ``GET .../tree/{commit}`` (the
file list), then per file ``HEAD`` and ``GET /[datasets/]{repo}/resolve/{commit}/{path}`` (with
``X-Repo-Commit``, ``ETag``, ``Content-Length`` and ``Range`` support).
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import constants

from trainperf.data import govreport as G
from trainperf.data import hub

COMMIT = "a" * 40
SECRET = "hf_secret_token_value_123"
TRAIN = "data/train-00000-of-00001.parquet"
VALID = "data/validation-00000-of-00001.parquet"


def parquet_bytes(tmp_path, rows, seed, length=64):
    ids = [[1 + (seed * 7 + 13 * r + t) % 997 for t in range(length)] for r in range(rows)]
    labels = [[-100] * 40 + x[40:] for x in ids]
    path = tmp_path / f"p{seed}.parquet"
    G.write_parquet(path, ids, labels)
    return path.read_bytes()


class FakeHub:
    """Repos ``{(kind, repo_id): {path: bytes}}``; ``refuse`` maps a repo to (status, X-Error-Code);
    ``cut`` maps a file to "once" (drop the connection mid-body once) or "fail" (drop it, then
    answer HTTP 500 to the retry: the run fails)."""

    def __init__(self, repos, refuse=None, cut=None):
        self.repos, self.refuse, self.cut = repos, dict(refuse or {}), dict(cut or {})
        self.requests = []  # (method, path, authorization, range)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                fake.handle(self, head=True)

            def do_GET(self):
                fake.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def gets(self, path):
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + path)]

    @staticmethod
    def send(h, status, body=b"", headers=None, head=False, length=None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def handle(self, h, *, head):
        path = h.path.split("?")[0]
        rng = h.headers.get("Range")
        self.requests.append((h.command, path, h.headers.get("Authorization"), rng))
        api = re.fullmatch(r"/api/(dataset|model)s/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?", path)
        resolve = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if api:
            kind, repo = api.group(1), api.group(2)
        elif resolve:
            kind, repo = ("dataset" if resolve.group(1) else "model"), resolve.group(2)
        else:
            return self.send(h, 404, b"{}", head=head)
        if repo in self.refuse:
            status, code = self.refuse[repo]
            headers = {"X-Error-Code": code} if code else {}
            return self.send(h, status, b'{"error": "refused"}', headers, head)
        files = self.repos.get((kind, repo))
        if files is None:
            return self.send(h, 404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)
        if api and api.group(3) == "revision":
            info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": p} for p in files]}
            return self.send(h, 200, json.dumps(info).encode(), head=head)
        if api:
            tree = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in files.items()
            ]
            return self.send(h, 200, json.dumps(tree).encode(), head=head)
        name = resolve.group(4)
        if name not in files:
            return self.send(h, 404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
        data = files[name]
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = data[start:]
        mode = None if head else self.cut.get(name)
        if mode == "failed":
            del self.cut[name]
            return self.send(h, 500, b"{}", head=head)
        if mode in ("once", "fail"):  # headers for the whole body, half of it, then close
            self.cut[name] = "failed" if mode == "fail" else None
            self.send(h, 200, body[: len(body) // 2], headers, length=len(body))
            h.close_connection = True
            return None
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return self.send(h, 206 if start else 200, body, headers, head)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """No real HF home, token, cache or proxy; huggingface_hub read these at import time."""
    home = tmp_path / "hfhome"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return tmp_path


@pytest.fixture
def govreport_hub(hf_env):
    files = {
        TRAIN: parquet_bytes(hf_env, 5, 1),
        VALID: parquet_bytes(hf_env, 3, 2),
        "README.md": b"# card",
        ".gitattributes": b"*.parquet filter=lfs",
    }
    fake = FakeHub({("dataset", hub.GOVREPORT_REPO): files})
    yield fake, files
    fake.close()


def visible(folder):
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))


def test_govreport_lands_in_the_mlperf_layout(hf_env, govreport_hub):
    fake, files = govreport_hub
    dest = hf_env / "D" / "scrolls_gov_report_8k"
    assert hub.download_govreport(dest, endpoint=fake.url, progress=False) == dest
    assert visible(dest) == ["train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert (dest / "train-00000-of-00001.parquet").read_bytes() == files[TRAIN]
    assert len(G.read_split(dest, "train", max_seq_len=64)) == 5
    assert len(G.read_split(dest, "validation", max_seq_len=64)) == 3
    G.verify_dataset(dest, train_samples=5, eval_samples=3, max_seq_len=64)
    assert not fake.gets("README.md")
    fake.requests.clear()  # a rerun only asks for the commit: complete files are not fetched
    hub.download_govreport(dest, endpoint=fake.url, progress=False)
    assert [r[0] for r in fake.requests] == ["GET"] and "/revision/" in fake.requests[0][1]
    assert not list(hf_env.glob("D/**/*.incomplete")) and not list(dest.glob(".*.tmp-*"))


def test_dropped_connection_resumes_from_where_it_stopped(hf_env, govreport_hub, monkeypatch):
    fake, files = govreport_hub
    # huggingface_hub writes whole chunks (10 MB): smaller ones let a 2 kB file stop mid-way.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    fake.cut = {TRAIN: "once"}
    dest = hf_env / "gov"
    hub.download_govreport(dest, endpoint=fake.url, progress=False)
    first, retry = (r[3] for r in fake.gets(TRAIN))
    start = int(retry.removeprefix("bytes=").removesuffix("-"))
    assert first is None and 0 < start <= len(files[TRAIN]) // 2  # the retry asks for the rest
    assert (dest / "train-00000-of-00001.parquet").read_bytes() == files[TRAIN]


def test_interrupted_run_then_rerun_completes(hf_env, govreport_hub):
    fake, files = govreport_hub
    fake.cut = {TRAIN: "fail"}
    dest = hf_env / "gov"
    with pytest.raises(ValueError) as info:
        hub.download_govreport(dest, endpoint=fake.url, progress=False)
    msg = str(info.value)
    assert hub.GOVREPORT_REPO in msg and fake.url in msg and "HTTP 500" in msg and "rerun" in msg
    assert not (dest / "train-00000-of-00001.parquet").exists()
    fake.requests.clear()
    hub.download_govreport(dest, endpoint=fake.url, progress=False)
    assert (dest / "train-00000-of-00001.parquet").read_bytes() == files[TRAIN]
    assert (dest / "validation-00000-of-00001.parquet").read_bytes() == files[VALID]
    assert fake.gets(TRAIN) and not fake.gets(VALID)  # the finished file was kept


def test_model_download_takes_safetensors_config_and_tokenizer(hf_env):
    wanted = {
        "config.json": b"{}",
        "generation_config.json": b"{}",
        "model-00001-of-00002.safetensors": b"w1",
        "model-00002-of-00002.safetensors": b"w2",
        "model.safetensors.index.json": json.dumps(
            {
                "weight_map": {
                    "a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors",
                }
            }
        ).encode(),
        "tokenizer.json": b"{}",
        "tokenizer.model": b"sp",
        "tokenizer_config.json": b"{}",
        "special_tokens_map.json": b"{}",
    }
    unwanted = {
        "pytorch_model-00001-of-00002.bin": b"dup",
        "pytorch_model.bin.index.json": b"{}",
        "original/consolidated.00.pth": b"dup",
        "README.md": b"# card",
        "LICENSE.txt": b"licence",
    }
    broken = {
        "config.json": b"{}",
        "model.safetensors.index.json": wanted["model.safetensors.index.json"],
    }
    repos = {
        ("model", "org/tiny"): {**wanted, **unwanted},
        ("model", "org/broken"): broken,
        ("model", "org/bin-only"): {"config.json": b"{}", "pytorch_model.bin": b"w"},
    }
    fake = FakeHub(repos)
    try:
        dest = hub.download_model(
            hf_env / "model", repo_id="org/tiny", endpoint=fake.url, progress=False
        )
        assert visible(dest) == sorted(wanted) and not (dest / "original").exists()
        assert all((dest / name).read_bytes() == data for name, data in wanted.items())
        with pytest.raises(ValueError, match=r"org/broken .* incomplete \(missing 2 of 2 shards"):
            hub.download_model(
                hf_env / "b", repo_id="org/broken", endpoint=fake.url, progress=False
            )
        with pytest.raises(ValueError, match="org/bin-only has no .safetensors weights"):
            hub.download_model(
                hf_env / "c", repo_id="org/bin-only", endpoint=fake.url, progress=False
            )
    finally:
        fake.close()


@pytest.mark.parametrize(
    "status, code, via",
    [
        (401, "GatedRepo", "env"),
        (403, "GatedRepo", "argument"),
        (403, None, "env"),
        (401, None, None),
    ],
)
def test_refused_access_names_the_fix_and_never_the_token(hf_env, monkeypatch, status, code, via):
    if via == "env":
        monkeypatch.setenv("HF_TOKEN", SECRET)
    fake = FakeHub({}, refuse={hub.LLAMA2_70B_REPO: (status, code)})
    try:
        with pytest.raises(ValueError) as info:
            hub.download_model(
                hf_env / "model",
                token=SECRET if via == "argument" else None,
                endpoint=fake.url,
                progress=False,
            )
    finally:
        fake.close()
    msg = str(info.value)
    assert SECRET not in msg and "\n" not in msg
    assert hub.LLAMA2_70B_REPO in msg and f"HTTP {status}" in msg and "HF_TOKEN=" in msg
    assert f"accept the licence on {fake.url}/{hub.LLAMA2_70B_REPO}" in msg
    sent = {auth for *_, auth, _ in fake.requests}
    if via:
        assert sent == {f"Bearer {SECRET}"} and "the token sent has no access" in msg
    else:
        assert sent == {None} and "no token was sent" in msg


def test_unreachable_hub_is_one_clear_error(hf_env):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ValueError) as info:
        hub.download_govreport(hf_env / "x", endpoint=endpoint, progress=False)
    msg = str(info.value)
    assert hub.GOVREPORT_REPO in msg and endpoint in msg and "rerun" in msg and "\n" not in msg


def test_hf_endpoint_is_honoured(hf_env, govreport_hub):
    """HF_ENDPOINT is read when huggingface_hub is imported: a fresh process sees it."""
    fake, files = govreport_hub
    dest = hf_env / "gov"
    code = "import sys; from trainperf.data import hub; hub.download_govreport(sys.argv[1])"
    env = {**os.environ, "HF_ENDPOINT": fake.url, "HF_HUB_DISABLE_XET": "1"}
    root = Path(__file__).resolve().parents[3]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", code, str(dest)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert (dest / "validation-00000-of-00001.parquet").read_bytes() == files[VALID]
    assert fake.gets(TRAIN)


def test_tokenizer_download_takes_tokenizer_files_only(hf_env):
    files = {
        "tokenizer.json": b"{}",
        "tokenizer.model": b"sp",
        "tokenizer_config.json": b"{}",
        "special_tokens_map.json": b"{}",
        "config.json": b"{}",
        "model-00001-of-00059.safetensors": b"w" * 100,
        "consolidated.00.pt": b"dup",
    }
    fake = FakeHub({("model", "org/mixtral"): files, ("model", "org/no-json"): {"a.txt": b""}})
    try:
        dest = hub.download_tokenizer(
            hf_env / "tok", repo_id="org/mixtral", endpoint=fake.url, progress=False
        )
        assert visible(dest) == sorted(
            [
                "tokenizer.json",
                "tokenizer.model",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "config.json",
            ]
        )
        with pytest.raises(ValueError, match=r"org/no-json .* incomplete \(missing tokenizer"):
            hub.download_tokenizer(
                hf_env / "t2", repo_id="org/no-json", endpoint=fake.url, progress=False
            )
    finally:
        fake.close()
