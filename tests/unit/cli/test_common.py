"""The run config that `run`, `perf` and `doctor` resolve from their items and options."""

import argparse

import pytest

from trainperf.cli.common import resolve_run_config


def _args(*items: str, **options) -> argparse.Namespace:
    defaults = {"scale": None, "data_dir": None, "seed": None, "results": None}
    return argparse.Namespace(items=list(items), **{**defaults, **options})


def test_benchmark_then_overrides_then_the_options() -> None:
    cfg = resolve_run_config(_args("llama31_8b", "train.lr=0.5", seed=7, results="out"))
    assert (cfg.benchmark, cfg.scale, cfg.train.seed) == ("llama31_8b", "tiny", 7)
    assert cfg.train.lr == 0.5
    assert str(cfg.log.results_dir) == "out"
    assert resolve_run_config(_args(data_dir="/d")).scale == "full"  # real data: full scale


def test_a_layout_comes_before_the_users_overrides() -> None:
    layout = ("parallel.compile=true", "train.lr=0.1")
    cfg = resolve_run_config(_args("train.lr=0.5"), layout=layout)
    assert cfg.parallel.compile and cfg.train.lr == 0.5


def test_a_second_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected argument 'x'"):
        resolve_run_config(_args("llama31_8b", "x"))
