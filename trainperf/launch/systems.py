"""System presets (the submissions' ``config_<system>.sh`` as data) and a memory estimate.

``trainperf systems`` lists the presets; ``trainperf run BENCH --system NAME`` applies one
(nodes, GPUs per node, and the layout it allows: micro-batch, activation checkpointing, float8,
compile); ``--system auto`` looks at the local GPUs and picks the fastest layout whose estimated
memory fits, printing the estimate. A layout that does not fit is refused with its estimate before
anything is launched.

The memory estimate is ``perf/memory.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainperf.config import Config
from trainperf.launch.torchrun import without_options
from trainperf.perf.memory import GIB, HEADROOM, MemoryEstimate, ModelShape, estimate_memory
from trainperf.perf.peaks import device_key


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


def get_system(name: str) -> SystemPreset:
    if name not in SYSTEMS:
        raise ValueError(
            f"unknown system {name!r}; known: {', '.join(SYSTEMS)}, or auto (trainperf systems)"
        )
    return SYSTEMS[name]


def detect_system() -> SystemPreset:
    """`--system auto`: the local GPUs as a preset (or CPU)."""
    import torch

    if not torch.cuda.is_available():
        return SYSTEMS["CPU"]
    props = torch.cuda.get_device_properties(0)
    count = torch.cuda.device_count()
    key = device_key(props.name) or "gpu"
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
    system: SystemPreset, model: ModelShape, *, seq_len: int, micro_batch: int, lora: bool
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


def layouts_for(system: SystemPreset, cfg: Config) -> list[LayoutChoice]:
    """Candidate layouts of `system` for the benchmark config `cfg`, fastest first."""
    from trainperf.benchmarks import get_benchmark

    family = get_benchmark(cfg.benchmark).family
    return rank_layouts(
        system,
        family.shape(family.model_config(cfg)),
        seq_len=cfg.train.seq_len,
        micro_batch=cfg.train.micro_batch_size,
        lora=cfg.model.lora_rank > 0,
    )


@dataclass(frozen=True)
class SystemFit:
    """A row of ``trainperf systems``: a preset and the layout it runs a config with."""

    system: SystemPreset
    pick: LayoutChoice | None
    """The fastest layout whose estimate fits; None when none does."""
    estimate: MemoryEstimate | None
    """The pick's estimate, else the last (leanest) candidate's."""


def system_fits(cfg: Config) -> list[SystemFit]:
    """Every preset with the fastest layout that fits the benchmark config `cfg`."""
    rows = []
    for system in SYSTEMS.values():
        choices = layouts_for(system, cfg)
        pick = next((c for c in choices if c.fits), None)
        estimate = (pick or choices[-1]).estimate if choices else None
        rows.append(SystemFit(system, pick, estimate))
    return rows


@dataclass(frozen=True)
class SystemLayout:
    """``--system NAME``: the preset and the layout a run takes on it."""

    system: SystemPreset
    overrides: tuple[str, ...]
    """The layout's config overrides; () on CPU (the benchmark's own layout)."""
    note: str
    """One line for the user: the system, the layout and its memory estimate."""


def choose_layout(name: str, cfg: Config) -> SystemLayout:
    """--system NAME|auto: the preset (auto: the local GPUs) and the fastest layout whose
    estimated memory fits; ValueError with every layout's estimate when none does."""
    system = detect_system() if name == "auto" else get_system(name)
    if not system.memory_gib:  # CPU: the benchmark's own layout
        return SystemLayout(system, (), f"system {system.name}: {system.description}")
    choices = layouts_for(system, cfg)
    pick = next((c for c in choices if c.fits), None)
    if pick is None:
        lines = "\n".join(f"  {' '.join(c.overrides)}: {c.estimate.describe()}" for c in choices)
        raise ValueError(
            f"{cfg.benchmark} ({cfg.scale}) does not fit {system.name} ({system.world_size} x "
            f"{system.memory_gib:.0f} GiB) in any layout:\n{lines}\nuse more GPUs or nodes"
        )
    note = (
        f"system {system.name} ({system.description}): {' '.join(pick.overrides)}; "
        f"{pick.estimate.describe()} of {system.memory_gib:.0f}"
    )
    return SystemLayout(system, pick.overrides, note)


def argv_for_system(argv: list[str], layout: SystemLayout) -> list[str]:
    """The command line that the launched runs get: the preset's --nproc and --nodes instead of
    --system, the layout's overrides, then the user's own ``section.key=value`` again so that
    they win (the last override of a key is the one applied)."""
    system = layout.system
    out = without_options(argv, {"--system": True, "--nproc": True})
    out += [f"--nproc={system.gpus_per_node}", f"--nodes={system.nodes}"]
    user = [item for item in out if "=" in item and not item.startswith("-")]
    return out + [o for o in layout.overrides if o not in out] + user
