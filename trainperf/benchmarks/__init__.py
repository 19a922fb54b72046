"""The MLPerf benchmarks trainperf knows: one module each, rules as constants, one typed spec.

``get_benchmark(name)`` returns the benchmark's `BenchmarkSpec` (``spec.py``); the rest of
trainperf reads its fields.
"""

from __future__ import annotations

from trainperf.benchmarks import (
    deepseekv3_671b,
    flux1,
    gpt_oss_20b,
    llama2_70b_lora,
    llama31_8b,
    llama31_405b,
)
from trainperf.benchmarks.spec import BenchmarkSpec
from trainperf.config import Config

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        llama31_8b.SPEC,
        llama2_70b_lora.SPEC,
        llama31_405b.SPEC,
        flux1.SPEC,
        gpt_oss_20b.SPEC,
        deepseekv3_671b.SPEC,
    )  # fmt: skip
}
NEWEST_RULESET = max(
    (r for spec in BENCHMARKS.values() for r in spec.rulesets),
    key=lambda r: tuple(int(x) for x in r.split(".")),
)
"""The newest MLPerf Training round trainperf knows (as an mlperf_logging ruleset)."""
DEFAULT_BENCHMARK = llama31_8b.SPEC.name
DEFAULT_SCALE = "tiny"


def rounds_of(spec: BenchmarkSpec) -> str:
    """'v5.1, v6.0, v6.1', with '(retired)' when the newest round lacks it."""
    retired = " (retired)" if spec.retired_note(NEWEST_RULESET) else ""
    return ", ".join(spec.rounds) + retired


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of an MLPerf benchmark by name; ValueError naming the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (see `trainperf list`)"
        ) from None


def get_default_config(benchmark: str, scale: str) -> Config:
    """The default configuration of a run of a benchmark at a scale, with clear errors for bad
    names and for a benchmark trainperf cannot train (``spec.untrainable``)."""
    spec = get_benchmark(benchmark)
    spec.check_trainable()
    return spec.config(scale)
