"""The MLCommons R2 downloader protocol, in Python: ``<name>.uri`` -> base URL, ``<name>.md5``.

MLCommons publishes each dataset as ``https://host/.../metadata/<name>.uri`` (its body is the
dataset's base URL) beside ``<name>.md5`` (``<md5>  ./relative/path`` per file). Every listed
file is fetched from ``<base>/<relative/path>`` in parallel threads into ``dest/<relative/path>``:

- bytes go to ``<file>.part``, renamed to the final name only once their MD5 matches the list,
  so a partial file is resumed (HTTP ``Range``) but never mistaken for a complete one;
- transient failures (HTTP 5xx/408/429, dropped or refused connections, timeouts, short bodies)
  are retried with exponential backoff, resuming from what the ``.part`` holds;
- a file whose MD5 is wrong is fetched once more from scratch, then reported;
- files already complete and verified are not requested again; the ``.md5`` list is kept as
  ``dest/<name>.md5`` so ``verify_dataset_files`` works offline.

Protected datasets take a Cloudflare Access service token (``CF_ACCESS_CLIENT_ID`` +
``CF_ACCESS_CLIENT_SECRET``) or a user token (``CF_ACCESS_TOKEN``), sent as headers on every
request. Redirects are followed on the same origin only, so credentials never leave it; a
redirect to a ``*.cloudflareaccess.com`` login means "refused". No message, log line or progress
text carries a credential.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit, urlunsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from trainperf.atomic import write_text_atomic
from trainperf.data.transfer import (
    URL_FIX,
    Client,
    DownloadError,
    Fatal,
    Job,
    Log,
    Stopped,
    Tally,
    disk_error,
    hash_file,
)

_MD5_LINE = re.compile(r"([0-9a-fA-F]{32})\s+\*?(.+)")


@dataclass(frozen=True)
class DatasetListing:
    """What a dataset's ``.uri`` and ``.md5`` say."""

    name: str
    uri_url: str
    base_url: str
    md5_url: str
    files: tuple[tuple[str, str], ...]
    """(relative path, lowercase md5) per listed file, in list order."""


@dataclass(frozen=True)
class DownloadReport:
    """What ``download_dataset`` did: relative paths fetched / found verified, bytes received."""

    dest: Path
    downloaded: tuple[str, ...]
    already_present: tuple[str, ...]
    bytes_downloaded: int
    seconds: float


# ---------------------------------------------------------------- listing and checksums


def _split_uri_url(uri_url: str) -> tuple[str, str]:
    """(dataset name, URL of its .md5) for a metadata URL; DownloadError if it is not one."""
    parts = urlsplit(uri_url.strip())
    name = parts.path.rsplit("/", 1)[-1].removesuffix(".uri")
    if not (_is_http_url(uri_url.strip()) and parts.path.endswith(".uri") and name):
        raise DownloadError(
            f"{uri_url!r} is not an MLCommons dataset metadata URL (https://…/metadata/"
            "<name>.uri); copy the .uri link from the benchmark's README"
        )
    md5_path = parts.path.removesuffix(".uri") + ".md5"
    return name, urlunsplit((parts.scheme, parts.netloc, md5_path, "", ""))


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in url


def _parse_md5_list(text: str, *, source: str) -> tuple[tuple[str, str], ...]:
    """``(relative path, md5)`` per line of an md5sum list; DownloadError on a malformed line or
    a path that would leave the dataset folder (absolute, or with ``..``)."""
    files: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MD5_LINE.fullmatch(line.strip())
        if not match:
            raise DownloadError(
                f"{source} line {number} is not '<md5>  <path>' ({line[:80]!r}); the checksum "
                "list is malformed: report it to MLCommons"
            )
        md5, raw = match.group(1).lower(), match.group(2).strip()
        path = PurePosixPath(raw)
        if path.is_absolute() or ".." in path.parts or str(path) in ("", ".") or "\\" in raw:
            raise DownloadError(
                f"{source} line {number} names {raw!r}, outside the dataset folder; refusing to "
                "write there: report it to MLCommons"
            )
        if files.setdefault(str(path), md5) != md5:
            raise DownloadError(f"{source} lists {path} twice with different MD5s; report it")
    if not files:
        raise DownloadError(f"{source} lists no files; report it to MLCommons")
    return tuple(files.items())


def _select(
    files: tuple[tuple[str, str], ...], include: Sequence[str] | None, *, source: str
) -> tuple[tuple[str, str], ...]:
    """The files whose relative path or basename matches one of the ``include`` globs."""
    if not include:
        return files
    patterns = (include,) if isinstance(include, str) else tuple(include)
    chosen = tuple(
        (rel, md5)
        for rel, md5 in files
        if any(fnmatch.fnmatchcase(p, g) for g in patterns for p in (rel, rel.rsplit("/", 1)[-1]))
    )
    if not chosen:
        some = ", ".join(rel for rel, _ in files[:5]) + (", …" if len(files) > 5 else "")
        raise DownloadError(
            f"no file of {source} matches the include patterns {list(patterns)}; it lists "
            f"{len(files)} file(s) ({some}): fix the patterns"
        )
    return chosen


def _write_atomic(path: Path, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise disk_error(exc, path) from None


def _read_listing(client: Client, uri_url: str) -> DatasetListing:
    name, md5_url = _split_uri_url(uri_url)
    uri_url = uri_url.strip()
    base = client.read_text(uri_url, not_found=URL_FIX).strip()
    if not _is_http_url(base):
        raise DownloadError(
            f"{uri_url} does not hold a dataset URL (it starts {base[:60]!r}); {URL_FIX}"
        )
    text = client.read_text(
        md5_url,
        not_found=f"no checksum list at {md5_url}; the dataset metadata is incomplete, "
        "report it to MLCommons",
    )
    files = _parse_md5_list(text, source=md5_url)
    return DatasetListing(name, uri_url, base.rstrip("/"), md5_url, files)


# ---------------------------------------------------------------- public API


def fetch_listing(
    uri_url: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> DatasetListing:
    """Read a dataset's ``<name>.uri`` (its base URL) and ``<name>.md5`` (its files)."""
    client = Client(env, timeout=timeout, retries=retries, backoff=backoff)
    try:
        return _read_listing(client, uri_url)
    except DownloadError as exc:
        raise client.scrub(exc) from None


def download_dataset(
    uri_url: str,
    dest: Path,
    *,
    include: Sequence[str] | None = None,
    workers: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    console: Console | None = None,
) -> DownloadReport:
    """Download and MD5-verify every file of the dataset at ``uri_url`` into ``dest``.

    ``include``: fnmatch globs on the relative path or its basename (default: every file).
    ``workers`` files at a time; each retried ``retries`` times after ``backoff * 2**n``
    seconds; ``timeout`` seconds per connect or read. ``env`` (default ``os.environ``) holds
    the credentials of protected datasets; ``log`` gets human-readable lines, ``console`` (a rich
    Console, default stderr) the progress bar. Returns only when every selected file is present
    and verified, else raises DownloadError; a rerun resumes.
    """
    if workers < 1:
        raise DownloadError(f"workers({workers}) must be >= 1; pass the number of parallel files")
    t0, log = time.monotonic(), log or (lambda _: None)
    client = Client(env, timeout=timeout, retries=retries, backoff=backoff, log=log)
    dest = Path(dest)
    try:
        listing = _read_listing(client, uri_url)
        files = _select(listing.files, include, source=listing.md5_url)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, dest) from None
        _write_atomic(
            dest / f"{listing.name}.md5", "".join(f"{m}  {r}\n" for r, m in listing.files)
        )
        jobs = [_job(listing.base_url, dest, rel, md5) for rel, md5 in files]
        log(f"{listing.name}: {len(jobs)} file(s) from {listing.base_url} into {dest}")
        downloaded, present = _download_all(client, jobs, listing.name, workers, progress, console)
    except DownloadError as exc:
        raise client.scrub(exc) from None
    report = DownloadReport(dest, downloaded, present, client.tally.received, time.monotonic() - t0)
    log(
        f"{listing.name}: {len(downloaded)} file(s) downloaded, {len(present)} already verified, "
        f"{report.bytes_downloaded / 1e9:.2f} GB in {report.seconds:.1f} s"
    )
    return report


def _first(items: list[str], n: int = 5) -> str:
    return "; ".join(items[:n]) + (f"; and {len(items) - n} more" if items[n:] else "")


def _job(base_url: str, dest: Path, rel: str, md5: str) -> Job:
    url = base_url + "/" + "/".join(quote(part, safe="") for part in rel.split("/"))
    return Job(rel, md5, url, dest.joinpath(*rel.split("/")))


def _progress_bar(console: Console | None, *, enabled: bool) -> Progress:
    """One bar over the bytes of every file: done, total, rate, time left (default: stderr)."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    columns += (TransferSpeedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console or Console(stderr=True), disable=not enabled)


def _download_all(
    client: Client,
    jobs: list[Job],
    label: str,
    workers: int,
    progress: bool,
    console: Console | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Run the jobs in threads: (downloaded, already present); DownloadError on failures."""
    done: dict[bool, list[str]] = {True: [], False: []}
    failures: list[str] = []
    fatal: DownloadError | None = None
    with _progress_bar(console, enabled=progress) as bar:
        client.tally = Tally(bar, bar.add_task(label, total=None))
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(client.fetch_file, job): job for job in jobs}
            try:
                for future in as_completed(futures):
                    try:
                        done[future.result()].append(futures[future].rel)
                    except Stopped:
                        pass
                    except Fatal as exc:
                        fatal = fatal or exc
                        client.stop.set()
                    except DownloadError as exc:
                        failures.append(str(exc))
                    except OSError as exc:  # the network's are DownloadErrors by now
                        where = Path(exc.filename) if exc.filename else futures[future].path
                        fatal = fatal or disk_error(exc, where)
                        client.stop.set()
            finally:
                client.stop.set()  # on Ctrl-C too: the other threads stop at their next chunk
    if fatal is not None:
        raise fatal
    if failures:
        raise DownloadError(
            f"{len(failures)} of {len(jobs)} file(s) failed: {_first(failures)}; rerun to resume "
            "(verified files are kept)"
        )
    return tuple(sorted(done[True])), tuple(sorted(done[False]))


def verify_dataset_files(
    dest: Path, md5_file: Path | None = None, *, include: Sequence[str] | None = None
) -> list[str]:
    """Check the files of ``dest`` against an md5sum list, without network.

    ``md5_file`` defaults to the one ``*.md5`` in ``dest`` (download_dataset saves it there);
    ``include`` selects files as in ``download_dataset``. Returns the verified relative paths;
    DownloadError lists every missing or mismatched file.
    """
    dest = Path(dest)
    if md5_file is None:
        found = sorted(dest.glob("*.md5")) if dest.is_dir() else []
        if len(found) != 1:
            what = "no .md5 list" if not found else f"{len(found)} .md5 lists"
            raise DownloadError(
                f"{what} in {dest}; download the dataset there first, or pass md5_file"
            )
        md5_file = found[0]
    try:
        text = Path(md5_file).read_text()
    except OSError as exc:
        raise DownloadError(
            f"cannot read {md5_file} ({exc.strerror}); pass an existing file"
        ) from None
    files = _select(_parse_md5_list(text, source=str(md5_file)), include, source=str(md5_file))
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        problems = [p for p in pool.map(lambda f: _check(dest, *f), files) if p]
    if problems:
        raise DownloadError(
            f"{len(problems)} of {len(files)} file(s) in {dest} failed verification against "
            f"{Path(md5_file).name}: {_first(problems)}; rerun the download to fetch them"
        )
    return [rel for rel, _ in files]


def verify_download(
    dest: Path, *, include: Sequence[str] | None = None, log: Callable[[str], None] = print
) -> None:
    """``trainperf download --verify``: check ``dest`` against every ``.md5`` list there, one
    line each on ``log``; ValueError when it holds none, DownloadError as verify_dataset_files."""
    md5_files = sorted(dest.glob("*.md5")) if dest.is_dir() else []
    if not md5_files:
        raise ValueError(
            f"no .md5 list in {dest}; download first: trainperf download URI -d {dest}"
        )
    for md5_file in md5_files:
        verified = verify_dataset_files(dest, md5_file, include=include)
        log(f"{md5_file.name}: {len(verified)} file(s) verified in {dest}")


def _check(dest: Path, rel: str, md5: str) -> str | None:
    """None if ``dest/rel`` has ``md5``, else what is wrong with it."""
    job = _job("", dest, rel, md5)
    if not job.path.is_file():
        hint = " (a .part is there: rerun to resume)" if job.part.is_file() else ""
        return f"{rel} is missing{hint}"
    try:
        found = hash_file(job.path).hexdigest()
    except OSError as exc:
        return f"{rel} cannot be read ({exc.strerror})"
    return None if found == md5 else f"{rel} has MD5 {found}, expected {md5}"
