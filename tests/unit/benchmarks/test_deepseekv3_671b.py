"""The deepseekv3_671b rule constants against the official compliance YAML and RCPs (6.0.0 /
6.1.0), its refusal to train, and the score of a crafted submission."""

import json
import math
from pathlib import Path

import mlperf_logging
import pytest
from full_run_logs import write_full_run

from trainperf.benchmarks import deepseekv3_671b as B
from trainperf.benchmarks import get_benchmark, get_default_config

RCP_DIR = Path(mlperf_logging.__file__).parent / "rcp_checker"
# The reference's RCP log rcp_logs/16384/seed_1.out: evaluations from step 43, success at 47.
RCP_EVALS = {43: 3.647, 44: 3.611, 45: 3.604, 46: 3.602, 47: 3.556}


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_constants_satisfy_closed_yaml(ruleset, check_constants, closed_rules, passes):
    check_constants(B, ruleset, ("opt_learning_rate_warmup_steps", "moe_aux_loss_coeff"))
    rules = closed_rules("deepseekv3_671b", ruleset)
    assert passes(rules["global_batch_size"]["CHECK"], B.MIN_GLOBAL_BATCH_SIZE)
    assert not passes(rules["global_batch_size"]["CHECK"], B.MIN_GLOBAL_BATCH_SIZE - 1)
    assert not passes(rules["eval_accuracy"]["ATLEAST_ONE_CHECK"], 0.0)


@pytest.mark.parametrize("gbs", [15360, 16384, 18432, 20480, 32768])
@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_gbs_dependent_values_satisfy_closed_yaml(gbs, ruleset, closed_rules, passes):
    rules = closed_rules("deepseekv3_671b", ruleset)
    state = {"global_batch_size": gbs}
    assert passes(rules["opt_base_learning_rate"]["CHECK"], B.base_learning_rate(gbs), state)
    exec(rules["opt_learning_rate_warmup_steps"]["POST"], {}, {"s": state, "v": {"value": 4}})
    assert passes(
        rules["opt_learning_rate_decay_steps"]["CHECK"], B.OPT_LEARNING_RATE_DECAY_STEPS, state
    )
    assert B.MAX_STEPS == B.OPT_LEARNING_RATE_WARMUP_STEPS + B.OPT_LEARNING_RATE_DECAY_STEPS


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_rcp_points_are_the_rcp_files(ruleset):
    rcps = json.loads((RCP_DIR / f"training_{ruleset}" / "rcps_deepseekv3_671b.json").read_text())
    found = {}
    for entry in rcps.values():
        hyper = entry["Hyperparams"]
        assert hyper["opt_learning_rate_warmup_steps"] == B.OPT_LEARNING_RATE_WARMUP_STEPS
        assert hyper["opt_learning_rate_decay_steps"] == B.OPT_LEARNING_RATE_DECAY_STEPS
        found[entry["BS"]] = (hyper["opt_base_learning_rate"], None)
        # the rules' table: the LR rounded to the 9th decimal place
        assert B.base_learning_rate(entry["BS"]) == pytest.approx(hyper["opt_base_learning_rate"])
    assert found == B.RCP_HYPERPARAMETERS


@pytest.mark.parametrize("ruleset", B.RULESETS)
def test_full_scale_hyperparameters_satisfy_closed_yaml(ruleset, closed_rules, passes):
    rules = closed_rules("deepseekv3_671b", ruleset)
    cfg = B.SPEC.config("full")
    state: dict = {"global_batch_size": cfg.train.global_batch_size}
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
    assert (cfg.train.seq_len, cfg.train.global_batch_size, cfg.train.lr) == (4096, 16384, 2.4e-5)


@pytest.mark.parametrize("gbs", [15360, 16384, 18432, 24576])
def test_every_step_evaluation_first_at_the_6_1_step(gbs, closed_rules):
    """6.1.0's FIRST_CHECK: the first eval_accuracy at GBS * floor(42 + 24576 / GBS) samples."""
    first_check = closed_rules("deepseekv3_671b", "6.1.0")["eval_accuracy"]["FIRST_CHECK"]
    assert "FIRST_CHECK" not in closed_rules("deepseekv3_671b", "6.0.0")["eval_accuracy"]
    assert B.EVAL.interval(gbs) == gbs  # every step
    first = B.EVAL.first_eval_index(gbs) * B.EVAL.interval(gbs)
    v = {"metadata": {"samples_count": first}}
    assert eval(first_check.strip(), {"s": {"global_batch_size": gbs}, "math": math}, {"v": v})


def test_first_evaluation_above_gbs_24576_is_the_documented_gap():
    # floor(42 + 24576 / GBS) falls to 42 above 24576; EvalRules keeps 43 (the module says so)
    assert math.floor(42 + 24576 / 32768) == 42 and B.EVAL.first_eval_index(32768) == 43


def test_resolved_full_config_evaluates_first_at_step_43():
    full = B.SPEC.resolve(B.SPEC.config("full"))
    assert full.train.eval_skip == 42 and full.train.eval_interval_samples == 16384
    assert (full.train.eval_skip + 1) * full.train.eval_interval_samples == 704512


def test_a_run_is_refused_with_the_reason():
    spec = get_benchmark("deepseekv3_671b")
    assert spec.rounds == ("v6.0", "v6.1") and spec.submission_runs == 3
    assert list(spec.scales) == ["full"] and spec.data.train_prefixes == B.TRAIN_PREFIXES
    with pytest.raises(ValueError, match=r"deepseekv3_671b cannot be trained.*no DeepSeek-V3"):
        get_default_config("deepseekv3_671b", "full")
    with pytest.raises(ValueError, match=r"multi-token prediction.*MLCommons members only"):
        spec.family  # noqa: B018 - the property raises
    assert get_benchmark("llama31_8b").untrainable is None


def test_three_crafted_runs_pass_the_checker_and_score(tmp_path):
    from trainperf.results.score import required_run_count, score_directory

    for i, minutes_per_step in enumerate((1.0, 1.2, 1.1)):
        write_full_run(tmp_path, i, benchmark="deepseekv3_671b", evals=RCP_EVALS, seed=i + 1,
                       step_s=60 * minutes_per_step)  # fmt: skip
    result = score_directory(tmp_path)
    assert result.ruleset == "6.1.0", result.ruleset_reason
    assert all(report.passed for report in result.compliance.values()), result.compliance
    assert result.rcp.verdict == "pass", result.notes
    assert required_run_count("deepseekv3_671b") == 3
    assert result.valid and not result.provisional, result.notes
    assert result.score_minutes == pytest.approx(47 * 1.1)  # the olympic mean of 3: the middle
    assert all(run.samples_to_converge == 47 * 16384 for run in result.runs)


def test_a_first_evaluation_after_step_43_fails_6_1_only(tmp_path):
    from trainperf.results.score import score_directory

    late = {step: value for step, value in RCP_EVALS.items() if step > 43}
    for i in range(3):
        write_full_run(tmp_path, i, benchmark="deepseekv3_671b", evals=late, seed=i + 1)
    result = score_directory(tmp_path)
    assert result.ruleset == "6.0.0" and "6.1.0 fails it on eval_accuracy" in result.ruleset_reason
