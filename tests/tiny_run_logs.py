"""A crafted ``trainperf run`` at the tiny scale: ``result_<i>.txt`` with the header our runs
write (every key of the resolved config, through the benchmark's own hyperparameter events and
the 6.1 disclosure keys) and ``config_<i>.json`` beside it, at times the test chooses.

Importable from any test module (``pythonpath = ["tests"]``):
``from tiny_run_logs import write_tiny_run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mllog_lines import T0, mllog

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.config import apply_overrides, save_config
from trainperf.mlperf.events import RunFacts, disclosure_events


def write_tiny_run(
    folder: Path,
    index: int = 0,
    *,
    evals: Sequence[float] = (4.9, 4.2, 3.6),
    status: str | None = "success",
    seed: int = 1234,
    benchmark: str = "llama31_8b",
    train_s: float = 10.0,
    eval_s: float = 20.0,
    overrides: Sequence[str] = (),
) -> Path:
    """One run of ``benchmark`` at the tiny scale into ``folder``: an evaluation after each
    block of ``train.eval_interval_samples`` samples, each block ``train_s`` seconds of training
    and each evaluation ``eval_s`` seconds; ``status`` None leaves the run going (no run_stop)."""
    cfg = get_default_config(benchmark, "tiny")
    cfg = apply_overrides(cfg, [f"train.seed={seed}", *overrides])
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / f"config_{index}.json")
    t = T0
    lines = [mllog("cache_clear", False, time_ms=t), mllog("init_start", time_ms=t)]
    lines += [mllog(k, v, time_ms=t) for k, v in _header(cfg, benchmark, index)]
    lines += [mllog("init_stop", time_ms=t), mllog("run_start", time_ms=t)]
    interval, samples = cfg.train.eval_interval_samples, 0
    for value in evals:
        lines.append(mllog("block_start", time_ms=t, samples_count=samples))
        samples += interval
        t += round(train_s * 1000)
        lines.append(mllog("train_loss", value + 0.3, time_ms=t, samples_count=samples, lr=1e-3))
        lines.append(mllog("block_stop", time_ms=t, samples_count=samples))
        lines.append(mllog("eval_start", time_ms=t, samples_count=samples))
        t += round(eval_s * 1000)
        lines.append(mllog("eval_accuracy", value, time_ms=t, samples_count=samples))
        lines.append(mllog("eval_stop", time_ms=t, samples_count=samples))
    if status is not None:
        lines.append(mllog("run_stop", time_ms=t, samples_count=samples, status=status))
    path = folder / f"result_{index}.txt"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _header(cfg, benchmark: str, index: int) -> list[tuple[str, object]]:
    t = cfg.train
    facts = RunFacts(
        train_samples=100_000,
        grad_accumulation=1,
        micro_batch_size=t.micro_batch_size,
        platform="1xCPU",
        tensor_parallelism=1,
        context_parallelism=1,
        precision_linear="fp32",
        precision_attn="fp32",
        precision_comm="fp32",
    )
    return [
        ("submission_benchmark", benchmark),
        ("submission_org", "trainperf"),
        ("submission_division", "closed"),
        ("submission_status", "onprem"),
        ("submission_platform", "1xCPU"),
        ("global_batch_size", t.global_batch_size),
        ("train_samples", facts.train_samples),
        ("eval_samples", t.eval_samples),
        ("seed", t.seed),
        ("gradient_accumulation_steps", 1),
        *get_benchmark(benchmark).hyperparameter_events(cfg),
        *disclosure_events(facts, config_filename=f"config_{index}.json"),
    ]
