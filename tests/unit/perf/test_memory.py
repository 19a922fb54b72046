"""The memory estimate of a layout, checked against the peaks `trainperf perf` measured."""

import pytest

from trainperf.models.llama import FAMILY
from trainperf.models.llama.model import get_llama_config
from trainperf.perf.memory import estimate_memory

S8 = FAMILY.shape(get_llama_config("llama3.1-8b"))
S70 = FAMILY.shape(get_llama_config("llama2-70b"))

# Peak GiB per GPU that `trainperf perf` measured (bench/RESULTS.md, 2026-11-22), seq 8192, mb 1.
MEASURED = [
    ("8B, 2 GPUs, no AC, compile", S8, 2, "none", False, "none", 85.7),
    ("8B, 2 GPUs, full AC", S8, 2, "full", False, "none", 64.8),
    ("8B 4 layers, 1 GPU, no AC", FAMILY.shape(get_llama_config("llama3.1-8b", n_layers=4)), 1,
     "none", False, "none", 37.5),
    ("70B LoRA, 2 GPUs, bf16 base", S70, 2, "full", True, "none", 82.2),
    ("70B LoRA, 1 GPU, float8 base", S70, 1, "full", True, "rowwise", 79.4),
    ("70B LoRA 20 layers, 1 GPU, bf16", FAMILY.shape(get_llama_config("llama2-70b", n_layers=20)),
     1, "full", True, "none", 38.8),
]  # fmt: skip


@pytest.mark.parametrize("case", MEASURED, ids=[m[0] for m in MEASURED])
def test_estimate_is_within_15_percent_of_the_measured_peak(case) -> None:
    _, shape, world, ac, lora, float8, measured = case
    est = estimate_memory(shape, world=world, seq_len=8192, micro_batch=1, ac=ac, lora=lora,
                          float8=float8, chunked_ce=True)  # fmt: skip
    assert est.total_gib == pytest.approx(measured, rel=0.15), est.describe()


def test_shape_counts_the_llama_parameters() -> None:
    # blocks + root (embedding and output) + norms = the published 8,030,261,248
    norms = 32 * 2 * 4096 + 4096
    assert S8.n_layers * S8.block_params + S8.root_params + norms == 8_030_261_248
