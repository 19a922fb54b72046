"""Hub downloads against a local fake of the Hugging Face Hub HTTP API on 127.0.0.1."""

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from trainperf.data import govreport as G
from trainperf.data import hub

COMMIT = "a" * 40
SECRET = "hf_secret_token_value"


def parquet_bytes(tmp_path, rows, seed):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, 100, size=16).tolist() for _ in range(rows)]
    labels = [[-100] * 10 + x[10:] for x in ids]
    path = tmp_path / f"p{seed}.parquet"
    G.write_parquet(path, ids, labels)
    return path.read_bytes()


class FakeHub:
    """Repos: {(type, repo_id): {path: bytes}}; gated repos answer 401 GatedRepo."""

    def __init__(self, repos, gated=(), cut_once=()):
        self.repos, self.gated, self.cut_once = repos, set(gated), set(cut_once)
        self.requests = []
        hubself = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hubself.handle(self, head=True)

            def do_GET(self):
                hubself.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def send(self, h, status, body=b"", headers=None, head=False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def handle(self, h, *, head):
        path = h.path.split("?")[0]
        self.requests.append((h.command, path, h.headers.get("authorization")))
        m = re.fullmatch(r"/api/(datasets|models)/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?", path)
        r = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            kind, repo = m.group(1)[:-1], m.group(2)
        elif r:
            kind, repo = ("dataset" if r.group(1) else "model"), r.group(2)
        else:
            return self.send(h, 404, b"{}", head=head)
        if repo in self.gated:
            body = json.dumps({"error": "gated"}).encode()
            return self.send(h, 401, body, {"X-Error-Code": "GatedRepo"}, head)
        files = self.repos.get((kind, repo))
        if files is None:
            return self.send(h, 404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)
        if m and m.group(3) == "revision":
            info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": p} for p in files]}
            return self.send(h, 200, json.dumps(info).encode(), head=head)
        if m:
            tree = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in files.items()
            ]
            return self.send(h, 200, json.dumps(tree).encode(), head=head)
        data = files[r.group(4)]
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        start = 0
        if rng := h.headers.get("Range"):
            start = int(rng.split("=")[1].split("-")[0])
        body = data[start:]
        if not head and r.group(4) in self.cut_once:  # send half, then drop the connection
            self.cut_once.discard(r.group(4))
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return self.send(h, status, body, headers, head)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path


def test_govreport_and_model_download_into_the_mlperf_layout(tmp_path, hf_home):
    train, valid = parquet_bytes(tmp_path, 5, 1), parquet_bytes(tmp_path, 3, 2)
    repos = {
        ("dataset", hub.GOVREPORT_REPO): {
            "data/train-00000-of-00001-abc.parquet": train,
            "data/validation-00000-of-00001-def.parquet": valid,
            "README.md": b"# card",
        },
        ("model", "org/tiny"): {
            "config.json": b"{}",
            "model.safetensors": b"weights",
            "pytorch_model.bin": b"not wanted",
        },
    }
    fake = FakeHub(repos, cut_once={"data/train-00000-of-00001-abc.parquet"})
    try:
        dest = tmp_path / "D" / "scrolls_gov_report_8k"
        try:
            hub.download_govreport(dest, endpoint=fake.url, progress=False)
        except ValueError as exc:  # the cut connection: a rerun resumes and completes
            assert "rerun" in str(exc)
            hub.download_govreport(dest, endpoint=fake.url, progress=False)
        assert not fake.cut_once  # the interrupted transfer happened
        rows = G.read_split(dest, "train", max_seq_len=16)
        assert len(rows) == 5 and len(G.read_split(dest, "validation", max_seq_len=16)) == 3
        model = hub.download_model(
            tmp_path / "D" / "model", repo_id="org/tiny", endpoint=fake.url, progress=False
        )
        assert (model / "model.safetensors").read_bytes() == b"weights"
        assert not (model / "pytorch_model.bin").exists()
    finally:
        fake.close()


def test_gated_repo_names_the_fix_and_never_the_token(tmp_path, hf_home, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    fake = FakeHub({}, gated={hub.LLAMA2_70B_REPO})
    try:
        with pytest.raises(ValueError) as info:
            hub.download_model(tmp_path / "model", endpoint=fake.url, progress=False)
    finally:
        fake.close()
    msg = str(info.value)
    assert hub.LLAMA2_70B_REPO in msg and "HF_TOKEN" in msg and "licence" in msg
    assert SECRET not in msg
    assert any(auth == f"Bearer {SECRET}" for _, _, auth in fake.requests)


def test_unreachable_hub_is_one_clear_error(tmp_path, hf_home):
    with pytest.raises(ValueError, match="rerun"):
        hub.download_govreport(tmp_path / "x", endpoint="http://127.0.0.1:9", progress=False)
