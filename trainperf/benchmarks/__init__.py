"""The MLPerf benchmarks trainperf knows: one module each, rules as constants, scales as data."""

from __future__ import annotations

from types import ModuleType

from trainperf.benchmarks import llama2_70b_lora, llama31_8b, llama31_405b
from trainperf.config import Config

BENCHMARKS: dict[str, ModuleType] = {
    llama31_8b.SUBMISSION_BENCHMARK: llama31_8b,
    llama2_70b_lora.SUBMISSION_BENCHMARK: llama2_70b_lora,
    llama31_405b.SUBMISSION_BENCHMARK: llama31_405b,
}
DEFAULT_BENCHMARK = llama31_8b.SUBMISSION_BENCHMARK
DEFAULT_SCALE = "tiny"


def get_benchmark(name: str) -> ModuleType:
    """The benchmark module for an MLPerf benchmark name."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (see `trainperf list`)"
        ) from None


def get_default_config(benchmark: str, scale: str) -> Config:
    """The default configuration of a benchmark at a scale, with clear errors for bad names."""
    module = get_benchmark(benchmark)
    if scale not in module.SCALES:
        raise ValueError(
            f"unknown scale {scale!r} for {benchmark}; known: {', '.join(module.SCALES)}"
        )
    return module.default_config(scale)
