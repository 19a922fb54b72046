"""The gpt_oss_20b rule constants, RCP points and full-scale defaults against the official
compliance YAML and RCP file (mlperf_logging), and its scales' models."""

import json
from pathlib import Path

import mlperf_logging
import pytest

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.benchmarks import gpt_oss_20b as B

RCP_DIR = Path(mlperf_logging.__file__).parent / "rcp_checker"


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_constants_satisfy_closed_yaml(ruleset, check_constants):
    check_constants(B, ruleset, ("max_steps",))


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_full_scale_hyperparameters_satisfy_closed_yaml(ruleset, closed_rules, passes):
    rules = closed_rules("gpt_oss_20b", ruleset)
    cfg = get_default_config("gpt_oss_20b", "full")
    state: dict = {}
    for key, value in B.hyperparameter_events(cfg):
        rule = rules.get(key, {})
        if "CHECK" in rule:
            assert passes(rule["CHECK"], value, state), (key, value)
        if "POST" in rule:
            exec(rule["POST"].strip(), {"s": state}, {"v": {"value": value}})
    logged = {k for k, _ in B.hyperparameter_events(cfg)}
    required = {k for k, r in rules.items() if r.get("REQ") == "EXACTLY_ONE"}
    # the trainer logs these three itself (they are not benchmark hyperparameters)
    assert required - logged == {"global_batch_size", "gradient_accumulation_steps", "eval_samples"}


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_rcp_points_are_the_rcp_files(ruleset):
    rcps = json.loads((RCP_DIR / f"training_{ruleset}" / "rcps_gpt_oss_20b.json").read_text())
    points = {
        r["BS"]: (r["Hyperparams"]["opt_base_learning_rate"],
                  r["Hyperparams"]["opt_learning_rate_warmup_samples"])
        for r in rcps.values()
    }  # fmt: skip
    assert points == B.RCP_HYPERPARAMETERS


def test_full_scale_is_the_reference():
    cfg = get_default_config("gpt_oss_20b", "full")
    lr, warmup_samples = B.RCP_HYPERPARAMETERS[cfg.train.global_batch_size]
    assert (cfg.train.lr, cfg.train.warmup_steps * 16) == (lr, warmup_samples) == (4e-4, 2048)
    assert cfg.train.end_lr == pytest.approx(4e-5)  # 0.1 x base (the RCPs' 4e-5 at GBS 16 too)
    assert cfg.train.eval_interval_samples == 12288 and cfg.train.seq_len == 8192
    spec = get_benchmark("gpt_oss_20b")
    model = spec.family.model_config(cfg)
    assert (model.n_layers, model.n_experts, model.top_k, model.vocab_size) == (24, 32, 4, 128256)
    assert spec.data.train_prefixes == ("c4-train.en_6_text_document",)
    assert spec.submission_runs == 10 and spec.rounds == ("v6.0", "v6.1")
    proxy = spec.family.model_config(spec.config("proxy"))
    assert proxy.n_layers == 4 and proxy.dim == model.dim
