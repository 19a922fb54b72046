"""What `trainperf perf` measures: its options, presets and overrides."""

from pathlib import Path

import pytest

from trainperf.benchmarks import get_benchmark
from trainperf.perf.config import (
    check_perf_options,
    describe_presets,
    find_preset,
    perf_overrides,
    perf_scale,
)


def test_every_bad_option_in_one_message(tmp_path: Path) -> None:
    message = r"^--steps\(0\) must be >= 1; --warmup\(-1\) must be >= 0$"
    with pytest.raises(ValueError, match=message):
        check_perf_options(nproc=1, steps=0, warmup=-1, profile_steps=2, profile_dir=None)
    a_file = tmp_path / "f"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        check_perf_options(nproc=1, steps=1, warmup=0, profile_steps=1, profile_dir=a_file)
    check_perf_options(nproc=2, steps=1, warmup=0, profile_steps=1, profile_dir=tmp_path / "new")


def test_presets_by_name_and_the_list_in_the_error() -> None:
    presets = get_benchmark("llama31_8b").perf_presets
    name = next(iter(presets))
    assert find_preset("llama31_8b", name) is presets[name]
    assert find_preset("nope-not-read", None) is None  # no preset asked: no benchmark lookup
    lines = describe_presets("llama31_8b")
    assert lines.splitlines()[0] == f"  {name}: {presets[name].description}"
    with pytest.raises(ValueError, match=r"unknown --preset 'x' for llama31_8b; known:\n  "):
        find_preset("llama31_8b", "x")


def test_overrides_in_order_later_ones_win() -> None:
    preset = next(iter(get_benchmark("llama31_8b").perf_presets.values()))
    out = perf_overrides(preset, ["train.lr=1"], layers=2, gbs=8)
    assert out == ["model.checkpoint=random", *preset.overrides, "train.lr=1",
                   "model.n_layers=2", "train.global_batch_size=8"]  # fmt: skip
    assert perf_overrides(None, [], layers=None, gbs=None) == ["model.checkpoint=random"]


def test_scale_given_then_the_presets_then_by_device() -> None:
    import torch

    preset = next(iter(get_benchmark("llama31_8b").perf_presets.values()))
    assert perf_scale(preset, "small") == "small"
    assert perf_scale(preset, None) == preset.scale
    assert perf_scale(None, None) == ("full" if torch.cuda.is_available() else "tiny")
