"""The series of a result log that the diagnosis, the report and ``watch`` read: train loss,
per-step LR, the hyperparameters and the training blocks with their throughput, from our logs and
from published ones (NeMo's ``tracked_stats``).

Training throughput has one definition, ``THROUGHPUT``, used by ``watch`` and ``report`` alike:
the samples trained in the blocks (block_start .. block_stop) over the time spent in them, so
evaluations are left out; a block's own logged ``throughput`` (NeMo's tracked_stats) stands for
its timestamps where the log has one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.results.parse import MLLogEvent

__all__ = [
    "THROUGHPUT",
    "Block",
    "RunCurves",
    "Throughput",
    "as_int",
    "extract_blocks",
    "extract_curves",
    "training_throughput",
]

THROUGHPUT = (
    "training samples/s = samples trained / time spent training (block_start to block_stop), "
    "evaluations excluded; a block's logged throughput where the log has one"
)
"""The definition that ``watch`` and ``report`` print beside their throughput."""

_TRAIN_LOSS_FIELDS = ("train_loss", "reduced_train_loss")


@dataclass
class RunCurves:
    """The series of one log that the diagnosis and the report's figures read."""

    train: list[tuple[int, float]] = field(default_factory=list)
    """(samples_count, train loss)."""
    lr: list[tuple[int, float]] = field(default_factory=list)
    """(optimizer step, learning rate) where the log gives the LR of a step."""
    hyper: dict[str, Any] = field(default_factory=dict)
    """First value of each POINT_IN_TIME key logged before run_start (the hyperparameters)."""
    non_finite: list[str] = field(default_factory=list)
    """"train loss is nan at 800 samples (line 12)" for each non-finite train loss."""


def extract_curves(events: Sequence[MLLogEvent], *, global_batch_size: int | None) -> RunCurves:
    """Train loss, per-step LR and hyperparameters of a log (ours or a published one)."""
    curves = RunCurves()
    started = False
    for event in events:
        started |= event.key == C.RUN_START
        if not started and event.event_type != "INTERVAL_START":
            curves.hyper.setdefault(event.key, event.value)
        loss = _train_loss(event)
        if loss is None:
            continue
        samples = as_int(event.metadata.get(C.SAMPLES_COUNT))
        if not math.isfinite(loss):
            where = f"{samples} samples" if samples is not None else "a step"
            curves.non_finite.append(f"train loss is {loss} at {where} (line {event.lineno})")
        if samples is not None:
            curves.train.append((samples, loss))
        lr = event.metadata.get("lr")
        step = as_int(event.metadata.get("step"))
        if step is None and samples is not None and global_batch_size:
            step = samples // global_batch_size
        if isinstance(lr, int | float) and not isinstance(lr, bool) and step is not None:
            curves.lr.append((step, float(lr)))
    return curves


def _train_loss(event: MLLogEvent) -> float | None:
    value: Any = None
    if event.key == "train_loss":
        value = event.value
    elif event.key == "tracked_stats" and isinstance(event.value, dict):
        value = next((event.value[f] for f in _TRAIN_LOSS_FIELDS if f in event.value), None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of value over samples of (samples, value) points; None when the
    samples do not vary (or there are fewer than 2 points)."""
    n = len(points)
    if n < 2:
        return None
    mean_s = sum(s for s, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((s - mean_s) ** 2 for s, _ in points)
    if var == 0:
        return None
    return sum((s - mean_s) * (v - mean_v) for s, v in points) / var


# --- training blocks and throughput -----------------------------------------------------------


@dataclass
class Block:
    """One training block (block_start .. block_stop) and its throughput."""

    end_samples: int | None
    """Samples trained at the block's end (cumulative)."""
    samples: int | None
    """Samples in the block."""
    seconds: float
    samples_per_s: float | None
    source: str
    """"logged" (a throughput field) or "block timestamps" (block size / block duration)."""
    open: bool = False
    """A block still running: up to its last event with a samples_count (``watch``)."""


@dataclass(frozen=True)
class Throughput:
    """Training throughput of a run (``THROUGHPUT``)."""

    samples_per_s: float
    source: str
    """"logged", "block timestamps" (both: "block timestamps and logged"), or "time since
    run_start" for a log without blocks (its evaluation intervals still excluded)."""


def extract_blocks(events: Sequence[MLLogEvent], *, open_block: bool = False) -> list[Block]:
    """Blocks from block_start / block_stop pairs, with their throughput; ``open_block``: also
    the block still running, up to its last event with a samples_count.

    Two conventions for samples_count: cumulative (ours, v4.x: start 1536, stop 1920) and the
    v5.1 mlperf_common one where both carry the block's size (start 384, stop 384). A logged
    ``throughput`` (tracked_stats, samples/s) inside a block wins over the timestamps.
    """
    blocks: list[Block] = []
    start: MLLogEvent | None = None
    last: MLLogEvent | None = None
    logged: float | None = None
    trained = 0
    for event in events:
        if event.key == C.BLOCK_START:
            start, last, logged = event, None, None
        elif start is None:
            continue
        elif event.key == C.BLOCK_STOP:
            size = _block_size(start, event)
            trained += size or 0
            blocks.append(_block(start, event, size, trained if size else None, logged))
            start = None
        else:
            logged = _logged_rate(event, logged)
            if as_int(event.metadata.get(C.SAMPLES_COUNT)) is not None:
                last = event
    if open_block and start is not None and last is not None:
        begun = as_int(start.metadata.get(C.SAMPLES_COUNT))
        now = as_int(last.metadata.get(C.SAMPLES_COUNT)) or 0
        # a running count only when the block starts where the blocks before it ended
        size = now - trained if begun == trained and now > trained else None
        block = _block(start, last, size, now if size else None, logged)
        if block.samples_per_s is not None:
            blocks.append(Block(**{**vars(block), "open": True}))
    return blocks


def _block(
    start: MLLogEvent, end: MLLogEvent, size: int | None, total: int | None, logged: float | None
) -> Block:
    seconds = (end.time_ms - start.time_ms) / 1000
    if logged is not None:
        return Block(total, size, seconds, logged, "logged")
    rate = size / seconds if size and seconds > 0 else None
    return Block(total, size, seconds, rate, "block timestamps")


def _logged_rate(event: MLLogEvent, default: float | None) -> float | None:
    if event.key != "tracked_stats" or not isinstance(event.value, dict):
        return default
    value = event.value.get("throughput")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value) if value > 0 else default


def _block_size(start: MLLogEvent, stop: MLLogEvent) -> int | None:
    a, b = as_int(start.metadata.get(C.SAMPLES_COUNT)), as_int(stop.metadata.get(C.SAMPLES_COUNT))
    if a is None or b is None:
        return None
    if a == b:  # v5.1: both are the block's size
        return b or None
    return b - a if b > a else None


def training_throughput(
    events: Sequence[MLLogEvent], *, open_block: bool = False
) -> Throughput | None:
    """The run's training samples/s (``THROUGHPUT``): the blocks' samples over their time (the
    time-weighted mean of their rates); None before a block gives one."""
    blocks = [b for b in extract_blocks(events, open_block=open_block) if b.samples_per_s]
    timed = [b for b in blocks if b.seconds > 0]
    if timed:
        seconds = sum(b.seconds for b in timed)
        rate = sum((b.samples_per_s or 0.0) * b.seconds for b in timed) / seconds
        return Throughput(rate, " and ".join(sorted({b.source for b in timed})))
    if any(e.key == C.BLOCK_START for e in events):
        return None
    return _throughput_without_blocks(events)


_PROGRESS_KEYS = {"train_loss", "tracked_stats", C.EVAL_START, C.EVAL_ACCURACY}


def _throughput_without_blocks(events: Sequence[MLLogEvent]) -> Throughput | None:
    """A log without blocks: samples over the time since run_start, its evaluations excluded."""
    start = next((e.time_ms for e in events if e.key == C.RUN_START), None)
    counted = [e for e in events if e.key in _PROGRESS_KEYS]
    counts = [(as_int(e.metadata.get(C.SAMPLES_COUNT)), e.time_ms) for e in counted]
    samples, at = max(((n, t) for n, t in counts if n is not None), default=(None, None))
    if start is None or not samples or at is None:
        return None
    evaluating, begun = 0, None
    for event in events:
        if event.key == C.EVAL_START:
            begun = event.time_ms
        elif event.key == C.EVAL_STOP and begun is not None and event.time_ms <= at:
            evaluating, begun = evaluating + event.time_ms - begun, None
    seconds = (at - start - evaluating) / 1000
    return Throughput(samples / seconds, "time since run_start") if seconds > 0 else None
