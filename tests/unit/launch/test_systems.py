"""System presets and the layout --system picks by the memory estimate."""

import pytest

from trainperf.launch.systems import SYSTEMS, get_system, rank_layouts
from trainperf.models.llama import FAMILY
from trainperf.models.llama.model import get_llama_config

C8 = FAMILY.shape(get_llama_config("llama3.1-8b"))
C70 = FAMILY.shape(get_llama_config("llama2-70b"))


def test_layouts_fastest_that_fits() -> None:
    def pick(system: str, cfg, lora: bool):
        choices = rank_layouts(get_system(system), cfg, seq_len=8192, micro_batch=1, lora=lora)
        return next((c.overrides for c in choices if c.fits), None)

    assert "parallel.float8=tensorwise" in pick("H200_1x2", C8, False)
    assert pick("H100_1x1", C8, False) is None  # 16 bytes/parameter alone are 120 GiB
    assert "parallel.activation_checkpointing=full" in pick("H200_1x1", C8, False)
    assert "parallel.float8=rowwise" in pick("H200_1x1", C70, True)  # 70B LoRA on one H200
    assert "parallel.float8=tensorwise" not in pick("MI300X_1x8", C8, False)  # bf16 on ROCm


def test_presets_and_unknown_name() -> None:
    assert {"DGXH100_1x8", "DGXH200_1x8", "H200_1x2", "CPU"} <= set(SYSTEMS)
    assert SYSTEMS["DGXH200_1x8"].world_size == 8
    with pytest.raises(ValueError, match=r"unknown system 'DGX'.*auto"):
        get_system("DGX")
