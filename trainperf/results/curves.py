"""The series of a result log that the diagnosis and the report read: train loss, per-step LR
and the hyperparameters, from our logs and from published ones (NeMo's ``tracked_stats``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.results.parse import MLLogEvent

__all__ = ["RunCurves", "extract_curves", "as_int"]

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
