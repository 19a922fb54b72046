"""A crafted full-scale result log of any benchmark, as a submitter's run would write it: the
header from the benchmark's full-scale config (its own hyperparameter events and the 6.1
disclosure keys), then one block per training step and the evaluations the test chooses. For
benchmarks trainperf cannot train (deepseekv3_671b): score, check and report read such logs.

Importable from any test module (``pythonpath = ["tests"]``):
``from full_run_logs import write_full_run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mllog_lines import T0, mllog

from trainperf.benchmarks import get_benchmark
from trainperf.mlperf.events import RunFacts, disclosure_events


def write_full_run(
    folder: Path,
    index: int,
    *,
    benchmark: str,
    evals: Mapping[int, float],
    seed: int,
    step_s: float = 60.0,
    facts: RunFacts | None = None,
) -> Path:
    """``result_<index>.txt`` of ``benchmark`` at its full scale: ``evals`` maps a step to the
    eval_accuracy logged after it; each step takes ``step_s`` seconds and the run stops with
    success at the last evaluation when it reaches the target (else aborted)."""
    spec = get_benchmark(benchmark)
    t = spec.config("full").train
    facts = facts or RunFacts(
        train_samples=1_574_207_408,
        grad_accumulation=t.global_batch_size // 64,
        micro_batch_size=t.micro_batch_size,
        platform="64xGB300",
        tensor_parallelism=1,
        context_parallelism=1,
        precision_linear="bfloat16",
        precision_attn="bfloat16",
        precision_comm="bfloat16",
        pipeline_parallelism=4,
        expert_parallelism=64,
    )
    header = [
        ("submission_benchmark", benchmark),
        ("submission_org", "craft"),
        ("submission_division", "closed"),
        ("submission_status", "onprem"),
        ("submission_platform", facts.platform),
        ("global_batch_size", t.global_batch_size),
        ("train_samples", facts.train_samples),
        ("eval_samples", t.eval_samples),
        ("seed", seed),
        ("gradient_accumulation_steps", facts.grad_accumulation),
        *spec.hyperparameter_events(spec.config("full")),
        *disclosure_events(facts, config_filename=f"config_{index}.json"),
    ]
    time = T0
    lines = [mllog("cache_clear", True, time_ms=time), mllog("init_start", time_ms=time)]
    lines += [mllog(key, value, time_ms=time) for key, value in header]
    lines += [mllog("init_stop", time_ms=time), mllog("run_start", time_ms=time)]
    last = max(evals)
    for step in range(1, last + 1):
        samples = step * t.global_batch_size
        lines.append(
            mllog("block_start", time_ms=time, samples_count=samples - t.global_batch_size)
        )
        time += round(step_s * 1000)
        lines.append(mllog("block_stop", time_ms=time, samples_count=samples))
        if step in evals:
            lines.append(mllog("eval_start", time_ms=time, samples_count=samples))
            lines.append(mllog("eval_accuracy", evals[step], time_ms=time, samples_count=samples))
            lines.append(mllog("eval_stop", time_ms=time, samples_count=samples))
    status = "success" if evals[last] <= t.target else "aborted"
    samples = last * t.global_batch_size
    lines.append(mllog("run_stop", time_ms=time, samples_count=samples, status=status))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"result_{index}.txt"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path
