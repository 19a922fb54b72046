"""Layouts refused before anything is built: parallel degrees against the ranks and the model,
and the memory estimate against the GPU's memory or the machine's RAM."""

import pytest

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.launch.preflight import (
    SKIP_MEMORY_CHECK,
    DeviceMemory,
    check_layout,
    check_memory,
)
from trainperf.perf.memory import MemoryEstimate


def _cfg(*overrides: str, bench: str = "llama31_8b", scale: str = "tiny"):
    return apply_overrides(get_default_config(bench, scale), list(overrides))


@pytest.mark.parametrize(
    ("overrides", "world", "message"),
    [
        (["parallel.tp=2"], 1, r"parallel.tp\(2\) needs 2 ranks, and this run has 1"),
        (["parallel.tp=2", "parallel.cp=2"], 2, r"cp\(2\) x parallel.tp\(2\) needs 4 ranks"),
        (["parallel.tp=3"], 3, r"tp\(3\) must divide n_heads\(4\); try tp in \{1, 2\}"),
        (["parallel.dp_shard=2"], 3, r"on 3 ranks .*dp_shard\(2\) \* tp\(1\) = 2 must equal"),
    ],
)
def test_a_layout_the_ranks_or_model_cannot_split_is_refused(overrides, world, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_layout(_cfg(*overrides), world=world, local_ranks=world, memory=False)


def test_a_layout_that_splits_passes() -> None:
    check_layout(_cfg("parallel.tp=2", "train.device=cpu"), world=4, local_ranks=4)


@pytest.mark.parametrize(
    ("bench", "ep", "world", "message"),
    [
        ("llama31_8b", 2, 2, r"parallel.ep\(2\): llama31_8b's model has no experts to split"),
        ("gpt_oss_20b", 3, 2, r"on 2 ranks .*ep\(3\) must divide the data-parallel ranks"),
        ("gpt_oss_20b", 3, 3, r"parallel.ep\(3\) must divide the model's 8 experts; try ep in"),
    ],
)
def test_expert_parallel_needs_experts_it_can_split(bench, ep, world, message) -> None:
    cfg = _cfg(f"parallel.ep={ep}", bench=bench)
    with pytest.raises(ValueError, match=message):
        check_layout(cfg, world=world, local_ranks=world, memory=False)
    check_layout(_cfg("parallel.ep=2", bench="gpt_oss_20b"), world=4, local_ranks=4, memory=False)


def _estimate(weights_gib: float) -> MemoryEstimate:
    return MemoryEstimate(weights_gib, 0.0, 1.0, 0.0, 3.0)


def test_gpu_memory_refusal_names_the_numbers_and_fixes() -> None:
    gpu = DeviceMemory("cuda", 80.0, "NVIDIA H100 (80 GiB per GPU)")
    check_memory(_cfg(scale="full"), _estimate(70.0), gpu, 8)  # 74 GiB: fits
    with pytest.raises(ValueError) as info:
        check_memory(_cfg(scale="full"), _estimate(90.0), gpu, 8)
    message = str(info.value)
    assert "needs ~94 GiB per GPU" in message and "is 80 GiB" in message
    assert "--scale tiny" in message and "more GPUs (--nproc N" in message
    assert f"{SKIP_MEMORY_CHECK}=1" in message


def test_cpu_ranks_share_the_machine_ram() -> None:
    ram = DeviceMemory("cpu", 10.0, "this machine's available RAM")
    check_memory(_cfg(), _estimate(3.0), ram, 2)  # 2 x (3 + 1 + 0.5)
    with pytest.raises(ValueError, match=r"~18 GiB for 4 CPU rank\(s\).*a GPU machine"):
        check_memory(_cfg(), _estimate(3.0), ram, 4)


def test_the_memory_check_can_be_skipped_by_name(monkeypatch) -> None:
    cfg = _cfg("train.device=cpu", bench="llama31_405b", scale="full")
    with pytest.raises(ValueError, match="does not fit"):
        check_layout(cfg, world=1, local_ranks=1)
    monkeypatch.setenv(SKIP_MEMORY_CHECK, "1")
    check_layout(cfg, world=1, local_ranks=1)
