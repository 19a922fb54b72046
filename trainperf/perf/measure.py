"""``trainperf perf``: the throughput recipe of the NVIDIA Llama 3.1 405B performance guide.

N optimizer steps of the benchmark's real training step (same model, parallel layout, global
batch, precision and optimizer as ``trainperf run``) on synthetic tokens, or on the prepared data
with ``--data-dir``; step-time statistics over the steps after the warm-up, tokens/s (all GPUs
and per GPU), model TFLOP/s per GPU by the recipe's formula and MFU against the device's dense
peak, peak memory, and the benchmark's projected time to train from the RCP mean samples to
converge. Proxy configurations (fewer layers, a smaller global batch) come from ``--layers`` and
``--gbs`` as in the guide.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from trainperf.benchmarks import get_benchmark
from trainperf.config import Config
from trainperf.data.prepare import DataPaths
from trainperf.data.readers import Batch
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.perf.estimate import project_time_to_train
from trainperf.perf.peaks import DEVICE_PEAKS, device_key
from trainperf.perf.profile import (
    ProfileSummary,
    profile_activities,
    summarize_trace,
    summary_to_dict,
    write_trace,
)
from trainperf.train.distributed import DistEnv, barrier
from trainperf.train.run import resolve_run
from trainperf.train.tasks import CausalLMTask
from trainperf.train.trainer import Trainer

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec


class SyntheticData:
    """Uniform random tokens of the model's vocabulary in the benchmark's shapes, every token
    scored. Sample ``i`` is the same on every rank and every call (seeded by ``i``)."""

    def __init__(self, *, seq_len: int, vocab_size: int, eval_samples: int, seed: int = 0):
        self.seq_len, self.vocab_size, self.seed = seq_len, vocab_size, seed
        self.train_samples = 0  # no epoch: an endless stream
        self.eval_size = eval_samples

    def _batch(self, indices) -> Batch:
        rows = []
        for i in indices:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
            rows.append(torch.randint(0, self.vocab_size, (self.seq_len + 1,), generator=g))
        tokens = torch.stack(rows)
        return tokens[:, :-1], tokens[:, 1:]

    train_batch = _batch
    eval_batch = _batch

    def begin_eval(self) -> None:
        """Nothing to redraw: sample i is the same at every evaluation."""


class SyntheticLatents:
    """Random posterior means and log-variances, text encodings, draws of the noise and the
    timestep, in the shapes of the flux1 reader's batches (``trainperf.data.flux``) for a Flux
    config. A pool of 64 samples (drawn once, seeded) serves every index: drawing a 256 x 4096
    text encoding per sample would make the host, not the step, the thing timed."""

    POOL = 64

    def __init__(self, model_cfg: Any, *, eval_samples: int, seed: int = 0) -> None:
        side = 2 * math.isqrt(model_cfg.image_tokens)  # square latents, 2 x 2 patches
        channels = model_cfg.in_channels // 4
        g = torch.Generator().manual_seed(seed)
        n, latent = self.POOL, (self.POOL, channels, side, side)
        self.pool = {
            "mean": torch.randn(latent, generator=g),
            "logvar": torch.randn(latent, generator=g) - 3.0,
            "eps": torch.randn(latent, generator=g),
            "noise": torch.randn(latent, generator=g),
            "t": torch.rand(n, generator=g),
            "t5": torch.randn(n, model_cfg.text_tokens, model_cfg.context_in_dim, generator=g),
            "clip": torch.randn(n, model_cfg.vec_in_dim, generator=g),
        }
        self.train_samples = 0  # no epoch: an endless stream
        self.eval_size = eval_samples

    def _batch(self, indices) -> dict[str, torch.Tensor]:
        rows = torch.tensor([int(i) % self.POOL for i in indices])
        return {k: v.index_select(0, rows) for k, v in self.pool.items()}

    train_batch = _batch
    eval_batch = _batch

    def begin_eval(self) -> None:
        """Nothing to redraw: the pool is fixed."""


def synthetic_data(cfg: Config, trainer: Trainer) -> SyntheticData | SyntheticLatents:
    """Random data in the shapes the benchmark's task reads: tokens, or flux1's latents."""
    if trainer.family.name == "flux":
        return SyntheticLatents(trainer.model_cfg, eval_samples=cfg.train.eval_samples)
    return SyntheticData(
        seq_len=cfg.train.seq_len,
        vocab_size=trainer.model_cfg.vocab_size,
        eval_samples=cfg.train.eval_samples,
    )


@dataclass
class PerfResult:
    benchmark: str
    scale: str
    device: str
    world_size: int
    n_layers: int
    seq_len: int
    global_batch_size: int
    micro_batch_size: int
    data: str
    step_times_s: list[float]
    warmup_steps: int
    median_step_s: float
    min_step_s: float
    samples_per_s: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float | None
    """By the family's exact FLOP count (for Llama, the NVIDIA recipe's formula); None for LoRA
    (a frozen base has no weight gradients)."""
    mfu: float | None
    """A fraction of the device's dense bf16 peak; None when the device is not in the table."""
    peak_memory_gib: float | None
    projected_minutes: float | None
    projection_note: str
    losses: list[float] | None = None
    """Training loss of each step on rank 0 (its share of the global batch)."""
    seed: int | None = None
    features: str = ""
    """The speed features in use, e.g. 'compile, float8 tensorwise, chunked CE, AC selective'."""
    profile: dict[str, Any] | None = None
    """With --profile: rank 0's ``ProfileSummary`` of the profiled steps, as a dict."""
    timing: str = "host clock"
    """How the steps were timed: 'CUDA events, no host sync' (the default on a GPU), 'host
    clock, a GPU sync per step' (--sync-each-step) or 'host clock' (CPU)."""


def measure(
    cfg: Config,
    spec: BenchmarkSpec,
    paths: DataPaths | None,
    *,
    steps: int,
    warmup: int,
    env: DistEnv,
    console: Console,
    profile_dir: Path | None = None,
    profile_steps: int = 2,
    sync_each_step: bool = False,
) -> PerfResult:
    """Time ``warmup + steps`` optimizer steps; statistics over the last ``steps``. With
    ``profile_dir``, 1 + ``profile_steps`` more steps run under torch.profiler (not timed).

    On CUDA a step's time is the GPU's, between CUDA events queued at the step boundaries, with
    no host sync in between: the host prepares the next batch while the GPU still computes, as
    in `trainperf run`'s loop, and a GPU that waits for the host still counts. With
    ``sync_each_step`` the host waits for the GPU after every step and times it with its clock
    (what a per-step ``torch.cuda.synchronize`` loop measures: the batch preparation is then
    added to every step).
    """
    if steps < 1 or warmup < 0 or profile_steps < 1:
        raise ValueError(
            f"--steps({steps}) and --profile-steps({profile_steps}) must be >= 1 and "
            f"--warmup({warmup}) >= 0"
        )
    cfg = resolve_run(cfg, spec, env)
    trainer = Trainer(
        cfg, spec, paths, ml=MLPerfLogger(None), console=console, show_progress=False, env=env
    )
    if paths is None:
        trainer.data = synthetic_data(cfg, trainer)
    trainer.setup()
    cuda = trainer.device.type == "cuda"
    steps_total = warmup + steps
    if cuda and not sync_each_step:
        losses, times = _event_timed(trainer, steps_total)
    else:
        times, losses = [], []
        for _ in range(steps_total):
            if cuda:
                torch.cuda.synchronize(trainer.device)
            start = time.perf_counter()
            losses.append(trainer.train_step())
            if cuda:
                torch.cuda.synchronize(trainer.device)
            times.append(time.perf_counter() - start)
    result = _result(cfg, trainer, times, warmup=warmup, synthetic=paths is None)
    # this rank's losses, read after the timing (with train.seed fixed, feature combinations
    # can be compared step by step: same initial weights, same synthetic batches)
    result.losses = [round(float(x), 5) for x in losses]
    result.seed = cfg.train.seed
    result.features += f", attention {trainer.attention}"
    if trainer.master_weights == "optimizer":
        result.features += ", float32 masters in AdamW"
    if cuda:
        synced = "host clock, a GPU sync per step"
        result.timing = synced if sync_each_step else "CUDA events, no host sync"
    if profile_dir is not None:
        summary = _profile(trainer, profile_dir, steps=profile_steps)
        result.profile = summary_to_dict(summary) if env.is_main else None
    return result


def _event_timed(trainer: Trainer, steps: int) -> tuple[list[torch.Tensor], list[float]]:
    """(losses, seconds per step) of `steps` training steps timed by CUDA events at the step
    boundaries; the host waits once, at the end."""
    torch.cuda.synchronize(trainer.device)
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    losses = []
    marks[0].record()
    for i in range(steps):
        losses.append(trainer.train_step())
        marks[i + 1].record()
    torch.cuda.synchronize(trainer.device)
    return losses, [a.elapsed_time(b) / 1e3 for a, b in zip(marks, marks[1:])]


def _profile(trainer: Trainer, directory: Path, *, steps: int) -> ProfileSummary:
    """Run 1 + `steps` more training steps under torch.profiler, the first one not recorded
    (the ranks line up and the profiler settles in it); this rank's trace into `directory`,
    its kernels summarised."""
    cuda = trainer.device.type == "cuda"
    path = Path(directory) / f"trace_rank{trainer.env.rank}.json.gz"
    events: list[dict] = []
    schedule = torch.profiler.schedule(wait=0, warmup=1, active=steps, repeat=1)
    barrier(trainer.env)
    with torch.profiler.profile(
        activities=profile_activities(trainer.device),
        schedule=schedule,
        on_trace_ready=lambda prof: events.extend(write_trace(prof, path)),
    ) as prof:
        trainer.train_step()
        if cuda:  # the warm-up step's kernels finish before the recorded steps begin
            torch.cuda.synchronize(trainer.device)
        prof.step()
        start = time.perf_counter()
        for i in range(steps):
            trainer.train_step()
            if i == steps - 1:  # before the last mark, which writes the trace
                if cuda:
                    torch.cuda.synchronize(trainer.device)
                wall = time.perf_counter() - start
            prof.step()
    return summarize_trace(events, steps=steps, wall_s=wall, trace=str(path))


def _result(cfg, trainer, times, *, warmup: int, synthetic: bool) -> PerfResult:
    t = cfg.train
    measured = times[warmup:]
    median = statistics.median(measured)
    world = trainer.env.world_size
    tokens_per_s = t.global_batch_size * t.seq_len / median
    name = torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu"
    tflops = None
    if cfg.model.lora_rank == 0:
        flops = trainer.family.flops_per_sample(trainer.model_cfg, t.seq_len)
        tflops = flops * t.global_batch_size / median / world / 1e12
    key = device_key(name)
    mfu = tflops / DEVICE_PEAKS[key]["bf16"] if tflops is not None and key else None
    minutes, note = _projection(cfg, samples_per_s=t.global_batch_size / median)
    peak = None
    if trainer.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    return PerfResult(
        benchmark=cfg.benchmark,
        scale=cfg.scale,
        device=name,
        world_size=world,
        n_layers=trainer.family.shape(trainer.model_cfg).n_layers,
        seq_len=t.seq_len,
        global_batch_size=t.global_batch_size,
        micro_batch_size=t.micro_batch_size,
        data=("synthetic latents" if trainer.family.name == "flux" else "synthetic tokens")
        if synthetic
        else "prepared data",
        step_times_s=[round(x, 4) for x in times],
        warmup_steps=warmup,
        median_step_s=median,
        min_step_s=min(measured),
        samples_per_s=t.global_batch_size / median,
        tokens_per_s=tokens_per_s,
        tokens_per_s_per_gpu=tokens_per_s / world,
        model_tflops_per_gpu=tflops,
        mfu=mfu,
        peak_memory_gib=peak,
        projected_minutes=minutes,
        projection_note=note,
        features=describe_features(cfg),
    )


def describe_features(cfg: Config) -> str:
    """The speed features of `cfg` in words, for tables and RESULTS.md."""
    par = cfg.parallel
    parts = [f"tp {par.tp}"] if par.tp > 1 else []
    if par.cp > 1:
        parts.append(f"cp {par.cp}")
    if par.ep > 1:
        parts.append(f"ep {par.ep}")
    parts.append(f"AC {par.activation_checkpointing}")
    if not par.reshard_after_forward:
        parts.append("no reshard after forward")
    if par.compile:
        parts.append("compile inside AC" if par.compile_inside_checkpoint else "compile")
    if par.float8 != "none" and cfg.model.lora_rank:
        parts.append(f"float8 frozen base ({par.float8})")
    elif par.float8 != "none":
        parts.append(f"float8 {par.float8}")
    if cfg.train.master_dtype != "float32":
        parts.append(f"{cfg.train.master_dtype} weights + AdamW states")
    if isinstance(get_benchmark(cfg.benchmark).task, CausalLMTask):  # a loss over a vocabulary
        parts.append("chunked CE" if cfg.chunked_cross_entropy else "plain CE")
    return ", ".join(parts)


def _projection(cfg: Config, *, samples_per_s: float) -> tuple[float | None, str]:
    """Projected time to train at this rate, or None with the reason (proxy model, no RCP)."""
    if cfg.scale != "full" or cfg.model.n_layers is not None:
        return None, f"no projection: scale {cfg.scale!r} is not the benchmark's full model"
    try:
        p = project_time_to_train(
            benchmark=cfg.benchmark, gbs=cfg.train.global_batch_size, samples_per_s=samples_per_s
        )
    except ValueError as exc:
        return None, f"no projection: {exc}"
    return p.total_minutes, (
        f"RCP mean {p.rcp_mean_samples:,.0f} samples ({p.rcp_basis}, {p.ruleset}) at this rate "
        f"+ {p.evaluations} evaluations"
    )


def perf_to_dict(result: PerfResult) -> dict[str, Any]:
    return asdict(result)
