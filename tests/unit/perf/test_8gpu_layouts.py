"""[8gpu] The reference layouts of the published 8-GPU submissions are accepted and fit.

What can be checked without the machine: each layout's config is valid, the parallel dims split
the model and the 8192-token sequence, the global batch splits over the data-parallel ranks,
and the memory estimate fits an H200 (DGXH200_1x8). bench/gpu_8gpu.sh runs them on 8 GPUs.
"""

from __future__ import annotations

import pytest

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.config import apply_overrides
from trainperf.launch.systems import SYSTEMS
from trainperf.parallel.dims import ParallelDims
from trainperf.perf.memory import HEADROOM, estimate_config_memory

DGX = SYSTEMS["DGXH200_1x8"]

# llama2_70b_lora as NVIDIA / Dell / Lenovo submit it on 8 GPUs, and plain FSDP
LORA_LAYOUTS = {
    "tp4_sp_dp2": ["parallel.tp=4"],
    "cp2_dp4": ["parallel.cp=2"],
    "fsdp8": [],
    "fsdp8_fp8": ["parallel.float8=rowwise"],
    "cp2_dp4_fp8": ["parallel.cp=2", "parallel.float8=rowwise"],
}
PRETRAIN_LAYOUTS = {"fsdp8": [], "fsdp8_fp8": ["parallel.float8=tensorwise"]}


def _check(benchmark: str, overrides: list[str]) -> float:
    cfg = apply_overrides(get_default_config(benchmark, "full"), overrides)
    par, t = cfg.parallel, cfg.train
    family = get_benchmark(benchmark).family
    model = family.model_config(cfg)
    dims = ParallelDims(dp_shard=par.dp_shard, cp=par.cp, tp=par.tp, world_size=DGX.world_size)
    dims.validate_sizes(family.tp_sizes(model), seq_len=t.seq_len)
    assert t.global_batch_size % (t.micro_batch_size * dims.dp_shard) == 0
    estimate = estimate_config_memory(cfg, family.shape(model), world=DGX.world_size)
    assert estimate.total_gib <= HEADROOM * DGX.memory_gib, (overrides, estimate.describe())
    return estimate.total_gib


@pytest.mark.parametrize("name", LORA_LAYOUTS)
def test_lora_reference_layouts_fit_eight_h200(name: str) -> None:
    _check("llama2_70b_lora", LORA_LAYOUTS[name])


@pytest.mark.parametrize("name", PRETRAIN_LAYOUTS)
def test_llama31_8b_gbs32_fits_eight_h200(name: str) -> None:
    _check("llama31_8b", PRETRAIN_LAYOUTS[name])


def test_float8_with_tensor_parallel_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"float8=rowwise with parallel.tp=4 is not supported"):
        apply_overrides(
            get_default_config("llama2_70b_lora", "full"),
            LORA_LAYOUTS["tp4_sp_dp2"] + ["parallel.float8=rowwise"],
        )


def test_context_parallel_halves_the_lora_activations() -> None:
    plain, cp2 = (_check("llama2_70b_lora", o) for o in ([], ["parallel.cp=2"]))
    assert cp2 < plain
