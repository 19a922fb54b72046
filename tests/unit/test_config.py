import json

import pytest

from trainperf.benchmarks import get_default_config
from trainperf.config import Config, TrainConfig, apply_overrides, load_config, save_config


def tiny() -> Config:
    return get_default_config("llama31_8b", "tiny")


def test_override_types():
    cfg = apply_overrides(
        tiny(),
        [
            "train.lr=3e-4",
            "train.global_batch_size=32",
            "train.seed=7",
            "data.data_dir=/tmp/x",
            "train.seed=none",
        ],
    )
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.global_batch_size == 32
    assert cfg.train.seed is None
    assert cfg.data.data_dir == "/tmp/x"


def test_override_scientific_int():
    assert apply_overrides(tiny(), ["train.max_steps=1.2e6"]).train.max_steps == 1_200_000


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("train.lr=abc", "expected float"),
        ("train.nope=1", "unknown config key 'train.nope'"),
        ("nosection.lr=1", "unknown config section"),
        ("lr=1", "use section.key=value"),
        ("train.lr", "use section.key=value"),
        ("train.global_batch_size=2.5", "expected int"),
        ("train.micro_batch_size=3", "must divide"),
        ("train.warmup_steps=100000", "warmup_steps"),
        ("train.dtype=fp16", "train.dtype"),
    ],
)
def test_bad_overrides(item, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        apply_overrides(tiny(), [item])


@pytest.mark.parametrize(
    "every, gbs, expected",
    [
        (12288, 32, 12288),
        (12288, 96, 12288),
        (12288, 100, 12300),
        (12288, 5000, 15000),
        (384, 8, 384),
        (384, 7, 385),
        (256, 16, 256),
    ],
)
def test_eval_interval_rounds_up_to_gbs(every, gbs, expected):
    t = TrainConfig(global_batch_size=gbs, micro_batch_size=1, eval_every_samples=every)
    assert t.eval_interval_samples == expected
    assert t.eval_interval_samples % gbs == 0


def test_save_load_round_trip(tmp_path):
    cfg = apply_overrides(tiny(), ["train.seed=3"])
    path = tmp_path / "config_0.json"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert json.loads(path.read_text())["train"]["seed"] == 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_config_errors(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read config"):
        load_config(bad)
