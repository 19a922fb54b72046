"""gpt_oss_20b end to end through the real CLI at the tiny scale: a 2-layer, 8-expert gpt-oss
(the MLPerf reference's variant) on the built-in corpus, the same reader, task and trainer as full
scale, trained to the tiny target after several evaluations; its log passes the official checker
of both gpt_oss_20b rulesets (6.0.0, 6.1.0) except for the scale-dependent keys, and scores.

The run (seed 7) is the session's `moe_runs`, trained once in the background (tests/conftest.py).
"""

import json

import pytest

from trainperf.benchmarks import gpt_oss_20b
from trainperf.mlperf.compliance import check_log

pytestmark = pytest.mark.slow
TINY = gpt_oss_20b.SCALES["tiny"]
# what a tiny run logs truthfully but the closed rules pin to full scale
SCALE_DEPENDENT = set(gpt_oss_20b.SCALE_DEPENDENT_KEYS)


def test_run_converges_after_several_evaluations(moe_runs, mllog):
    recs = mllog(moe_runs.folder / "result_0.txt")
    stop = recs[-1]
    assert stop["key"] == "run_stop" and stop["metadata"]["status"] == "success"
    evals = [r for r in recs if r["key"] == "eval_accuracy"]
    assert len(evals) >= 3, "the tiny task must exercise the evaluation cadence"
    assert evals[-1]["value"] <= TINY.target < min(e["value"] for e in evals[:-1])
    counts = [e["metadata"]["samples_count"] for e in evals]
    assert counts == [TINY.eval_every_samples * (k + 1) for k in range(len(counts))]
    header = {r["key"]: r["value"] for r in recs if r["key"] != "train_loss"}
    assert header["submission_benchmark"] == "gpt_oss_20b" and header["seed"] == moe_runs.seeds[0]
    assert header["eval_samples"] == TINY.eval_samples
    assert header["opt_adamw_epsilon"] == 1e-5 and header["opt_gradient_clip_norm"] == 1.0
    # CPU: float32 everywhere, one process, no expert parallel
    assert header["lowest_numerical_precision_in_linear"] == "fp32"
    assert header["expert_parallelism"] == header["tensor_parallelism"] == 1


@pytest.mark.parametrize("ruleset", gpt_oss_20b.RULESETS)
def test_official_checker_only_flags_scale(moe_runs, ruleset):
    report = check_log(moe_runs.folder / "result_0.txt", ruleset=ruleset)
    structural, scale = report.split(tuple(SCALE_DEPENDENT))
    assert structural == [], "\n".join(f.message for f in structural)
    assert {f.key for f in scale} <= SCALE_DEPENDENT


def test_check_and_score(moe_runs, trainperf):
    folder = str(moe_runs.folder)
    out = trainperf("check", folder, check=True).stdout
    assert "result_0.txt: passed (compliance 6.1.0)" in out
    got = json.loads(trainperf("score", folder, "--json", check=True).stdout)
    assert len(got["runs"]) == 1 and got["runs"][0]["compliance"]["structural_errors"] == []
