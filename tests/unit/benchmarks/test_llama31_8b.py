"""The llama31_8b rule constants and full-scale defaults against the official compliance YAML."""

from pathlib import Path

import mlperf_logging
import pytest

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.benchmarks import llama31_8b as B

CHECKER = Path(mlperf_logging.__file__).parent / "compliance_checker"


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_constants_satisfy_closed_yaml(ruleset, check_constants):
    check_constants(B, ruleset, ("max_steps",))


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_full_scale_hyperparameters_satisfy_closed_yaml(ruleset, closed_rules, passes):
    rules = closed_rules("llama31_8b", ruleset)
    cfg = get_default_config("llama31_8b", "full")
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


def test_full_scale_defaults_are_an_rcp_point():
    cfg = get_default_config("llama31_8b", "full")
    lr, warmup_samples = B.RCP_HYPERPARAMETERS[cfg.train.global_batch_size]
    assert cfg.train.lr == lr
    assert cfg.train.warmup_steps * cfg.train.global_batch_size == warmup_samples
    assert cfg.train.end_lr == pytest.approx(0.1 * lr)
    assert cfg.train.eval_interval_samples == 12288
    assert cfg.model.flavor == "llama3.1-8b"


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown benchmark 'gpt3'"):
        get_benchmark("gpt3")
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        get_default_config("llama31_8b", "huge")
