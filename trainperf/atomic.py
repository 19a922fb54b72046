"""Write a file or a folder under a temporary name and rename it when complete.

Derived files (configs, scores, reports, prepared data, checkpoints) are never seen half
written: a reader finds the old version or the new one, and a crash leaves at most a hidden
temporary sibling (``.name.tmp-<pid>``), which the next attempt replaces.

    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(html)
    write_text_atomic(path, text)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """The hidden temporary name beside `path` that this process writes into."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """A temporary sibling of `path` to write; renamed to `path` when the block succeeds,
    removed when it raises. A file replaces an old `path` in one rename. ``directory=True``
    makes it an empty folder; an old folder at `path` is renamed aside first and deleted after
    the new one is in place, so `path` is never a half-deleted or half-written folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    _remove(tmp)
    if directory:
        tmp.mkdir()
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        yield tmp
        if directory and path.exists():
            _remove(old)
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        _remove(old)


def write_text_atomic(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    """`path` with `text` in it, written under a temporary name first."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """`path` with `data` in it, written under a temporary name first."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
