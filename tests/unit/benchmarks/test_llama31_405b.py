"""The llama31_405b rule constants against the official compliance YAML (5.0.0 / 5.1.0 / 6.0.0)."""

import math

import pytest

from trainperf.benchmarks import llama31_405b as B


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_constants_satisfy_closed_yaml(ruleset, check_constants):
    check_constants(B, ruleset, ("init_checkpoint_step",))


@pytest.mark.parametrize("gbs", [1152, 2304, 4608, 512, 96])
def test_gbs_dependent_values_satisfy_closed_yaml(gbs, closed_rules, passes):
    rules = closed_rules("llama31_405b", "6.0.0")
    state = {"global_batch_size": gbs}
    assert passes(rules["opt_base_learning_rate"]["CHECK"], B.base_learning_rate(gbs), state)
    exec(rules["opt_learning_rate_warmup_steps"]["POST"], {"math": math}, {"s": state})
    assert state["opt_learning_rate_warmup_steps"] == B.warmup_steps(gbs)
    assert passes(rules["opt_learning_rate_decay_steps"]["CHECK"], B.decay_steps(gbs), state)


def test_reference_values():
    assert B.base_learning_rate(1152) == 8e-5 and B.base_learning_rate(2304) == 16e-5
    assert B.warmup_steps(1152) == 8000 and B.decay_steps(1152) == 1_192_000
    assert B.evaluations_skipped(1152) == 14 and B.evaluations_skipped(4608) == 23
