"""One crafter of ``:::MLLOG`` lines for every test that writes a log by hand.

The exact wire format of ``mlperf_logging.mllog``: one JSON object per line after the marker,
``json.dumps`` writing NaN for nan as Python's loggers do. Importable from any test module
(``pythonpath = ["tests"]`` in pyproject.toml): ``from mllog_lines import mllog``.
"""

from __future__ import annotations

import json
from typing import Any

T0 = 1_700_000_000_000
"""A start time in ms since the epoch."""


def event_type_of(key: str) -> str:
    """INTERVAL_START for ``*_start`` keys, INTERVAL_END for ``*_stop``, else POINT_IN_TIME."""
    if key.endswith("_start"):
        return "INTERVAL_START"
    return "INTERVAL_END" if key.endswith("_stop") else "POINT_IN_TIME"


def mllog(
    key: str,
    value: Any = None,
    *,
    time_ms: int,
    event_type: str | None = None,
    prefix: str = "",
    **metadata: Any,
) -> str:
    """One log line; `event_type` defaults to the key's kind, `prefix` is what a launcher puts
    before it (``"0: "`` for Slurm's srun --label), `metadata` goes with file and lineno."""
    record = {
        "namespace": "",
        "time_ms": time_ms,
        "event_type": event_type or event_type_of(key),
        "key": key,
        "value": value,
        "metadata": {"file": "train.py", "lineno": 1, **metadata},
    }
    return prefix + ":::MLLOG " + json.dumps(record)
