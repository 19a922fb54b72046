"""HTTP file transfers for the MLCommons downloader: credentials, retries, resume, MD5.

``Client.fetch_file`` makes one listed file present and verified: bytes stream into
``<file>.part`` (resumed with an HTTP ``Range`` request), transient failures (HTTP 5xx/408/429,
dropped or refused connections, timeouts, short bodies) are retried with exponential backoff, and
the part is renamed to the final name only once its MD5 matches; a wrong MD5 is fetched once more
from scratch, then reported. Redirects are followed on the same origin only, so credentials never
leave it. The dataset protocol (``.uri``, ``.md5``, many files) lives in ``mlcommons.py``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

CHUNK_SIZE = 1 << 20  # bytes per read/write while streaming a file
SERVICE_TOKEN_VARS = ("CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET")
USER_TOKEN_VAR = "CF_ACCESS_TOKEN"
USER_AGENT = "trainperf (MLCommons R2 downloader protocol)"
URL_FIX = "check the URL; the MLCommons metadata URLs are listed in the benchmark README"

Log = Callable[[str], None]


class DownloadError(ValueError):
    """A download or verification that did not end with every selected file verified."""


class Fatal(DownloadError):
    """An error that stops every transfer (refused credentials, disk full)."""


class Stopped(Exception):
    """A transfer abandoned because another one failed fatally."""


class ShortBody(ConnectionError):
    """The connection closed before Content-Length bytes arrived (retried, resuming)."""


@dataclass(frozen=True)
class Job:
    rel: str
    md5: str
    url: str
    path: Path

    @property
    def part(self) -> Path:
        return self.path.with_name(self.path.name + ".part")


def hash_file(path: Path) -> hashlib._Hash:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            md5.update(chunk)
    return md5


def disk_error(exc: OSError, path: Path) -> Fatal:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e9:.2f} GB free"
        except OSError:
            free = "free space unknown"
        return Fatal(
            f"disk full while writing {path} ({free}); free space or choose another -d folder, "
            "then rerun to resume"
        )
    return Fatal(
        f"cannot write {path} ({exc.strerror or exc}); choose another -d folder or fix its "
        "permissions, then rerun to resume"
    )


def open_for_writing(path: Path, *, append: bool) -> BinaryIO:
    """Every ``.part`` is opened here (one place, so tests can simulate a full disk)."""
    return open(path, "ab" if append else "wb")


# ---------------------------------------------------------------- HTTP


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects within the origin only: credentials never go to another host, and a
    redirect to a Cloudflare Access login surfaces as an HTTPError (read as "refused")."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def credential_headers(env: Mapping[str, str]) -> dict[str, str]:
    client_id, secret = (env.get(v, "").strip() for v in SERVICE_TOKEN_VARS)
    if bool(client_id) != bool(secret):
        have, lack = SERVICE_TOKEN_VARS if client_id else SERVICE_TOKEN_VARS[::-1]
        raise DownloadError(f"{have} is set but {lack} is not; set both (one service token)")
    headers = {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret}
    headers = {k: v for k, v in headers.items() if v}
    if token := env.get(USER_TOKEN_VAR, "").strip():
        headers["cf-access-token"] = token
    return headers


def transient(exc: BaseException) -> str | None:
    """A short reason when ``exc`` is worth retrying, else None."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}" if exc.code in (408, 429) or exc.code >= 500 else None
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return "DNS lookup failed" if reason.errno == socket.EAI_AGAIN else None
        return transient(reason) if isinstance(reason, BaseException) else None
    if isinstance(exc, ConnectionError | TimeoutError | http.client.HTTPException):
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return None


def content_length(resp: http.client.HTTPResponse) -> int | None:
    value = resp.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


class Tally:
    """Bytes per file (total once known, on disk) for the progress bar, and bytes received."""

    def __init__(self, bar, task) -> None:
        self.bar, self.task, self.lock = bar, task, threading.Lock()
        self.size: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.received = 0

    def set(self, rel: str, *, size: int | None, done: int) -> None:
        with self.lock:
            if size is not None:
                self.size[rel] = size
            self.done[rel] = done
            self._show()

    def advance(self, rel: str, n: int) -> None:
        with self.lock:
            self.done[rel] += n
            self.received += n
            self._show()

    def _show(self) -> None:
        if self.bar is not None:
            total = sum(self.size.values()) or None
            self.bar.update(self.task, total=total, completed=sum(self.done.values()))


class Part:
    """A file's ``.part`` and the MD5 of the bytes it holds, kept across attempts."""

    def __init__(self, path: Path) -> None:
        self.path, self.size, self.md5 = path, -1, hashlib.md5()

    def sync(self) -> int:
        """Bytes on disk, rehashed unless this object wrote exactly them."""
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size != self.size:
            self.md5 = hash_file(self.path) if size else hashlib.md5()
            self.size = size
        return size

    def write_from(self, resp, *, append: bool, tally: Tally, rel: str, stop) -> int:
        """Stream ``resp`` into the part (after its bytes, or replacing them); bytes received."""
        try:
            f = open_for_writing(self.path, append=append)
        except OSError as exc:
            raise disk_error(exc, self.path) from None
        if not append:
            self.md5, self.size = hashlib.md5(), 0
        got = 0
        try:
            while chunk := resp.read(CHUNK_SIZE):  # network errors propagate (retried)
                if stop.is_set():
                    raise Stopped
                try:
                    f.write(chunk)
                except OSError as exc:
                    raise disk_error(exc, self.path) from None
                self.md5.update(chunk)
                self.size, got = self.size + len(chunk), got + len(chunk)
                tally.advance(rel, len(chunk))
        finally:
            try:
                f.close()
            except OSError as exc:
                raise disk_error(exc, self.path) from None
        return got


class Client:
    """HTTP with credentials, retries and messages that name the fix (never a credential)."""

    def __init__(
        self,
        env: Mapping[str, str] | None,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        log: Log | None = None,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise DownloadError(
                f"retries({retries}) and backoff({backoff}) must be >= 0 and timeout({timeout}) "
                "> 0; pass values in those ranges"
            )
        self.env = os.environ if env is None else env
        self.headers = credential_headers(self.env)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.log = log or (lambda _: None)
        self.opener = urllib.request.build_opener(SameOriginRedirects)
        self.stop = threading.Event()
        self.tally = Tally(None, None)

    def scrub(self, exc: DownloadError) -> DownloadError:
        """``exc`` with any credential value masked (a last guard: messages carry none)."""
        message = str(exc)
        for secret in self.headers.values():
            message = message.replace(secret, "***")
        return type(exc)(message)

    def open(self, url: str, *, start: int = 0) -> http.client.HTTPResponse:
        headers = {"User-Agent": USER_AGENT, **self.headers}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(url, headers=headers)
        return self.opener.open(request, timeout=self.timeout)

    def retry(self, url: str, attempt: Callable[[], object], *, not_found: str) -> None:
        """Call ``attempt`` until it succeeds, sleeping ``backoff * 2**n`` between tries."""
        for n in range(self.retries + 1):
            if self.stop.is_set():
                raise Stopped
            try:
                attempt()
                return
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()
                reason = transient(exc)
                if reason is None:
                    raise self.error(exc, url, not_found=not_found) from None
                if n == self.retries:
                    raise DownloadError(
                        f"{url}: {reason} (tried {n + 1} times); {URL_FIX}, and the network or "
                        "proxy settings, then rerun: downloads resume where they stopped"
                    ) from None
                delay = self.backoff * 2**n
                self.log(f"{url}: {reason}; retry {n + 1} of {self.retries} in {delay:.1f} s")
                self.stop.wait(delay)  # returns early when another transfer failed fatally

    def error(self, exc: BaseException, url: str, *, not_found: str) -> DownloadError:
        """The message for a failure that retrying will not fix."""
        if isinstance(exc, urllib.error.HTTPError):
            if exc.code in (401, 403):
                return self.refused(url, f"HTTP {exc.code}")
            if 300 <= exc.code < 400:
                host = urlsplit(urljoin(url, exc.headers.get("Location", ""))).hostname or "?"
                if host.endswith("cloudflareaccess.com"):
                    return self.refused(url, f"HTTP {exc.code} to the Cloudflare Access login")
                return Fatal(
                    f"{url} redirects to another host ({host}), which is not followed so that "
                    f"credentials stay with the dataset's host; {URL_FIX}"
                )
            if exc.code == 404:
                return DownloadError(f"{url} was not found (HTTP 404); {not_found}")
            return DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}; {URL_FIX}")
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, socket.gaierror):
            host = urlsplit(url).hostname
            return DownloadError(
                f"cannot resolve {host} ({reason.strerror}) for {url}: no network, a proxy "
                f"needed (set HTTPS_PROXY) or a wrong host; {URL_FIX}"
            )
        detail = getattr(reason, "strerror", None) or reason or type(exc).__name__
        return DownloadError(f"{url} failed ({detail}); {URL_FIX}, then rerun")

    def refused(self, url: str, status: str) -> Fatal:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if not self.headers:
            return Fatal(
                f"{url} is a protected MLCommons dataset ({status}); set CF_ACCESS_CLIENT_ID "
                "and CF_ACCESS_CLIENT_SECRET (a Cloudflare Access service token from MLCommons) "
                f"or CF_ACCESS_TOKEN (from `cloudflared access login {origin}`), then rerun"
            )
        sent = [v for v in (*SERVICE_TOKEN_VARS, USER_TOKEN_VAR) if self.env.get(v, "").strip()]
        return Fatal(
            f"{url} refused the credentials from {' + '.join(sent)} ({status}); check that they "
            "are current (a `cloudflared access login` token expires) and grant access to this "
            "dataset, then rerun"
        )

    def read_text(self, url: str, *, not_found: str) -> str:
        body: list[bytes] = []

        def attempt() -> None:
            with self.open(url) as resp:
                body[:] = [resp.read()]  # a short body raises IncompleteRead (retried)

        self.retry(url, attempt, not_found=not_found)
        return body[0].decode("utf-8", errors="replace")

    # ------------------------------------------------------------ one file

    def fetch_file(self, job: Job) -> bool:
        """Make ``job.path`` hold the verified file; True if it was downloaded, False if it was
        already there."""
        if self.stop.is_set():
            raise Stopped
        if job.path.is_file():
            if hash_file(job.path).hexdigest() == job.md5:
                size = job.path.stat().st_size
                self.tally.set(job.rel, size=size, done=size)
                job.part.unlink(missing_ok=True)  # a stale leftover
                return False
            self.log(f"{job.rel}: MD5 differs from the list; downloading it again")
            job.path.unlink()
        try:
            job.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, job.path.parent) from None
        for attempt in (1, 2):  # a wrong MD5 is fetched once more, from scratch
            part = Part(job.part)
            self.retry(job.url, partial(self.fetch_part, job, part), not_found=MISSING)
            found = part.md5.hexdigest()
            if found == job.md5:
                os.replace(job.part, job.path)
                return True
            job.part.unlink(missing_ok=True)
            self.tally.set(job.rel, size=None, done=0)
            if attempt == 1:
                self.log(f"{job.rel}: MD5 {found}, expected {job.md5}; downloading it again")
        raise DownloadError(
            f"{job.rel}: MD5 {found} after two downloads, expected {job.md5} (the server's copy "
            "differs from the list; report it to MLCommons if a rerun does not fix it)"
        )

    def fetch_part(self, job: Job, part: Part, *, resume: bool = True) -> None:
        """One request: the rest of ``job.part`` (or all of it); raises what ``retry`` sorts."""
        start = part.sync() if resume else 0
        try:
            resp = self.open(job.url, start=start)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not start:
                raise
            exc.close()  # the part is as long as the file, or longer: done, or start over
            if part.md5.hexdigest() != job.md5:
                return self.fetch_part(job, part, resume=False)
            self.tally.set(job.rel, size=start, done=start)
            return None
        with resp:
            resumed = bool(start) and resp.status == 206  # a 200 is the whole file again
            length, done = content_length(resp), start if resumed else 0
            self.tally.set(job.rel, size=None if length is None else done + length, done=done)
            got = part.write_from(
                resp, append=resumed, tally=self.tally, rel=job.rel, stop=self.stop
            )
        if length is not None and got < length:
            raise ShortBody(f"connection closed after {got:,} of {length:,} bytes")
        return None


MISSING = "the checksum list names it but the server lacks it: report it to MLCommons"
