"""Read ``:::MLLOG`` result logs (ours or any published submission) into events and run summaries.

The wire format is the one ``mlperf_logging.mllog`` writes::

    :::MLLOG {"namespace": "", "time_ms": 1714897740668, "event_type": "INTERVAL_START",
              "key": "run_start", "value": null, "metadata": {"file": "...", "lineno": 145}}

Like the official parser (``mlperf_logging/compliance_checker/mlp_parser``), a line counts only
if it contains ``:::MLLOG ``, and everything before the last ``:::MLLOG `` is dropped, so launcher
prefixes such as ``0: `` or ``[1,0]<stdout>:`` do not matter. Unlike it, a garbled line never
raises: it becomes an error string and parsing goes on, so a half-written log of a running or
crashed job can still be summarized.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import constants

__all__ = [
    "MLLOG_TOKEN",
    "MLLogEvent",
    "ParsedLog",
    "RunSummary",
    "parse_line",
    "parse_lines",
    "parse_log",
    "summarize_events",
    "summarize_run",
]

MLLOG_TOKEN = ":::MLLOG "
NO_RUN_START = "no run_start"
NO_RUN_STOP = "no run_stop (the run ended early or is still running)"


@dataclass(frozen=True)
class MLLogEvent:
    """One ``:::MLLOG`` line."""

    key: str
    value: Any
    time_ms: int
    """Milliseconds since the epoch, as logged."""
    event_type: str
    """POINT_IN_TIME, INTERVAL_START or INTERVAL_END ("" when the line has none)."""
    metadata: dict[str, Any]
    lineno: int
    """1-based line number in the file (counting every line, MLLOG or not)."""


@dataclass
class ParsedLog:
    """All events of one log, plus one "line N: reason" string per MLLOG line that did not parse."""

    path: Path | None
    events: list[MLLogEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """What scoring needs from one result log; ``problems`` says what is missing or wrong."""

    path: Path | None
    benchmark: str | None
    """``submission_benchmark`` value, e.g. "llama2_70b_lora"."""
    seed: int | None
    global_batch_size: int | None
    run_start_ms: int | None
    run_stop_ms: int | None
    status: str | None
    """``run_stop`` metadata status ("success", "aborted", ...); None when there is no run_stop."""
    samples_to_converge: int | None
    """``samples_count`` of the last eval_accuracy before run_stop, as the RCP checker reads it."""
    final_eval: float | None
    """Value of that last eval_accuracy."""
    evals: list[tuple[int | None, float]]
    """(samples_count, eval_accuracy) of each eval before run_stop (all of them if none)."""
    converged: bool
    """run_stop status is "success" and both run_start and run_stop were logged."""
    time_to_train_minutes: float | None
    """(run_stop - run_start) / 60000, the per-run result of MLPerf Training."""
    problems: list[str] = field(default_factory=list)


def parse_line(line: str, *, lineno: int) -> MLLogEvent | None:
    """Parse one line of a log; None when it holds no ``:::MLLOG`` token.

    Raises ``ValueError`` with the reason when the MLLOG payload is garbled or truncated.
    """
    cut = line.rfind(MLLOG_TOKEN)
    if cut < 0:
        return None
    payload = line[cut + len(MLLOG_TOKEN) :].strip()
    try:
        record = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"invalid JSON after :::MLLOG ({exc}); truncated or garbled line"
        ) from None
    if not isinstance(record, dict):
        raise ValueError(f"MLLOG payload is a {type(record).__name__}, expected a JSON object")
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"MLLOG line has no string 'key' (got {key!r})")
    time_ms = record.get("time_ms")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int | float):
        raise ValueError(f"'{key}' has a non-numeric time_ms {time_ms!r}")
    if not math.isfinite(time_ms):
        raise ValueError(f"'{key}' has a non-finite time_ms {time_ms!r}")
    event_type = record.get("event_type", "")
    if not isinstance(event_type, str):
        raise ValueError(f"'{key}' has a non-string event_type {event_type!r}")
    metadata = record.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"'{key}' has metadata of type {type(metadata).__name__}, expected object")
    return MLLogEvent(
        key=key,
        value=record.get("value"),
        time_ms=int(round(time_ms)),
        event_type=event_type,
        metadata=metadata,
        lineno=lineno,
    )


def parse_lines(lines: Iterable[str], *, path: Path | None = None) -> ParsedLog:
    """Parse the lines of a log (line numbers start at 1); never raises on content."""
    parsed = ParsedLog(path=path)
    for lineno, line in enumerate(lines, start=1):
        try:
            event = parse_line(line, lineno=lineno)
        except ValueError as exc:
            parsed.errors.append(f"line {lineno}: {exc}")
            continue
        if event is not None:
            parsed.events.append(event)
    return parsed


def parse_log(path: Path) -> ParsedLog:
    """Parse a result log file.

    Raises ``ValueError`` only when the file cannot be read; bad content ends up in ``errors``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(
            f"cannot read result log {path}: {exc.strerror or exc}; "
            "pass the path of an existing result_*.txt file"
        ) from None
    # Bytes that are not UTF-8 are replaced, not fatal: published logs hold odd console output.
    text = data.decode("utf-8", errors="replace")
    return parse_lines(text.replace("\r\n", "\n").split("\n"), path=path)


def summarize_run(path: Path) -> RunSummary:
    """Summarize one result log; content problems are recorded in ``problems``, never raised.

    Raises ``ValueError`` only when the file cannot be read (see ``parse_log``).
    """
    parsed = parse_log(Path(path))
    return summarize_events(parsed.events, path=parsed.path, errors=parsed.errors)


def summarize_events(
    events: list[MLLogEvent], *, path: Path | None = None, errors: Iterable[str] = ()
) -> RunSummary:
    """Build a ``RunSummary`` from parsed events (``errors`` become problems first)."""
    problems = list(errors)
    benchmark = _pick_first(events, constants.SUBMISSION_BENCHMARK, str, problems)
    seed = _pick_first(events, constants.SEED, int, problems)
    batch = _pick_first(events, constants.GLOBAL_BATCH_SIZE, int, problems)
    if benchmark is None:
        problems.append("no submission_benchmark")
    start, stop, end = _find_run_interval(events)
    if start is None:
        problems.append(NO_RUN_START)
    if stop is None:
        problems.append(NO_RUN_STOP)
    status = _read_status(stop, problems)
    evals = _collect_evals(events[:end], problems)
    if stop is not None and not evals:
        problems.append("no eval_accuracy before run_stop")
    minutes = None
    if start is not None and stop is not None:
        # Same arithmetic as result_summarizer._query_mlperf_strong_scaling_score.
        minutes = (stop.time_ms - start.time_ms) / 60 / 1000
        if minutes < 0:
            problems.append(
                f"run_stop (line {stop.lineno}) is earlier than run_start (line {start.lineno})"
            )
    return RunSummary(
        path=path,
        benchmark=benchmark,
        seed=seed,
        global_batch_size=batch,
        run_start_ms=None if start is None else start.time_ms,
        run_stop_ms=None if stop is None else stop.time_ms,
        status=status,
        samples_to_converge=evals[-1][0] if evals else None,
        final_eval=evals[-1][1] if evals else None,
        evals=evals,
        converged=status == constants.SUCCESS and minutes is not None and minutes >= 0,
        time_to_train_minutes=minutes,
        problems=problems,
    )


def _pick_first(events: list[MLLogEvent], key: str, kind: type, problems: list[str]) -> Any:
    """Value of the first ``key`` event of type ``kind``; a later different value is a problem."""
    found: Any = None
    for event in events:
        if event.key != key:
            continue
        value = event.value
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            problems.append(f"line {event.lineno}: {key} value {value!r} is not a {kind.__name__}")
        elif found is None:
            found = value
        elif value != found:
            problems.append(f"line {event.lineno}: {key} changes from {found!r} to {value!r}")
    return found


def _find_run_interval(
    events: list[MLLogEvent],
) -> tuple[MLLogEvent | None, MLLogEvent | None, int]:
    """(run_start, run_stop, index of run_stop or len(events)), chosen as the official summarizer.

    result_summarizer._query_run_start_stop keeps the latest run_start and run_stop seen and stops
    as soon as it has both, so a restarted run is timed from the run_start before the run_stop.
    """
    start: MLLogEvent | None = None
    stop: MLLogEvent | None = None
    for index, event in enumerate(events):
        if event.key == constants.RUN_START:
            start = event
        if event.key == constants.RUN_STOP:
            stop = event
        if start is not None and stop is not None:
            return start, stop, index
    return start, stop, len(events)


def _read_status(stop: MLLogEvent | None, problems: list[str]) -> str | None:
    if stop is None:
        return None
    status = stop.metadata.get(constants.STATUS)
    if status is None:
        problems.append(f"line {stop.lineno}: run_stop has no status metadata")
        return None
    status = str(status)
    if status != constants.SUCCESS:
        problems.append(f"run_stop status is {status!r}, not 'success' (the run did not converge)")
    return status


def _collect_evals(events: list[MLLogEvent], problems: list[str]) -> list[tuple[int | None, float]]:
    evals: list[tuple[int | None, float]] = []
    for event in events:
        if event.key != constants.EVAL_ACCURACY:
            continue
        value = event.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"line {event.lineno}: eval_accuracy value {value!r} is not a number")
            continue
        samples = event.metadata.get(constants.SAMPLES_COUNT)
        if isinstance(samples, float) and samples.is_integer():
            samples = int(samples)
        if isinstance(samples, bool) or not isinstance(samples, int):
            samples = None
        evals.append((samples, float(value)))
    return evals
