"""The llama2_70b_lora rule constants and defaults against the official compliance YAML and RCPs."""

import json
import math
from pathlib import Path

import mlperf_logging
import pytest

from trainperf.benchmarks import get_default_config
from trainperf.benchmarks import llama2_70b_lora as B
from trainperf.train.optim import lr_at

PKG = Path(mlperf_logging.__file__).parent
CHECKER = PKG / "compliance_checker"


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_constants_satisfy_closed_yaml(ruleset, closed_rules, passes):
    rules = closed_rules("llama2_70b_lora", ruleset)
    assert passes(rules["lora_rank"]["CHECK"], B.LORA_RANK)
    assert not passes(rules["lora_rank"]["CHECK"], 8)
    eval_rule = rules["eval_accuracy"]["ATLEAST_ONE_CHECK"]
    assert passes(eval_rule, B.EVAL_ACCURACY_TARGET)
    assert not passes(eval_rule, B.EVAL_ACCURACY_TARGET + 1e-6)


@pytest.mark.parametrize("ruleset", B.RULESETS)
@pytest.mark.parametrize("scale", list(B.SCALES))
def test_logged_hyperparameters_cover_the_yaml(ruleset, scale, closed_rules, passes):
    rules = closed_rules("llama2_70b_lora", ruleset)
    cfg = B.SPEC.resolve(get_default_config("llama2_70b_lora", scale))
    state: dict = {}
    for key, value in B.hyperparameter_events(cfg):
        rule = rules.get(key, {})
        if "CHECK" in rule:
            assert passes(rule["CHECK"], value, state), (key, value)
    logged = {k for k, _ in B.hyperparameter_events(cfg)}
    required = {k for k, r in rules.items() if r.get("REQ") == "EXACTLY_ONE"}
    # the trainer logs these two itself (they are not benchmark hyperparameters)
    assert required - logged == {"global_batch_size", "gradient_accumulation_steps"}


@pytest.mark.parametrize("ruleset", ["5.1.0", "6.0.0"])
def test_rcp_hyperparameters_match_the_rcp_file(ruleset):
    rcps = json.loads(
        (PKG / "rcp_checker" / f"training_{ruleset}" / "rcps_llama2_70b_lora.json").read_text()
    )
    found = {}
    for rcp in rcps.values():
        h = rcp["Hyperparams"]
        found[rcp["BS"]] = h["opt_base_learning_rate"]
        assert h["opt_max_grad_norm"] == B.OPT_GRADIENT_CLIP_NORM
        assert h["opt_learning_rate_warmup_epochs"] == 0
        assert h["lora_r"] == B.LORA_RANK and h["lora_alpha"] == B.LORA_ALPHA
        assert h["max_steps"] == B.OPT_LEARNING_RATE_TRAINING_STEPS
    assert found == B.RCP_HYPERPARAMETERS


def test_full_scale_defaults_are_the_reference():
    cfg = B.SPEC.resolve(get_default_config("llama2_70b_lora", "full"))
    t, m = cfg.train, cfg.model
    assert (m.flavor, m.lora_rank, m.lora_alpha, m.lora_dropout) == ("llama2-70b", 16, 32, 0.1)
    assert m.lora_targets == "wqkv,wo"
    assert (t.global_batch_size, t.micro_batch_size, t.seq_len) == (8, 1, 8192)
    assert (t.lr, t.warmup_steps, t.max_steps, t.end_lr) == (4e-4, 0, 1024, 0.0)
    assert (t.beta1, t.beta2, t.eps) == (0.9, 0.999, 1e-8)
    assert (t.weight_decay, t.grad_clip) == (1e-4, 0.3)
    assert (t.eval_samples, t.target) == (173, 0.925)
    assert cfg.data.source == "govreport"
    assert cfg.parallel.activation_checkpointing == "full"


def test_schedule_is_hf_cosine_without_warmup():
    t = get_default_config("llama2_70b_lora", "full").train
    for step in (0, 1, 100, 512, 1000, 1023):
        hf = 4e-4 * 0.5 * (1.0 + math.cos(math.pi * step / 1024))
        got = lr_at(
            step, base_lr=t.lr, end_lr=t.end_lr, warmup_steps=t.warmup_steps, max_steps=t.max_steps
        )
        assert got == pytest.approx(hf, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize(
    "gbs, skipped, first_eval", [(8, 3, 1536), (16, 4, 1920), (32, 6, 2688), (128, 18, 7296)]
)
def test_eval_cadence_and_skipping(gbs, skipped, first_eval):
    cfg = get_default_config("llama2_70b_lora", "full")
    cfg.train.global_batch_size = gbs
    cfg = B.SPEC.resolve(cfg)
    assert cfg.train.eval_skip == skipped == B.EVAL.evaluations_skipped(gbs)
    interval = cfg.train.eval_interval_samples
    assert interval == math.ceil(384 / gbs) * gbs
    assert (skipped + 1) * interval == first_eval


def test_explicit_eval_skip_is_kept():
    cfg = get_default_config("llama2_70b_lora", "tiny")
    cfg.train.eval_skip = 0
    assert B.SPEC.resolve(cfg).train.eval_skip == 0
