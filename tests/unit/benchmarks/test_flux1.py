"""The flux1 rule constants and defaults against the official compliance YAML and RCPs."""

import json
from pathlib import Path

import mlperf_logging
import pytest

from trainperf.benchmarks import flux1 as B
from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.train.optim import lr_at

RCP_DIR = Path(mlperf_logging.__file__).parent / "rcp_checker"


@pytest.mark.parametrize("ruleset", B.RULESETS)
@pytest.mark.parametrize("gbs", [512, 1024, 2304, 4096])
def test_logged_hyperparameters_satisfy_closed_yaml(ruleset, gbs, closed_rules, passes):
    """In the order the run logs them (the GBS first: 6.1.0's evaluation_frequency CHECK reads
    the interval its POST computed), every CHECK passes; 5.1.0/6.0.0 want the literal 262144,
    which only a GBS dividing it can honour (2304 does not: the run evaluates every 262,656)."""
    rules = closed_rules("flux1", ruleset)
    cfg = get_default_config("flux1", "full")
    cfg.train.global_batch_size = gbs
    state: dict = {}
    events = [("global_batch_size", gbs), *B.hyperparameter_events(cfg)]
    failed = []
    for key, value in events:
        rule = rules.get(key, {})
        if "CHECK" in rule and not passes(rule["CHECK"], value, state):
            failed.append(key)
        if "POST" in rule:
            exec(
                rule["POST"].strip(),
                {"s": state, "math": __import__("math")},
                {"v": {"value": value}},
            )
    literal = ruleset in ("5.1.0", "6.0.0") and 262144 % gbs
    assert failed == (["evaluation_frequency"] if literal else [])
    logged = {k for k, _ in events}
    required = {k for k, r in rules.items() if r.get("REQ") == "EXACTLY_ONE"}
    assert required - logged == set()


@pytest.mark.parametrize("ruleset", ["6.0.0", "6.1.0"])
def test_rcp_table_is_the_rcp_file(ruleset):
    rcps = json.loads((RCP_DIR / f"training_{ruleset}" / "rcps_flux1.json").read_text())
    got = {}
    for entry in rcps.values():
        bs = entry["BS"]
        got[bs] = (
            entry["Hyperparams"]["opt_base_learning_rate"],
            entry["Hyperparams"]["opt_learning_rate_warmup_steps"] * bs,
        )
    assert got == B.RCP_HYPERPARAMETERS


def test_full_scale_is_the_reference():
    spec = get_benchmark("flux1")
    cfg = spec.resolve(get_default_config("flux1", "full"))
    t = cfg.train
    assert (t.global_batch_size, t.lr, t.warmup_steps) == (512, 2e-4, 1600)
    assert (t.eval_interval_samples, t.eval_samples, t.eval_skip, t.target) == (
        262144,
        29696,
        0,
        0.586,
    )
    assert (t.beta1, t.beta2, t.eps, t.weight_decay, t.grad_clip) == (0.9, 0.95, 1e-8, 0.1, 1.0)
    assert t.decay_all_params and t.lr_schedule == "constant"
    assert [
        lr_at(
            s,
            base_lr=t.lr,
            end_lr=t.end_lr,
            warmup_steps=1600,
            max_steps=t.max_steps,
            schedule="constant",
        )
        for s in (0, 1599, 20000)
    ] == pytest.approx([2e-4 / 1600, 2e-4, 2e-4], rel=1e-15)
    assert cfg.model.flavor == "flux-schnell" and spec.family.model_config(cfg).seq_len == t.seq_len
    assert spec.data.train_samples == 1_099_776 and spec.submission_runs == 10


@pytest.mark.parametrize("scale", ["full", "proxy", "small", "tiny"])
def test_every_scale_is_a_sample_of_its_flavor(scale):
    spec = get_benchmark("flux1")
    cfg = spec.config(scale)
    model_cfg = spec.family.model_config(cfg)
    assert model_cfg.seq_len == cfg.train.seq_len  # image + text tokens
    assert cfg.train.eval_samples % 8 == 0  # as many samples of each of the 8 timesteps
