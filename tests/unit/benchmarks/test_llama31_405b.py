"""The llama31_405b rule constants against the official compliance YAML (5.0.0 / 5.1.0 / 6.0.0)."""

import math

import pytest

from trainperf.benchmarks import get_default_config
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
    assert B.EVAL.evaluations_skipped(1152) == 14 and B.EVAL.evaluations_skipped(4608) == 23


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_full_scale_hyperparameters_satisfy_closed_yaml(ruleset, closed_rules, passes):
    rules = closed_rules("llama31_405b", ruleset)
    cfg = get_default_config("llama31_405b", "full")
    state: dict = {}
    for key in ("global_batch_size",):
        exec(rules[key]["POST"].strip(), {"s": state}, {"v": {"value": 1152}})
    for key, value in B.hyperparameter_events(cfg):
        rule = rules.get(key, {})
        if "CHECK" in rule:
            assert passes(rule["CHECK"], value, state), (key, value)
        if "POST" in rule:
            exec(rule["POST"].strip(), {"s": state, "math": math}, {"v": {"value": value}})
    logged = {k for k, _ in B.hyperparameter_events(cfg)}
    required = {k for k, r in rules.items() if r.get("REQ") == "EXACTLY_ONE"}
    assert required - logged == {"global_batch_size", "gradient_accumulation_steps", "eval_samples"}
    assert cfg.train.end_lr == pytest.approx(B.OPT_END_LEARNING_RATE)


def test_scales_and_resolved_eval_skip():
    full = B.SPEC.resolve(get_default_config("llama31_405b", "full"))
    assert full.model.flavor == "llama3.1-405b" and full.model.n_layers is None
    # the reference's first evaluation is at 18432 x floor(0.0026 x 1152 + 12) = 14 x 18432
    # samples: 13 boundaries pass without one
    assert full.train.eval_skip == 13 and full.train.eval_interval_samples == 18432
    assert (full.train.eval_skip + 1) * full.train.eval_interval_samples == 14 * 18432
    proxy = get_default_config("llama31_405b", "proxy")
    assert proxy.model.n_layers == 1 and proxy.train.global_batch_size == 16
    assert proxy.train.lr == B.base_learning_rate(16)
    assert proxy.train.end_lr == pytest.approx(B.OPT_END_LEARNING_RATE)


def test_full_run_reads_the_en6_en7_blend(tmp_path):
    import numpy as np

    from trainperf.config import apply_overrides
    from trainperf.data import c4
    from trainperf.data.indexed import write_indexed_dataset
    from trainperf.data.prepare import prepare_data

    cfg = apply_overrides(get_default_config("llama31_405b", "full"), [f"data.data_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"C4 data for llama31_405b not found .*c4-train.en_6"):
        prepare_data(cfg, train_prefixes=B.SPEC.data.train_prefixes)
    for prefix in (*B.TRAIN_PREFIXES, c4.VALID_PREFIX):
        write_indexed_dataset(tmp_path / "data" / prefix, [np.arange(9)], dtype=np.dtype(np.int32))
    paths = prepare_data(cfg, train_prefixes=B.SPEC.data.train_prefixes)
    assert paths.train_prefixes == tuple(tmp_path / "data" / p for p in B.TRAIN_PREFIXES)
