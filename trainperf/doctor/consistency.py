"""Is the chosen config consistent with itself and with the GPUs it will run on?

Each finding is its own check: the evaluation interval against the global batch (MLPerf rounds
it up to a multiple), the batch split over data-parallel ranks and micro-batches (the trainer's
rule), whether ``max_steps`` reaches an evaluation at all (after the benchmark's skipped ones),
tensor parallel against the model's heads and widths (the family's ``tp_sizes``), and the
layout's memory estimate per GPU (``perf/memory.py``) against the GPU's memory.
"""

from __future__ import annotations

import dataclasses

from trainperf.benchmarks import get_benchmark
from trainperf.config import Config
from trainperf.doctor import Check
from trainperf.launch.systems import SystemPreset, rank_layouts
from trainperf.perf.memory import HEADROOM, ModelShape, estimate_config_memory


def model_shape(cfg: Config) -> ModelShape:
    """The sizes of the model a run of `cfg` builds (its family's)."""
    family = get_benchmark(cfg.benchmark).family
    return family.shape(family.model_config(cfg))


def eval_interval_check(cfg: Config) -> Check:
    t = cfg.train
    value = f"every {t.eval_every_samples} samples, GBS {t.global_batch_size}"
    if t.eval_every_samples % t.global_batch_size == 0:
        return Check("config: eval interval", "pass", value)
    return Check(
        "config: eval interval",
        "warn",
        value + f": not a multiple, evaluates every {t.eval_interval_samples} instead",
        f"train.eval_every_samples={t.eval_interval_samples} (or a GBS that divides it)",
    )


def batch_split_check(cfg: Config, *, world_size: int) -> Check:
    """GBS must split into data-parallel ranks x micro-batch x accumulation steps (trainer rule)."""
    t, tp = cfg.train, cfg.parallel.tp
    name = "config: batch split"
    if world_size % tp:
        return Check(name, "fail", f"tp({tp}) does not divide {world_size} ranks", "change tp")
    dp = world_size // tp
    per_step = t.micro_batch_size * dp
    if t.global_batch_size % per_step:
        value = (
            f"GBS {t.global_batch_size} is not a multiple of micro-batch {t.micro_batch_size} x "
            f"{dp} data-parallel ranks"
        )
        return Check(name, "fail", value, _split_fix(t.global_batch_size, t.micro_batch_size, dp))
    accum = t.global_batch_size // per_step
    value = f"GBS {t.global_batch_size} = {dp} dp x micro-batch {t.micro_batch_size} x {accum}"
    return Check(name, "pass", value + " accumulation steps")


def _split_fix(gbs: int, micro: int, dp: int) -> str:
    """The nearest change that splits: a smaller micro-batch, else a GBS multiple."""
    if gbs % dp == 0:
        fit = max(m for m in range(1, micro + 1) if (gbs // dp) % m == 0)
        return f"train.micro_batch_size={fit} ({gbs // dp} samples per rank per step)"
    return f"train.global_batch_size as a multiple of {micro * dp} (micro-batch x dp ranks)"


def steps_check(cfg: Config) -> Check:
    """max_steps must reach the first evaluation that is logged (after eval_skip)."""
    cfg = get_benchmark(cfg.benchmark).resolve(cfg)
    t = cfg.train
    first = (t.eval_skip or 0) + 1
    first_samples = first * t.eval_interval_samples
    total = t.max_steps * t.global_batch_size
    value = f"max_steps {t.max_steps} x GBS {t.global_batch_size} = {total:,} samples"
    value += f"; first logged eval at {first_samples:,}"
    if total >= first_samples:
        return Check("config: steps reach an eval", "pass", value)
    steps = -(-first_samples // t.global_batch_size)
    return Check(
        "config: steps reach an eval",
        "fail",
        value + ": the run can never reach its target",
        f"train.max_steps >= {steps} (or evaluate more often: train.eval_every_samples)",
    )


def tensor_parallel_check(cfg: Config, *, world_size: int) -> Check:
    from trainperf.parallel.dims import ParallelDims

    par, name = cfg.parallel, "config: tensor parallel"
    try:
        dims = ParallelDims(dp_shard=par.dp_shard, tp=par.tp, world_size=world_size)
        family = get_benchmark(cfg.benchmark).family
        dims.validate_sizes(family.tp_sizes(family.model_config(cfg)), seq_len=cfg.train.seq_len)
    except ValueError as exc:
        return Check(name, "fail", str(exc).split("; ")[0], str(exc).partition("; ")[2])
    return Check(name, "pass", f"dp_shard {dims.dp_shard} x tp {dims.tp} = {world_size} ranks")


def memory_check(cfg: Config, system: SystemPreset) -> Check:
    """The layout's estimated peak per GPU (fits at <= 92 % of the memory; fail above 100 %)."""
    name = "config: memory estimate"
    if not system.memory_gib:
        return Check(name, "skip", f"{system.name}: no GPU memory to compare with")
    est = estimate_config_memory(cfg, model_shape(cfg), world=system.world_size)
    value = f"{est.describe()} of {system.memory_gib:.0f} GiB ({system.world_size} GPUs)"
    if est.total_gib <= HEADROOM * system.memory_gib:
        return Check(name, "pass", value)
    fix = _fitting_layout(cfg, system)
    status = "warn" if est.total_gib <= system.memory_gib else "fail"
    return Check(name, status, value, fix)


def _fitting_layout(cfg: Config, system: SystemPreset) -> str:
    choices = rank_layouts(
        system,
        model_shape(cfg),
        seq_len=cfg.train.seq_len,
        micro_batch=cfg.train.micro_batch_size,
        lora=cfg.model.lora_rank > 0,
    )
    pick = next((c for c in choices if c.fits), None)
    if pick is None:
        return "no layout fits: use more GPUs or nodes, or a smaller train.micro_batch_size"
    return f"try {' '.join(pick.overrides)} ({pick.estimate.describe()}), or --system auto on run"


def config_checks(cfg: Config, *, system: SystemPreset) -> list[Check]:
    """Every consistency check of `cfg` for `system` (its world size and GPU memory)."""
    world = system.world_size
    return [
        eval_interval_check(cfg),
        batch_split_check(cfg, world_size=world),
        steps_check(cfg),
        tensor_parallel_check(cfg, world_size=world),
        memory_check(cfg, system),
    ]


def system_for(detected: SystemPreset, *, nproc: int, nnodes: int) -> SystemPreset:
    """The detected GPUs' preset with the run's rank count (nproc per node x nnodes)."""
    return dataclasses.replace(detected, gpus_per_node=nproc, nodes=nnodes)
