"""Throughput, MFU and time-to-train estimates: "how fast should this be".

Model FLOPs are the model family's exact count (``family.flops_per_sample``: every matmul of the
forward and backward, attention over the full T x T); for Llama this is NVIDIA's Llama 3 formula,
the one the NVIDIA DGX Cloud Llama 3.1 405B benchmarking recipe prints in its Notes. MFU is
measured against the dense peak of the named device (``perf/peaks.py``).

``project_time_to_train`` turns a measured training throughput into a benchmark's time to train:
the RCP mean samples to converge at that global batch size (interpolated between the RCP batch
sizes the way ``mlperf_logging``'s rcp_checker does), plus the evaluations the benchmark's rules
run until then (``spec.eval``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainperf.perf.peaks import dense_peak_tflops

SECONDS_PER_DAY = 86_400

NVIDIA_405B_RECIPE_OVERRIDES: dict[str, object] = {"n_kv_heads": 16}
"""The NVIDIA DGX Cloud Llama 3.1 405B recipe's Notes compute attention with "1 + 16/128", i.e.
16 query groups, where the model (and LLAMA_CONFIGS) has 8. Its published 2.17E16 FLOPs/sample
and 42.71% MFU need this override; the true 8-group model gives 2.15E16 and 42.30%."""


@dataclass(frozen=True)
class Estimate:
    """Throughput and MFU of one training configuration, by the NVIDIA recipe's arithmetic."""

    model: str
    seq: int
    gbs: int
    step_time: float
    """Seconds per optimizer step (one global batch)."""
    gpus: int
    device: str
    dtype: str
    peak_tflops: float
    """Dense peak TFLOP/s of one device in ``dtype``: the MFU denominator."""
    model_flops_per_token: float
    model_flops_per_sample: float
    """model_flops_per_token * seq."""
    tokens_per_s: float
    """seq * gbs / step_time, over all GPUs."""
    tokens_per_s_per_gpu: float
    samples_per_s: float
    model_tflops_per_gpu: float
    mfu: float
    """A fraction: model_tflops_per_gpu / peak_tflops."""
    tokens: float | None
    days: float | None
    """tokens / tokens_per_s / 86400; None when no token count was given."""


def estimate(
    *,
    model: str,
    seq: int,
    gbs: int,
    step_time: float,
    gpus: int,
    device: str,
    dtype: str,
    tokens: float | None = None,
    model_overrides: Mapping[str, object] | None = None,
) -> Estimate:
    """Throughput, model TFLOP/s per GPU, MFU and days to train ``tokens``.

    ``model`` is a size registry name of any family; ``model_overrides`` replaces fields of its
    config (e.g. NVIDIA_405B_RECIPE_OVERRIDES).
    """
    from trainperf.models import find_flavor  # the model files need torch; watch does not

    family, model_cfg = find_flavor(model)
    for name, value in (("seq", seq), ("gbs", gbs), ("gpus", gpus), ("step_time", step_time)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if tokens is not None and not (math.isfinite(tokens) and tokens > 0):
        raise ValueError(f"tokens must be a positive number, got {tokens!r}")
    peak = dense_peak_tflops(device, dtype)
    model_cfg = dataclasses.replace(model_cfg, **dict(model_overrides or {}))
    per_sample = family.flops_per_sample(model_cfg, seq)
    per_token = per_sample / seq
    samples_per_s = gbs / step_time
    tokens_per_s = seq * samples_per_s
    tflops_per_gpu = per_sample * samples_per_s / gpus / 1e12
    return Estimate(
        model=model,
        seq=seq,
        gbs=gbs,
        step_time=step_time,
        gpus=gpus,
        device=device.lower(),
        dtype=dtype.lower(),
        peak_tflops=peak,
        model_flops_per_token=per_token,
        model_flops_per_sample=per_sample,
        tokens_per_s=tokens_per_s,
        tokens_per_s_per_gpu=tokens_per_s / gpus,
        samples_per_s=samples_per_s,
        model_tflops_per_gpu=tflops_per_gpu,
        mfu=tflops_per_gpu / peak,
        tokens=tokens,
        days=None if tokens is None else tokens / tokens_per_s / SECONDS_PER_DAY,
    )


def estimate_to_dict(result: Estimate) -> dict[str, Any]:
    """A JSON-ready view of an ``Estimate`` (``mfu`` is a fraction)."""
    return dataclasses.asdict(result)


# --- projected time to train from the RCPs -------------------------------------------------


EVAL_SPEEDUP_DEFAULT = 3.0
"""Eval samples/s = 3 x training samples/s unless measured: evaluation is a forward pass, a third
of the forward + backward FLOPs of full training. It is optimistic for LoRA, whose training skips
the weight gradients (NVIDIA's 8xH200 70B LoRA logs: 173 eval samples in ~28 s = 6.2 samples/s
against 2.58 training samples/s, about 2.4x); pass the measured eval throughput when known."""


@dataclass(frozen=True)
class Projection:
    """A benchmark's projected time to train at one global batch size and throughput."""

    benchmark: str
    gbs: int
    ruleset: str
    rcp_mean_samples: float
    rcp_basis: str
    """How the RCP mean was found: exact batch size, interpolated, or the smallest RCP."""
    samples_per_s: float
    eval_samples_per_s: float
    evaluations: int
    train_minutes: float
    eval_minutes: float
    total_minutes: float


def _rcp_rulesets(benchmark: str) -> list[str]:
    """Training rulesets of mlperf_logging with an RCP file for ``benchmark``, oldest first."""
    import mlperf_logging.rcp_checker as rcp_pkg

    root = Path(rcp_pkg.__file__).parent
    found = [
        p.parent.name.removeprefix("training_")
        for p in root.glob(f"training_*/rcps_{benchmark}.json")
    ]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def rcp_mean_samples(
    benchmark: str, gbs: int, *, ruleset: str | None = None
) -> tuple[float, str, str]:
    """(RCP mean samples to converge at ``gbs``, basis, ruleset) from mlperf_logging's RCPs.

    Uses the pruned RCPs of the newest ruleset that has them (or ``ruleset``): the exact batch
    size, else linear interpolation between the nearest pruned batch sizes (rcp_checker's
    ``_create_interp_rcp``); below the smallest the checker compares with the smallest, so that
    mean is used; above the largest there is no RCP (ValueError).
    """
    from mlperf_logging.rcp_checker.rcp_checker import RCP_Checker

    rulesets = _rcp_rulesets(benchmark)
    if not rulesets:
        raise ValueError(f"no RCPs for {benchmark!r} in mlperf_logging")
    if ruleset is None:
        ruleset = rulesets[-1]
    elif ruleset not in rulesets:
        raise ValueError(
            f"ruleset {ruleset} has no RCPs for {benchmark}; try {', '.join(rulesets)}"
        )
    checker = RCP_Checker("training", ruleset, benchmark, verbose=False)
    points = sorted((int(r["BS"]), float(r["RCP Mean"])) for r in checker.pruned_rcp_data.values())
    sizes = [bs for bs, _ in points]
    for bs, mean in points:
        if bs == gbs:
            return mean, f"RCP at batch size {bs}", ruleset
    if gbs < sizes[0]:
        return points[0][1], f"smallest RCP batch size {sizes[0]} (checker rule)", ruleset
    if gbs > sizes[-1]:
        raise ValueError(
            f"global batch size {gbs} is above every {benchmark} RCP ({sizes}) in ruleset "
            f"{ruleset}; the RCP checker reports a missing RCP; use a batch size <= {sizes[-1]}"
        )
    (lo_bs, lo_mean), (hi_bs, hi_mean) = next(
        (points[i], points[i + 1]) for i in range(len(points) - 1) if points[i + 1][0] > gbs
    )
    mean = lo_mean + (hi_mean - lo_mean) * (gbs - lo_bs) / (hi_bs - lo_bs)
    return mean, f"interpolated between RCP batch sizes {lo_bs} and {hi_bs}", ruleset


def project_time_to_train(
    *,
    benchmark: str,
    gbs: int,
    samples_per_s: float,
    eval_samples_per_s: float | None = None,
    ruleset: str | None = None,
) -> Projection:
    """Time to train = RCP mean samples / throughput + evaluations up to convergence.

    Evaluations are counted on the rules' cadence from the first non-skipped one up to the eval
    boundary at or after the RCP mean; each costs eval_samples / eval_samples_per_s seconds,
    ``eval_samples_per_s`` defaulting to EVAL_SPEEDUP_DEFAULT x ``samples_per_s``.
    """
    from trainperf.benchmarks import get_benchmark

    spec = get_benchmark(benchmark)
    cadence = spec.eval
    if not (gbs > 0 and math.isfinite(samples_per_s) and samples_per_s > 0):
        raise ValueError(f"gbs ({gbs}) and samples_per_s ({samples_per_s}) must be positive")
    if eval_samples_per_s is None:
        eval_samples_per_s = EVAL_SPEEDUP_DEFAULT * samples_per_s
    elif not (math.isfinite(eval_samples_per_s) and eval_samples_per_s > 0):
        raise ValueError(f"eval_samples_per_s must be positive, got {eval_samples_per_s!r}")
    mean, basis, used = rcp_mean_samples(spec.rcp_name, gbs, ruleset=ruleset)
    last_eval = math.ceil(mean / cadence.interval(gbs))
    evaluations = max(0, last_eval - cadence.first_eval_index(gbs) + 1)
    train_minutes = mean / samples_per_s / 60
    eval_minutes = evaluations * cadence.eval_samples / eval_samples_per_s / 60
    return Projection(
        benchmark=benchmark,
        gbs=gbs,
        ruleset=used,
        rcp_mean_samples=mean,
        rcp_basis=basis,
        samples_per_s=samples_per_s,
        eval_samples_per_s=eval_samples_per_s,
        evaluations=evaluations,
        train_minutes=train_minutes,
        eval_minutes=eval_minutes,
        total_minutes=train_minutes + eval_minutes,
    )


def projection_to_dict(result: Projection) -> dict[str, Any]:
    """A JSON-ready view of a ``Projection``."""
    return dataclasses.asdict(result)


def recipe_overrides(model: str, formula: str) -> dict[str, object]:
    """LlamaConfig overrides of the chosen FLOP convention: 'nvidia-recipe' counts 405B with the
    recipe's 16 query groups (to reproduce its published figures); 'model' uses the model as is."""
    if formula not in ("nvidia-recipe", "model"):
        raise ValueError(f"unknown formula {formula!r}; use 'nvidia-recipe' or 'model'")
    if formula == "nvidia-recipe" and model == "llama3.1-405b":
        return dict(NVIDIA_405B_RECIPE_OVERRIDES)
    return {}


def render_estimate(result: Estimate, console: Any, *, note: str | None = None) -> None:
    """The estimate as aligned lines (rich console)."""
    rows = [
        ("model", f"{result.model}, seq {result.seq}, GBS {result.gbs}"),
        ("model FLOPs per token", f"{result.model_flops_per_token:.4g}"),
        ("model FLOPs per sample", f"{result.model_flops_per_sample:.3E}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f} ({result.tokens_per_s_per_gpu:,.1f} per GPU)"),
        ("model TFLOP/s per GPU", f"{result.model_tflops_per_gpu:.1f}"),
        (
            "MFU",
            f"{result.mfu:.2%} of {result.peak_tflops:g} TFLOP/s dense "
            f"{result.dtype} ({result.device}, {result.gpus} GPUs)",
        ),
    ]
    if result.days is not None:
        rows.append((f"days for {result.tokens:.3g} tokens", f"{result.days:.2f}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"{key:<{width}}  {value}")
    if note:
        console.print(note)
