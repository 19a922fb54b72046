"""Rank-0 MLLOG writer over ``mlperf_logging.mllog``: one result file per run, appended line by
line (each record is flushed), never overwriting an earlier run's file."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger

_RESULT_RE = re.compile(r"^result_(\d+)\.txt$")


def next_result_index(results_dir: Path) -> int:
    """The smallest i >= 0 such that ``result_<i>.txt`` does not exist yet (and none after it)."""
    taken = [
        int(m.group(1)) for p in results_dir.glob("result_*.txt") if (m := _RESULT_RE.match(p.name))
    ]
    return max(taken) + 1 if taken else 0


def create_result_file(results_dir: Path, *, index: int | None = None) -> tuple[int, Path]:
    """Create the next free ``result_<i>.txt`` (or ``result_<index>.txt``) exclusively (O_EXCL),
    so that two runs writing into the same folder never share or overwrite a log. Returns
    (index, path)."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"cannot create results folder {results_dir}: {exc.strerror}; "
            "choose a writable folder with --results DIR"
        ) from None
    wanted = index
    for _ in range(1000):
        index = next_result_index(results_dir) if wanted is None else wanted
        path = results_dir / f"result_{index}.txt"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if wanted is not None:
                raise ValueError(
                    f"{path} already exists; a result log is never overwritten"
                ) from None
            continue  # another process took it between the listing and the open
        except OSError as exc:
            raise ValueError(
                f"cannot write result log {path}: {exc.strerror}; "
                "choose a writable folder with --results DIR"
            ) from None
        os.close(fd)
        return index, path
    raise ValueError(f"could not reserve a result file in {results_dir}")


class MLPerfLogger:
    """Writes ``:::MLLOG`` records for one run through mlperf_logging's MLLogger.

    Only the process given ``enabled=True`` (rank 0) writes; the others get a no-op logger, so
    call sites need no rank checks. ``metadata.file``/``lineno`` name the trainperf call site, which
    the official seed checker relies on.
    """

    def __init__(self, path: Path | None, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled and path is not None
        self._handler: logging.Handler | None = None
        if not self.enabled:
            self._mllogger = None
            return
        logger = logging.getLogger(f"trainperf.mllog.{path}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        self._handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(self._handler)
        # stack offset 2: skip this wrapper's frame so metadata names our caller
        self._mllogger = MLLogger(logger=logger, default_stack_offset=2)

    def event(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger is not None:
            self._mllogger.event(key=key, value=value, metadata=metadata)

    def start(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger is not None:
            self._mllogger.start(key=key, value=value, metadata=metadata)

    def end(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger is not None:
            self._mllogger.end(key=key, value=value, metadata=metadata)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            logging.getLogger(f"trainperf.mllog.{self.path}").removeHandler(self._handler)
            self._handler = None
