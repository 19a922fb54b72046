"""System presets (the submissions' ``config_<system>.sh`` as data) and a memory estimate.

``trainperf systems`` lists the presets; ``trainperf run BENCH --system NAME`` applies one
(nodes, GPUs per node, and the layout it allows: micro-batch, activation checkpointing, float8,
compile); ``--system auto`` looks at the local GPUs and picks the fastest layout whose estimated
memory fits, printing the estimate. A layout that does not fit is refused with its estimate before
anything is launched.

The estimate (bytes per GPU, N ranks sharding with FSDP, sequence T, micro-batch b):

- full training: fp32 master weights, fp32 gradients and two AdamW moments, all sharded:
  16 P / N; the root's bf16 gathered weights (embedding + output) stay: 2 P_root;
- LoRA: the frozen base in bf16 sharded, 2 P / N, or in float8 replicated, P_blocks (+ 2 P_root);
- activations per layer and token, from trainperf's measured peaks (bench/RESULTS.md): about 24 d
  bytes without checkpointing, 12 d with selective, 2 d (the block input) with full, plus one
  layer's full set while it is recomputed; LoRA adds its float32 input copies;
- the loss: the chunked cross entropy keeps T b V bf16 gradients (plain: T b V x 10 bytes);
- 2 unsharded blocks in flight (FSDP prefetch) and 3 GiB for the CUDA context and allocator.

It reproduces the measured peaks within about 15 % (tests/unit/launch/test_systems.py); a layout
fits when the estimate is at most 92 % of the GPU's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainperf.config import Config
from trainperf.models.llama import LlamaConfig

GIB = 2**30
OVERHEAD_GIB = 3.0
HEADROOM = 0.92
"""A layout fits when its estimate is at most this fraction of the GPU's memory (the estimate's
error and the allocator's fragmentation)."""


@dataclass(frozen=True)
class SystemPreset:
    name: str
    description: str
    nodes: int
    gpus_per_node: int
    accelerator: str
    """Device key of the dense peaks table (h100, h200, b200, mi300x, ...) or 'cpu'."""
    memory_gib: float
    """Usable memory per GPU."""
    fp8: bool = True
    """FP8 tensor cores (float8 layouts allowed)."""

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


_FAST_8B = ("parallel.compile=true", "parallel.float8=tensorwise")
_LORA_FP8 = ("parallel.compile=true", "parallel.float8=rowwise")

SYSTEMS: dict[str, SystemPreset] = {
    s.name: s
    for s in (
        SystemPreset("CPU", "this machine's CPU (tiny scale; tests)", 1, 1, "cpu", 0.0, fp8=False),
        SystemPreset("H100_1x1", "one H100 80GB", 1, 1, "h100", 79.0),
        SystemPreset("H200_1x1", "one H200 141GB", 1, 1, "h200", 139.0),
        SystemPreset("H200_1x2", "two H200 141GB, NVLink", 1, 2, "h200", 139.0),
        SystemPreset("DGXH100_1x8", "DGX H100: 8x H100 80GB, NVLink", 1, 8, "h100", 79.0),
        SystemPreset("DGXH200_1x8", "DGX H200: 8x H200 141GB, NVLink", 1, 8, "h200", 139.0),
        SystemPreset("GB200_1x4", "one GB200 NVL72 tray: 4x B200 186GB", 1, 4, "b200", 184.0),
        # ROCm: trainperf's float8 paths (e4m3fn) are not validated there; bf16 layouts only
        SystemPreset("MI300X_1x8", "8x AMD MI300X 192GB (ROCm)", 1, 8, "mi300x", 190.0, fp8=False),
        SystemPreset("MI355X_1x8", "8x AMD MI355X 288GB (ROCm)", 1, 8, "mi355x", 286.0, fp8=False),
    )
}


@dataclass
class MemoryEstimate:
    weights_gib: float
    optimizer_gib: float
    activations_gib: float
    loss_gib: float
    other_gib: float

    @property
    def total_gib(self) -> float:
        return (
            self.weights_gib + self.optimizer_gib + self.activations_gib + self.loss_gib
            + self.other_gib
        )  # fmt: skip

    def describe(self) -> str:
        return (
            f"~{self.total_gib:.0f} GiB/GPU (weights {self.weights_gib:.1f}, gradients + "
            f"optimizer {self.optimizer_gib:.1f}, activations {self.activations_gib:.1f}, loss "
            f"{self.loss_gib:.1f}, other {self.other_gib:.1f})"
        )


def _params(cfg: LlamaConfig) -> tuple[float, float, float]:
    """(block parameters, parameters of one block, root parameters: embedding + output)."""
    kv = cfg.n_kv_heads * cfg.head_dim
    layer = cfg.dim * (cfg.dim + 2 * kv) + cfg.dim * cfg.dim + 3 * cfg.dim * cfg.ffn_dim
    return cfg.n_layers * layer, layer, 2 * cfg.vocab_size * cfg.dim


def estimate_memory(
    cfg: LlamaConfig,
    *,
    world: int,
    seq_len: int,
    micro_batch: int,
    ac: str,
    lora: bool,
    float8: str,
    chunked_ce: bool,
    cp: int = 1,
) -> MemoryEstimate:
    """Peak bytes per GPU of one training step, in GiB (see the module docstring).

    cp: context-parallel degree; a rank holds the activations of seq_len / cp tokens of each
    sample (the all-gathered K/V of one layer at a time are small beside them)."""
    blocks, layer, root = _params(cfg)
    tokens = seq_len * micro_batch // cp
    if lora and float8 != "none":
        weights, optim = blocks + 2 * root / world, 0.0  # float8 base, replicated
    elif lora:
        weights, optim = 2 * (blocks + root) / world, 0.0
    else:
        weights, optim = 4 * (blocks + root) / world, 12 * (blocks + root) / world
    weights += 2 * root if world > 1 else 0  # the gathered root stays until backward
    per_token = {"none": 24, "selective": 12, "full": 2}[ac] * cfg.dim
    if lora:
        per_token += 8 * cfg.dim if ac == "none" else 0  # float32 copies of the adapters' input
    acts = cfg.n_layers * per_token * tokens
    if ac != "none":
        acts += 26 * cfg.dim * tokens  # the block being recomputed
    loss = tokens * cfg.vocab_size * (2 if chunked_ce else 10)
    in_flight = 2 * 2 * layer if world > 1 else 0
    return MemoryEstimate(
        weights_gib=weights / GIB,
        optimizer_gib=optim / GIB,
        activations_gib=acts / GIB,
        loss_gib=loss / GIB,
        other_gib=in_flight / GIB + OVERHEAD_GIB,
    )


def estimate_config_memory(cfg: Config, model: LlamaConfig, *, world: int) -> MemoryEstimate:
    """`estimate_memory` for a run config (its sequence, micro-batch and parallel layout)."""
    par, t = cfg.parallel, cfg.train
    return estimate_memory(
        model,
        world=world,
        seq_len=t.seq_len,
        micro_batch=t.micro_batch_size,
        ac=par.activation_checkpointing,
        lora=cfg.model.lora_rank > 0,
        float8=par.float8,
        chunked_ce=cfg.chunked_cross_entropy,
        cp=par.cp,
    )


def get_system(name: str) -> SystemPreset:
    if name not in SYSTEMS:
        raise ValueError(
            f"unknown system {name!r}; known: {', '.join(SYSTEMS)}, or auto (trainperf systems)"
        )
    return SYSTEMS[name]


def accelerator_key(device_name: str) -> str:
    """The DEVICE_PEAKS key of a CUDA device name ('NVIDIA H100 80GB HBM3' -> 'h100'), or 'gpu'."""
    lowered = device_name.lower().replace(" ", "")
    return next((k for k in ("h200", "h100", "b200", "mi355x", "mi300x") if k in lowered), "gpu")


def detect_system() -> SystemPreset:
    """`--system auto`: the local GPUs as a preset (or CPU)."""
    import torch

    if not torch.cuda.is_available():
        return SYSTEMS["CPU"]
    props = torch.cuda.get_device_properties(0)
    count = torch.cuda.device_count()
    key = accelerator_key(props.name)
    return SystemPreset(
        name="auto",
        description=f"{count}x {props.name} (detected)",
        nodes=1,
        gpus_per_node=count,
        accelerator=key,
        memory_gib=props.total_memory / GIB - 1.0,
        fp8=(props.major, props.minor) >= (8, 9),
    )


# Candidate layouts, fastest first (measured on H100/H200, bench/RESULTS.md), each with whether
# it needs FP8 tensor cores.
CANDIDATES: dict[bool, tuple[tuple[bool, tuple[str, ...]], ...]] = {
    False: (  # full training
        (True, ("parallel.activation_checkpointing=none", "parallel.compile=true",
                "parallel.float8=tensorwise")),
        (False, ("parallel.activation_checkpointing=none", "parallel.compile=true")),
        (False, ("parallel.activation_checkpointing=selective", "parallel.compile=true")),
        (False, ("parallel.activation_checkpointing=full", "parallel.compile=true")),
    ),
    True: (  # LoRA: the float8 base compiled inside the checkpoint (around it keeps more memory)
        (True, ("parallel.activation_checkpointing=full", "parallel.float8=rowwise",
                "parallel.compile=true", "parallel.compile_inside_checkpoint=true")),
        (False, ("parallel.activation_checkpointing=full", "parallel.compile=true")),
    ),
}  # fmt: skip


@dataclass
class LayoutChoice:
    overrides: tuple[str, ...]
    estimate: MemoryEstimate
    fits: bool


def _option(overrides: tuple[str, ...], key: str, default: str) -> str:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith(key + "=")), default)


def rank_layouts(
    system: SystemPreset, model: LlamaConfig, *, seq_len: int, micro_batch: int, lora: bool
) -> list[LayoutChoice]:
    """Every candidate layout the system can run, fastest first, with its estimate and fit."""
    choices = []
    for needs_fp8, overrides in CANDIDATES[lora]:
        if needs_fp8 and not system.fp8:
            continue
        ac = _option(overrides, "parallel.activation_checkpointing", "none")
        estimate = estimate_memory(
            model,
            world=system.world_size,
            seq_len=seq_len,
            micro_batch=micro_batch,
            ac=ac,
            lora=lora,
            float8=_option(overrides, "parallel.float8", "none"),
            chunked_ce=True,
        )
        fits = system.memory_gib == 0 or estimate.total_gib <= HEADROOM * system.memory_gib
        choices.append(LayoutChoice(overrides, estimate, fits))
    return choices
