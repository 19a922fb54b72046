"""What ``trainperf perf`` measures: its options, checked before any GPU work; a benchmark's
named proxy configurations (``--preset``); the overrides that turn the benchmark's config into
the measured one (random weights, the preset's, ``--layers``, ``--gbs``, the user's)."""

from __future__ import annotations

from pathlib import Path

from trainperf.benchmarks import DEFAULT_SCALE, get_benchmark
from trainperf.benchmarks.spec import PerfPreset


def check_perf_options(
    *, nproc: int, steps: int, warmup: int, profile_steps: int, profile_dir: Path | None
) -> None:
    """ValueError naming every option out of range, or a --profile folder that is a file."""
    bad = [f"{flag}({value}) must be >= {low}" for flag, value, low in (
        ("--nproc", nproc, 1), ("--steps", steps, 1), ("--warmup", warmup, 0),
        ("--profile-steps", profile_steps, 1)) if value < low]  # fmt: skip
    if bad:
        raise ValueError("; ".join(bad))
    if profile_dir is not None and profile_dir.exists() and not profile_dir.is_dir():
        raise ValueError(f"--profile {profile_dir} is a file; give a folder for the traces")


def describe_presets(benchmark: str) -> str:
    """One indented line per perf preset of `benchmark`: its name and description."""
    presets = get_benchmark(benchmark).perf_presets
    return "\n".join(f"  {n}: {p.description}" for n, p in presets.items()) or "  (none)"


def find_preset(benchmark: str, name: str | None) -> PerfPreset | None:
    """The perf preset `name` of `benchmark` (None: none asked for); ValueError lists them."""
    if name is None:
        return None
    presets = get_benchmark(benchmark).perf_presets
    if name not in presets:
        raise ValueError(
            f"unknown --preset {name!r} for {benchmark}; known:\n{describe_presets(benchmark)}"
        )
    return presets[name]


def perf_scale(preset: PerfPreset | None, scale: str | None) -> str:
    """--scale, else the preset's, else full on a GPU machine and the tiny scale on CPU."""
    import torch

    if scale is not None:
        return scale
    default = "full" if torch.cuda.is_available() else DEFAULT_SCALE
    return preset.scale if preset else default


def perf_overrides(
    preset: PerfPreset | None, overrides: list[str], *, layers: int | None, gbs: int | None
) -> list[str]:
    """The measured config's overrides, later ones winning: random weights (unless the user
    names a checkpoint), the preset's, the user's ``section.key=value``, --layers, --gbs."""
    out = ["model.checkpoint=random", *(preset.overrides if preset else ()), *overrides]
    if layers is not None:
        out.append(f"model.n_layers={layers}")
    if gbs is not None:
        out.append(f"train.global_batch_size={gbs}")
    return out
