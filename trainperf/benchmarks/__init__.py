"""The MLPerf benchmarks trainperf knows: one module each, rules as constants, one typed spec.

``get_benchmark(name)`` returns the benchmark's `BenchmarkSpec` (``spec.py``); the rest of
trainperf reads its fields.
"""

from __future__ import annotations

from trainperf.benchmarks import flux1, llama2_70b_lora, llama31_8b, llama31_405b
from trainperf.benchmarks.spec import BenchmarkSpec
from trainperf.config import Config

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (llama31_8b.SPEC, llama2_70b_lora.SPEC, llama31_405b.SPEC, flux1.SPEC)
}
DEFAULT_BENCHMARK = llama31_8b.SPEC.name
DEFAULT_SCALE = "tiny"


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of an MLPerf benchmark by name; ValueError naming the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (see `trainperf list`)"
        ) from None


def get_default_config(benchmark: str, scale: str) -> Config:
    """The default configuration of a benchmark at a scale, with clear errors for bad names."""
    return get_benchmark(benchmark).config(scale)
