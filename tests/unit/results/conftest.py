"""Crafted result logs in the ``:::MLLOG`` wire format, for the diagnosis and report tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from mllog_lines import T0
from mllog_lines import mllog as line

# Hyperparameters that the closed llama31_8b rules accept at GBS 32 (what the HPE v5.1 logs hold).
LLAMA31_8B_HYPER: dict[str, Any] = {
    "opt_base_learning_rate": 8e-4,
    "opt_end_learning_rate": 8e-5,
    "opt_learning_rate_warmup_steps": 128,
    "opt_learning_rate_decay_steps": 1_200_000 - 128,
    "opt_learning_rate_decay_schedule": "cosine with linear warmup",
    "max_steps": 1_200_000,
}


def mllog(key: str, value: Any = None, *, time_ms: int, **meta: Any) -> str:
    return line(key, value, time_ms=time_ms, prefix="0: ", **meta)  # as srun --label writes


def write_log(
    path: Path,
    evals: Sequence[float],
    *,
    benchmark: str = "llama31_8b",
    gbs: int = 32,
    every: int = 12288,
    first: int | None = None,
    status: str | None = "success",
    hyper: dict[str, Any] | None = None,
    lrs: Sequence[tuple[int, float]] = (),
    train_loss: Callable[[int], float] | None = None,
    seconds_per_eval: float = 60.0,
) -> Path:
    """A log whose evaluations are ``evals`` at ``first``, ``first + every``, ... samples.

    ``lrs``: (step, lr) logged on train_loss events; ``status`` None leaves out run_stop.
    """
    hyper = LLAMA31_8B_HYPER if hyper is None and benchmark == "llama31_8b" else hyper or {}
    t = T0
    lines = [
        mllog("init_start", time_ms=t),
        mllog("submission_benchmark", benchmark, time_ms=t),
        mllog("submission_org", "craft", time_ms=t),
        mllog("submission_platform", "1xCPU", time_ms=t),
        mllog("global_batch_size", gbs, time_ms=t),
        *(mllog(k, v, time_ms=t) for k, v in hyper.items()),
        mllog("init_stop", time_ms=t),
        mllog("run_start", time_ms=t),
        mllog("block_start", time_ms=t, samples_count=0),
    ]
    lr_at = dict(lrs)
    samples = (first or every) - every
    for value in evals:
        for step in sorted(s for s in lr_at if samples < s * gbs <= samples + every):
            t += 10
            loss = train_loss(step) if train_loss else 2.0 + value
            lines.append(
                mllog("train_loss", loss, time_ms=t, samples_count=step * gbs, lr=lr_at[step])
            )
        samples += every
        t += round(seconds_per_eval * 1000)
        if train_loss is not None and not lr_at:
            lines.append(mllog("train_loss", train_loss(samples), time_ms=t, samples_count=samples))
        lines += [
            mllog("block_stop", time_ms=t, samples_count=samples),
            mllog("eval_start", time_ms=t, samples_count=samples),
            mllog("eval_accuracy", value, time_ms=t + 1000, samples_count=samples),
            mllog("eval_stop", time_ms=t + 1000, samples_count=samples),
            mllog("block_start", time_ms=t + 1000, samples_count=samples),
        ]
        t += 1000
    if status is not None:
        lines.append(mllog("run_stop", time_ms=t, samples_count=samples, status=status))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def craft() -> Callable[..., Path]:
    """``craft(path, evals, **options)``: write a crafted result log (see ``write_log``)."""
    return write_log


@pytest.fixture
def hyper_8b() -> dict[str, Any]:
    """The llama31_8b hyperparameters of a compliant GBS 32 run (a fresh copy)."""
    return dict(LLAMA31_8B_HYPER)
