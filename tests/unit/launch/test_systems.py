"""System presets and the layout --system picks by the memory estimate."""

import pytest

from trainperf.benchmarks import get_default_config
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


def test_choose_layout_fits_or_refuses_with_every_estimate() -> None:
    from trainperf.benchmarks import get_default_config
    from trainperf.launch.systems import choose_layout

    cfg = get_default_config("llama31_8b", "full")
    layout = choose_layout("DGXH200_1x8", cfg)
    assert layout.system.world_size == 8 and "parallel.float8=tensorwise" in layout.overrides
    assert layout.note.startswith("system DGXH200_1x8 (DGX H200") and "of 139" in layout.note
    cpu = choose_layout("CPU", cfg)  # no memory figure: the benchmark's own layout
    assert cpu.overrides == () and cpu.note == "system CPU: this machine's CPU (tiny scale; tests)"
    with pytest.raises(ValueError, match=r"does not fit H100_1x1 \(1 x 79 GiB\)") as err:
        choose_layout("H100_1x1", get_default_config("llama31_405b", "full"))
    assert str(err.value).count("GiB/GPU") == 4 and str(err.value).endswith("more GPUs or nodes")


def test_argv_for_system_takes_its_gpus_and_adds_the_layout() -> None:
    from trainperf.launch.systems import SystemLayout, argv_for_system

    layout = SystemLayout(SYSTEMS["DGXH100_1x8"], ("parallel.compile=true", "a.b=1"), "")
    argv = ["run", "--system", "DGXH100_1x8", "--nproc=2", "a.b=1", "--launcher", "slurm"]
    assert argv_for_system(argv, layout) == [
        "run", "a.b=1", "--launcher", "slurm", "--nproc=8", "--nodes=1", "parallel.compile=true",
        "a.b=1",
    ]  # fmt: skip


def test_the_users_overrides_win_over_the_layout_in_the_launched_runs() -> None:
    from trainperf.config import apply_overrides
    from trainperf.launch.systems import SystemLayout, argv_for_system

    layout = SystemLayout(SYSTEMS["DGXH200_1x8"], ("parallel.compile=true",), "")
    argv = ["run", "llama31_8b", "--system", "DGXH200_1x8", "parallel.compile=false"]
    items = [a for a in argv_for_system(argv, layout) if "=" in a and not a.startswith("-")]
    cfg = apply_overrides(get_default_config("llama31_8b", "full"), items)
    assert cfg.parallel.compile is False  # the last override of a key is the one applied


def test_system_fits_one_row_per_preset() -> None:
    from trainperf.benchmarks import get_default_config
    from trainperf.launch.systems import system_fits

    rows = {f.system.name: f for f in system_fits(get_default_config("llama31_8b", "full"))}
    assert set(rows) == set(SYSTEMS)
    assert rows["H100_1x1"].pick is None and rows["H100_1x1"].estimate is not None
    assert rows["DGXH200_1x8"].pick is not None
    assert rows["DGXH200_1x8"].estimate == rows["DGXH200_1x8"].pick.estimate
