"""The MLCommons R2 downloader against a fake metadata + dataset server on 127.0.0.1.

The fake serves ``/metadata/ds.uri`` (the base URL), ``/metadata/ds.md5`` and the files under
``/datasets/ds/`` with ``Range`` support; per test it can cut a transfer halfway, fail with HTTP
500, serve corrupted bytes, ignore ``Range``, demand Cloudflare Access headers, redirect to a
login page, or answer 404, and it records every request.
"""

import errno
import hashlib
import io
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
from rich.console import Console

from trainperf.data import mlcommons as M
from trainperf.data import transfer as T

NAME = "ds"
CLIENT_ID = "client-id-0f9e8d7c.access"
CLIENT_SECRET = "service-secret-5b4a39281706"
USER_TOKEN = "user-token-eyJhbGciOi-93c2"
SECRETS = (CLIENT_ID, CLIENT_SECRET, USER_TOKEN, "wrong-secret-77aa", "wrong-token-88bb")
SERVICE_ENV = {"CF_ACCESS_CLIENT_ID": CLIENT_ID, "CF_ACCESS_CLIENT_SECRET": CLIENT_SECRET}
SERVICE_HEADERS = {"CF-Access-Client-Id": CLIENT_ID, "CF-Access-Client-Secret": CLIENT_SECRET}
FAST = {"retries": 3, "backoff": 0.0, "timeout": 5.0, "progress": False}


def make_files():
    rng = random.Random(0)
    return {
        "a.bin": rng.randbytes(300_000),
        "b.bin": rng.randbytes(310_001),
        "tokenizer/tokenizer.json": b'{"model": {"type": "BPE"}}\n' * 500,
        "small file.txt": b"hello\n",
    }


def md5_text(files):
    lines = [
        f"{hashlib.md5(data).hexdigest()}  {'./' if i % 2 == 0 else ''}{rel}"
        for i, (rel, data) in enumerate(files.items())
    ]
    return "\n".join(lines[:2] + [""] + lines[2:]) + "\n"  # a blank line is ignored


class FakeR2:
    """Per-test behaviours. ``plan[rel]``: modes for that file's next requests ("cut", an
    HTTP status such as "500", "stall" (answer after 0.5 s), "corrupt", "ignore-range");
    ``always_corrupt``: files always served wrong; ``protect``: header sets, one of which a data
    request must carry (else 403); ``redirect``: a Location for data requests."""

    def __init__(self, files, md5=None):
        self.files, self.md5 = files, md5_text(files) if md5 is None else md5
        self.plan: dict[str, list[str]] = {}
        self.always_corrupt: set[str] = set()
        self.protect: list[dict[str, str]] | None = None
        self.redirect: str | None = None
        self.missing: set[str] = set()
        self.uri_body: str | None = None
        self.requests: list[tuple[str, str | None, dict[str, str]]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                try:
                    fake.handle(self)
                except ConnectionError:  # the client gave up on a stalled answer
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.uri_url = f"{self.url}/metadata/{NAME}.uri"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def data_requests(self, rel=None):
        prefix = f"/datasets/{NAME}/"
        return [
            r
            for r in self.requests
            if r[0].startswith(prefix) and rel in (None, r[0][len(prefix) :])
        ]

    @staticmethod
    def send(h, status, body=b"", headers=None, length=None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h):
        path, rng = unquote(h.path.split("?")[0]), h.headers.get("Range")
        with self.lock:
            self.requests.append((path, rng, dict(h.headers.items())))
        if path in self.missing:
            return self.send(h, 404, b"not found")
        if path == f"/metadata/{NAME}.uri":
            body = self.uri_body or f"{self.url}/datasets/{NAME}\n"
            return self.send(h, 200, body.encode())
        if path == f"/metadata/{NAME}.md5":
            return self.send(h, 200, self.md5.encode())
        rel = path.removeprefix(f"/datasets/{NAME}/")
        if rel == path or rel not in self.files:
            return self.send(h, 404, b"not found")
        if self.redirect:
            return self.send(h, 302, headers={"Location": self.redirect})
        if self.protect is not None and not any(
            all(h.headers.get(k) == v for k, v in accepted.items()) for accepted in self.protect
        ):
            return self.send(h, 403, b"forbidden")
        with self.lock:
            mode = self.plan[rel].pop(0) if self.plan.get(rel) else None
        return self.serve_file(h, rel, rng, mode)

    def serve_file(self, h, rel, rng, mode):
        data = self.files[rel]
        if mode and mode.isdigit():
            return self.send(h, int(mode), b"oops")
        if mode == "stall":
            time.sleep(0.5)
        if mode == "corrupt" or rel in self.always_corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = int(rng.removeprefix("bytes=").removesuffix("-")) if rng else 0
        if mode == "ignore-range":
            start = 0
        if start and start >= len(data):
            return self.send(h, 416, headers={"Content-Range": f"bytes */{len(data)}"})
        body, status = data[start:], 206 if start else 200
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        if mode == "cut":  # headers for the whole body, half of it, then close
            self.send(h, status, body[: len(body) // 2], headers, length=len(body))
            h.close_connection = True
            return None
        return self.send(h, status, body, headers)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET", "CF_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.setattr(T, "CHUNK_SIZE", 64 * 1024)  # several chunks per file


@pytest.fixture
def files():
    return make_files()


@pytest.fixture
def fake(files):
    server = FakeR2(files)
    yield server
    server.close()


def assert_complete(dest, files):
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    assert not list(dest.rglob("*.part")) and not list(dest.glob(".*.tmp-*"))


def assert_no_secret(*texts):
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_full_download_verifies_every_file(fake, files, tmp_path):
    lines = []
    report = M.download_dataset(fake.uri_url, tmp_path / "d", env={}, log=lines.append, **FAST)
    dest = tmp_path / "d"
    assert_complete(dest, files)
    assert report.dest == dest and report.already_present == ()
    assert report.downloaded == tuple(sorted(files))
    assert report.bytes_downloaded == sum(map(len, files.values())) and report.seconds >= 0
    assert (dest / f"{NAME}.md5").is_file() and M.verify_dataset_files(dest) == list(files)
    assert "4 file(s) downloaded, 0 already verified" in lines[-1]
    assert all(r[1] is None for r in fake.data_requests())  # fresh files: no Range
    assert fake.data_requests("small file.txt")  # the space was quoted


def test_listing_reads_uri_and_md5(fake, files):
    listing = M.fetch_listing(fake.uri_url, env={})
    assert listing.name == NAME and listing.base_url == f"{fake.url}/datasets/{NAME}"
    assert listing.md5_url == f"{fake.url}/metadata/{NAME}.md5"
    assert listing.files == tuple((r, hashlib.md5(d).hexdigest()) for r, d in files.items())


def test_dropped_connection_resumes_with_range(fake, files, tmp_path):
    fake.plan = {"a.bin": ["cut"]}
    M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    (first, _, _), (_, retry, _) = fake.data_requests("a.bin")
    start = int(retry.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= len(files["a.bin"]) // 2
    assert_complete(tmp_path, files)


@pytest.mark.parametrize(
    "mode, reason", [("500", "HTTP 500"), ("429", "HTTP 429"), ("stall", "timed out")]
)
def test_transient_error_is_retried(fake, files, tmp_path, mode, reason):
    fake.plan = {"b.bin": [mode]}
    lines = []
    options = {**FAST, "timeout": 0.2} if mode == "stall" else FAST
    report = M.download_dataset(fake.uri_url, tmp_path, env={}, log=lines.append, **options)
    assert len(fake.data_requests("b.bin")) == 2 and "b.bin" in report.downloaded
    assert any(f"b.bin: {reason}" in line and "retry 1 of 3" in line for line in lines)
    assert_complete(tmp_path, files)


def test_client_error_is_not_retried(fake, files, tmp_path):
    fake.plan = {"b.bin": ["400"]}
    with pytest.raises(
        M.DownloadError, match=r"b\.bin answered HTTP 400 Bad Request; check the URL"
    ):
        M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    assert len(fake.data_requests("b.bin")) == 1


def test_persistent_server_error_fails_after_the_retries(fake, files, tmp_path):
    fake.plan = {"b.bin": ["500"] * 10}
    with pytest.raises(M.DownloadError, match=r"1 of 4 file\(s\) failed: .*b\.bin: HTTP 500"):
        M.download_dataset(fake.uri_url, tmp_path, env={}, **{**FAST, "retries": 2})
    assert len(fake.data_requests("b.bin")) == 3
    assert (tmp_path / "a.bin").read_bytes() == files["a.bin"]  # the others completed
    assert not (tmp_path / "b.bin").exists()


def test_corrupt_file_is_fetched_again_once(fake, files, tmp_path):
    fake.plan = {"a.bin": ["corrupt"]}
    M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    assert [r[1] for r in fake.data_requests("a.bin")] == [None, None]  # from scratch
    assert_complete(tmp_path, files)


def test_always_corrupt_file_fails_and_never_gets_its_name(fake, files, tmp_path):
    fake.always_corrupt = {"tokenizer/tokenizer.json"}
    with pytest.raises(M.DownloadError) as info:
        M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    msg = str(info.value)
    expected = hashlib.md5(files["tokenizer/tokenizer.json"]).hexdigest()
    assert "tokenizer/tokenizer.json: MD5 " in msg and f"expected {expected}" in msg
    assert len(fake.data_requests("tokenizer/tokenizer.json")) == 2
    assert not (tmp_path / "tokenizer" / "tokenizer.json").exists()
    assert not (tmp_path / "tokenizer" / "tokenizer.json.part").exists()
    assert (tmp_path / "a.bin").read_bytes() == files["a.bin"]


@pytest.mark.parametrize("how", ["403", "login-redirect"])
def test_protected_dataset_without_credentials_names_the_variables(
    fake, tmp_path, capsys, caplog, how
):
    if how == "403":
        fake.protect = [SERVICE_HEADERS]
    else:
        fake.redirect = "https://mlcommons.cloudflareaccess.com/cdn-cgi/access/login/x?kid=1"
    with pytest.raises(M.DownloadError) as info:
        M.download_dataset(fake.uri_url, tmp_path, env={}, **{**FAST, "progress": True})
    msg = str(info.value)
    assert "is a protected MLCommons dataset (HTTP 403" in msg or "HTTP 302 to the" in msg
    for var in ("CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET", "CF_ACCESS_TOKEN"):
        assert var in msg
    assert f"cloudflared access login {fake.url}" in msg and "\n" not in msg
    assert not list(tmp_path.rglob("*.bin"))


def test_redirect_to_another_host_is_not_followed(fake, tmp_path):
    fake.redirect = "http://elsewhere.invalid/a.bin"
    with pytest.raises(M.DownloadError, match=r"redirects to another host \(elsewhere.invalid\)"):
        M.download_dataset(fake.uri_url, tmp_path, env=SERVICE_ENV, **FAST)


@pytest.mark.parametrize("via", ["service-env-arg", "service-os-environ", "user-token"])
def test_credentials_are_sent_and_never_shown(
    fake, files, tmp_path, capsys, caplog, monkeypatch, via
):
    fake.protect = [SERVICE_HEADERS, {"cf-access-token": USER_TOKEN}]
    env = {"CF_ACCESS_TOKEN": USER_TOKEN} if via == "user-token" else SERVICE_ENV
    if via == "service-os-environ":
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        env = None
    lines = []
    options = {**FAST, "progress": True}
    M.download_dataset(fake.uri_url, tmp_path, env=env, log=lines.append, **options)
    assert_complete(tmp_path, files)
    sent = fake.data_requests()[0][2]
    if via == "user-token":
        assert sent.get("Cf-Access-Token") == USER_TOKEN
    else:
        assert (sent["Cf-Access-Client-Id"], sent["Cf-Access-Client-Secret"]) == (
            CLIENT_ID,
            CLIENT_SECRET,
        )
    out = capsys.readouterr()
    assert_no_secret(out.out, out.err, caplog.text, *lines)


@pytest.mark.parametrize(
    "env, names",
    [
        ({**SERVICE_ENV, "CF_ACCESS_CLIENT_SECRET": "wrong-secret-77aa"}, "CF_ACCESS_CLIENT_ID + "),
        ({"CF_ACCESS_TOKEN": "wrong-token-88bb"}, "CF_ACCESS_TOKEN"),
    ],
)
def test_refused_credentials_say_so_without_values(fake, tmp_path, capsys, caplog, env, names):
    fake.protect = [SERVICE_HEADERS]
    lines = []
    with pytest.raises(M.DownloadError) as info:
        M.download_dataset(
            fake.uri_url, tmp_path, env=env, log=lines.append, **{**FAST, "progress": True}
        )
    msg = str(info.value)
    assert f"refused the credentials from {names}" in msg and "(HTTP 403)" in msg
    out = capsys.readouterr()
    assert_no_secret(msg, repr(info.value), out.out, out.err, caplog.text, *lines)


def test_half_a_service_token_is_a_clear_error(fake, tmp_path):
    with pytest.raises(M.DownloadError, match="CF_ACCESS_CLIENT_ID is set but CF_ACCESS_CLIENT_"):
        M.download_dataset(fake.uri_url, tmp_path, env={"CF_ACCESS_CLIENT_ID": CLIENT_ID}, **FAST)
    assert not fake.requests


def test_rerun_requests_no_data_file(fake, files, tmp_path):
    M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    fake.requests.clear()
    lines = []
    report = M.download_dataset(fake.uri_url, tmp_path, env={}, log=lines.append, **FAST)
    assert fake.data_requests() == [] and len(fake.requests) == 2  # .uri and .md5
    assert report.downloaded == () and report.already_present == tuple(sorted(files))
    assert report.bytes_downloaded == 0 and "0 file(s) downloaded, 4 already verified" in lines[-1]


def test_wrong_final_file_is_downloaded_again(fake, files, tmp_path):
    (tmp_path / "a.bin").write_bytes(b"stale")
    report = M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    assert "a.bin" in report.downloaded and len(fake.data_requests("a.bin")) == 1
    assert_complete(tmp_path, files)


@pytest.mark.parametrize(
    "part, mode, ranges",
    [
        ("prefix", None, ["bytes=1000-"]),  # resumed
        ("garbage", None, ["bytes=1000-", None]),  # wrong MD5 after resuming: from scratch
        ("prefix", "ignore-range", ["bytes=1000-"]),  # 200 to a Range: the whole file again
        ("too-long", None, ["bytes=300001-", None]),  # 416: start over
        ("complete", None, ["bytes=300000-"]),  # 416 and the part already verifies
    ],
)
def test_existing_part_is_resumed(fake, files, tmp_path, part, mode, ranges):
    data = files["a.bin"]
    content = {
        "prefix": data[:1000],
        "garbage": b"x" * 1000,
        "too-long": data + b"!",
        "complete": data,
    }[part]
    (tmp_path / "a.bin.part").write_bytes(content)
    fake.plan = {"a.bin": [mode]} if mode else {}
    M.download_dataset(fake.uri_url, tmp_path, env={}, include=["a.bin"], **FAST)
    assert [r[1] for r in fake.data_requests("a.bin")] == ranges
    assert (tmp_path / "a.bin").read_bytes() == data and not (tmp_path / "a.bin.part").exists()


def closed_port_url():
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/metadata/{NAME}.uri"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("not-uri", "is not an MLCommons dataset metadata URL"),
        ("ftp", "is not an MLCommons dataset metadata URL"),
        ("closed-port", "tried 2 times); check the URL; the MLCommons metadata URLs are listed"),
        ("uri-404", "was not found (HTTP 404); check the URL; the MLCommons metadata URLs"),
        ("md5-404", "no checksum list at http"),
        ("uri-not-a-url", "does not hold a dataset URL"),
    ],
)
def test_wrong_urls_are_clear_errors(fake, tmp_path, case, expected):
    url = {
        "not-uri": f"{fake.url}/metadata/{NAME}.md5",
        "ftp": f"ftp://127.0.0.1/metadata/{NAME}.uri",
        "closed-port": closed_port_url(),
    }.get(case, fake.uri_url)
    fake.missing = {"uri-404": {f"/metadata/{NAME}.uri"}, "md5-404": {f"/metadata/{NAME}.md5"}}.get(
        case, set()
    )
    fake.uri_body = "<html>login</html>" if case == "uri-not-a-url" else None
    with pytest.raises(M.DownloadError) as info:
        M.download_dataset(url, tmp_path / "d", env={}, **{**FAST, "retries": 1})
    assert expected in str(info.value) and "\n" not in str(info.value)
    if case in ("not-uri", "ftp"):
        assert "copy the .uri link from the benchmark's README" in str(info.value)
        assert not fake.requests
    if case == "md5-404":
        assert "the dataset metadata is incomplete, report it to MLCommons" in str(info.value)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("not-a-checksum  a.bin", "line 1 is not '<md5>  <path>'"),
        (f"{'0' * 32}", "line 1 is not '<md5>  <path>'"),
        (f"{'0' * 32}  ../evil", "outside the dataset folder"),
        (f"{'0' * 32}  ./sub/../../evil", "outside the dataset folder"),
        (f"{'0' * 32}  /tmp/evil", "outside the dataset folder"),
    ],
)
def test_malformed_md5_list_writes_nothing(files, tmp_path, line, expected):
    fake = FakeR2(files, md5=line + "\n")
    try:
        dest = tmp_path / "inner" / "d"
        with pytest.raises(M.DownloadError, match=expected):
            M.download_dataset(fake.uri_url, dest, env={}, **FAST)
    finally:
        fake.close()
    assert not fake.data_requests() and not (tmp_path / "inner").exists()
    assert not (tmp_path / "evil").exists() and not list(tmp_path.rglob("evil"))


def test_include_selects_a_subset(fake, files, tmp_path):
    report = M.download_dataset(
        fake.uri_url, tmp_path, env={}, include=["tokenizer.json", "a.*"], **FAST
    )
    assert report.downloaded == ("a.bin", "tokenizer/tokenizer.json")
    assert not (tmp_path / "b.bin").exists() and {
        r[0].rsplit("/", 1)[1] for r in fake.data_requests()
    } == {
        "a.bin",
        "tokenizer.json",
    }
    assert M.verify_dataset_files(tmp_path, include=["tokenizer/*"]) == ["tokenizer/tokenizer.json"]
    with pytest.raises(
        M.DownloadError, match=r"no file of .* matches the include patterns \['\*.gz'\]"
    ):
        M.download_dataset(fake.uri_url, tmp_path, env={}, include=["*.gz"], **FAST)


def test_verify_dataset_files(fake, files, tmp_path):
    M.download_dataset(fake.uri_url, tmp_path, env={}, **FAST)
    md5_file = tmp_path / f"{NAME}.md5"
    assert M.verify_dataset_files(tmp_path, md5_file) == list(files)
    (tmp_path / "a.bin").write_bytes(files["a.bin"][:1000])  # truncated
    (tmp_path / "b.bin").unlink()
    with pytest.raises(M.DownloadError) as info:
        M.verify_dataset_files(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"2 of 4 file(s) in {tmp_path} failed verification against ds.md5")
    assert "a.bin has MD5 " in msg and "b.bin is missing" in msg and "rerun the download" in msg
    with pytest.raises(M.DownloadError, match="no .md5 list in"):
        M.verify_dataset_files(tmp_path / "nowhere")


class FullDisk(io.FileIO):
    """A .part whose disk fills up after its first chunk."""

    def write(self, data):
        if self.tell() > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_disk_full_keeps_the_part_and_a_rerun_resumes(fake, files, tmp_path, monkeypatch):
    real_open = T.open_for_writing
    monkeypatch.setattr(
        T, "open_for_writing", lambda p, *, append: FullDisk(p, "ab" if append else "wb")
    )
    with pytest.raises(M.DownloadError) as info:
        M.download_dataset(fake.uri_url, tmp_path, env={}, include=["a.bin"], **FAST)
    msg = str(info.value)
    assert (
        msg.startswith(f"disk full while writing {tmp_path / 'a.bin.part'} (")
        and "-d folder" in msg
    )
    assert (tmp_path / "a.bin.part").stat().st_size == T.CHUNK_SIZE
    assert not (tmp_path / "a.bin").exists() and len(fake.data_requests("a.bin")) == 1
    monkeypatch.setattr(T, "open_for_writing", real_open)
    M.download_dataset(fake.uri_url, tmp_path, env={}, include=["a.bin"], **FAST)
    assert fake.data_requests("a.bin")[-1][1] == f"bytes={64 * 1024}-"
    assert (tmp_path / "a.bin").read_bytes() == files["a.bin"]


def test_progress_bar_on_a_console(fake, files, tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    M.download_dataset(
        fake.uri_url, tmp_path, env={}, console=console, **{**FAST, "progress": True}
    )
    assert_complete(tmp_path, files)
    assert f"{NAME} " in out.getvalue() and "━" in out.getvalue()


def test_verify_download_needs_a_md5_list(tmp_path) -> None:
    import pytest

    from trainperf.data.mlcommons import verify_download

    with pytest.raises(ValueError, match=r"no \.md5 list in .*trainperf download URI -d"):
        verify_download(tmp_path / "none")
