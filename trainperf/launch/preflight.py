"""Refuse a run or perf layout that cannot work, before any model is built or process started.

``check_layout`` is the one place that ``run`` and ``perf`` (and their launchers, in the
launching process, before torchrun or Slurm) ask whether a config can run on ``world`` ranks:

- the parallel layout: tp, cp, ep and dp_shard against the world size, tp against the model's
  heads, widths and vocabulary (the family's ``tp_sizes``), as ``ParallelDims`` checks them,
  and ep against the model's experts;
- the memory: the layout's estimate (``perf/memory.py``: weights, gradients and optimizer
  states, activations, loss) against each GPU's memory, or on CPU the ranks on this machine
  against its available RAM.

A refusal is a ``ValueError`` with the numbers and the fix. The estimate is within about 15 %
of measured peaks, so a layout is refused only when it exceeds the whole memory; setting
``TRAINPERF_SKIP_MEMORY_CHECK=1`` starts it anyway (the estimate's error is then the user's).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from trainperf.config import Config
from trainperf.perf.memory import GIB, OVERHEAD_GIB, MemoryEstimate, estimate_config_memory

SKIP_MEMORY_CHECK = "TRAINPERF_SKIP_MEMORY_CHECK"
"""Environment variable: 1 skips the memory refusal (the layout check stays)."""
CPU_RANK_GIB = 0.5
"""A CPU rank's own memory (Python, torch, the data loader) in place of the CUDA context."""


@dataclass(frozen=True)
class DeviceMemory:
    """The memory a rank's estimate is compared with."""

    kind: str
    """'cuda' or 'cpu'."""
    gib: float
    """Per GPU (cuda), or the machine's available RAM shared by its ranks (cpu)."""
    what: str
    """How to name it in a message: 'NVIDIA H200 (139 GiB)', 'this machine's available RAM'."""


def check_layout(cfg: Config, *, world: int, local_ranks: int, memory: bool = True) -> None:
    """ValueError if `cfg` cannot run on `world` ranks (`local_ranks` of them on this machine):
    a parallel layout that does not divide, or (`memory`) an estimate above the memory here."""
    from trainperf.benchmarks import get_benchmark

    family = get_benchmark(cfg.benchmark).family
    model_cfg = family.model_config(cfg)
    check_parallel(cfg, family.tp_sizes(model_cfg), world=world)
    check_experts(cfg, getattr(model_cfg, "n_experts", 0))
    check_master_weights(cfg, world=world)
    if memory and os.environ.get(SKIP_MEMORY_CHECK) != "1":
        estimate = estimate_config_memory(cfg, family.shape(model_cfg), world=world)
        check_memory(cfg, estimate, device_memory(cfg.train.device, local_ranks), local_ranks)


def check_parallel(cfg: Config, tp_sizes: dict[str, int], *, world: int) -> None:
    """ValueError if tp and cp cannot split the model's `tp_sizes` and sequence, or the
    degrees do not fit or divide `world` ranks."""
    from trainperf.parallel.dims import ParallelDims

    par = cfg.parallel
    # the model's sizes first: their message names the degrees that can work at all
    inner = ParallelDims(cp=par.cp, tp=par.tp, world_size=par.cp * par.tp)
    inner.validate_sizes(tp_sizes, seq_len=cfg.train.seq_len)
    group = par.tp * par.cp * max(par.dp_shard, 1)
    if group > world:
        names = " x ".join(
            f"parallel.{k}({v})" for k, v in (("dp_shard", par.dp_shard), ("cp", par.cp),
                                              ("tp", par.tp)) if v > 1
        )  # fmt: skip
        raise ValueError(
            f"{names} needs {group} ranks, and this run has {world} (--nproc x nodes); start "
            f"{group} ranks (--nproc {group}) or lower the degree (1 turns it off)"
        )
    try:
        ParallelDims(dp_shard=par.dp_shard, cp=par.cp, tp=par.tp, ep=par.ep, world_size=world)
    except ValueError as exc:
        raise ValueError(f"on {world} ranks (--nproc x nodes): {exc}") from None


def check_experts(cfg: Config, n_experts: int) -> None:
    """ValueError if expert parallel is asked of a model without experts, or ep does not
    divide them."""
    ep = cfg.parallel.ep
    if ep == 1:
        return
    if not n_experts:
        raise ValueError(
            f"parallel.ep({ep}): {cfg.benchmark}'s model has no experts to split; use parallel.ep=1"
        )
    if n_experts % ep:
        divisors = [d for d in range(1, n_experts + 1) if n_experts % d == 0]
        raise ValueError(
            f"parallel.ep({ep}) must divide the model's {n_experts} experts; try ep in "
            f"{{{', '.join(map(str, divisors))}}}"
        )


def check_master_weights(cfg: Config, *, world: int) -> None:
    """ValueError if train.master_weights=optimizer cannot apply to this layout."""
    from trainperf.train.master import blocker, refusal

    if cfg.train.master_weights != "optimizer":
        return
    device = cfg.train.device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    why = blocker(cfg, world=world, device="cuda" if cuda else "cpu")
    if why:
        raise ValueError(refusal(why))


def device_memory(device: str, local_ranks: int) -> DeviceMemory:
    """The memory of `device` (train.device; auto: CUDA when visible): the smallest of the
    first `local_ranks` GPUs, or this machine's available RAM."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        count = min(local_ranks, torch.cuda.device_count()) or 1
        props = min(
            (torch.cuda.get_device_properties(i) for i in range(count)),
            key=lambda p: p.total_memory,
        )
        gib = props.total_memory / GIB
        return DeviceMemory("cuda", gib, f"{props.name} ({gib:.0f} GiB per GPU)")
    return DeviceMemory("cpu", available_ram_gib(), "this machine's available RAM")


def available_ram_gib() -> float:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), else the total
    physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def check_memory(
    cfg: Config, estimate: MemoryEstimate, mem: DeviceMemory, local_ranks: int
) -> None:
    """ValueError when the estimate exceeds `mem`: per GPU, or all local CPU ranks together."""
    if mem.kind == "cuda":
        need, per = estimate.total_gib, "per GPU"
    else:  # no CUDA context: a CPU rank's own memory instead
        other = estimate.other_gib - OVERHEAD_GIB + CPU_RANK_GIB
        estimate = dataclasses.replace(estimate, other_gib=other)
        need, per = local_ranks * estimate.total_gib, f"for {local_ranks} CPU rank(s)"
    if need <= mem.gib:
        return
    raise ValueError(
        f"{cfg.benchmark} at scale {cfg.scale} does not fit: it needs ~{need:.0f} GiB {per} "
        f"(per rank, GiB: {estimate.parts()}), "
        f"and {mem.what} is {mem.gib:.0f} GiB. Fix: {_fixes(cfg, mem)}; or set "
        f"{SKIP_MEMORY_CHECK}=1 to start it anyway"
    )


def _fixes(cfg: Config, mem: DeviceMemory) -> str:
    """The changes that shrink the estimate, most effective first."""
    fixes = []
    if cfg.scale != "tiny":
        fixes.append("--scale tiny (or small)")
    if mem.kind == "cuda":
        fixes.append("more GPUs (--nproc N, --nodes N: FSDP shards weights and optimizer)")
    else:
        fixes.append("a GPU machine")
    if cfg.parallel.activation_checkpointing != "full":
        fixes.append("parallel.activation_checkpointing=full")
    if cfg.train.micro_batch_size > 1:
        fixes.append("a smaller train.micro_batch_size")
    fixes.append("a proxy with fewer layers (perf --layers N or --preset)")
    return ", ".join(fixes)
