"""Unit tests for trainperf.results.diagnose and .conformance: crafted logs, the right verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainperf.results.conformance import expected_lr
from trainperf.results.diagnose import diagnose_run
from trainperf.results.parse import parse_log

LORA = {"opt_base_learning_rate": 4e-4, "opt_learning_rate_warmup_factor": 0.0}


def diagnose(path: Path, config: dict | None = None):
    parsed = parse_log(path)
    return diagnose_run(parsed.events, errors=parsed.errors, config=config)


def test_converging_run_is_converged(tmp_path: Path, craft, hyper_8b) -> None:
    lrs = [(s, expected_lr(s, hyper_8b)) for s in (1, 64, 127, 128, 400, 1000, 2000)]
    log = craft(tmp_path / "result_0.txt", [6.0, 5.0, 4.2, 3.6, 3.29], lrs=lrs)
    d = diagnose(log)
    assert d.verdict == "converged", d
    assert d.reasons == ["reached 3.2900 <= target 3.3 at 61440 samples"]
    assert d.notes == []  # the RCP's LR and warmup at GBS 32, the rule's cadence


def test_nan_train_loss_is_diverged(tmp_path: Path, craft) -> None:
    log = craft(
        tmp_path / "result_0.txt",
        [6.0, 5.0],
        status="aborted",
        train_loss=lambda samples: float("nan") if samples > 12288 else 7.0,
    )
    d = diagnose(log)
    assert d.verdict == "diverged"
    assert "train loss is nan at 24576 samples" in d.reasons[0]


def test_nan_eval_is_diverged(tmp_path: Path, craft) -> None:
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, float("inf")], status="aborted"))
    assert d.verdict == "diverged" and "eval is inf at 24576 samples" in d.reasons[0]


def test_rising_eval_loss_is_diverged(tmp_path: Path, craft) -> None:
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, 5.0, 5.2, 5.5, 5.9], status="aborted"))
    assert d.verdict == "diverged"
    assert (
        d.reasons[0]
        == "eval rose 3 evaluations in a row (5 -> 5.2 -> 5.5 -> 5.9, at 61440 samples)"
    )


def test_one_or_two_rises_are_not_divergence(tmp_path: Path, craft) -> None:
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, 5.0, 5.1, 5.2, 4.0, 3.2]))
    assert d.verdict == "converged"


def test_flat_eval_loss_is_plateaued(tmp_path: Path, craft) -> None:
    evals = [6.0, 5.0, 4.5, 4.5, 4.5005, 4.4999]
    d = diagnose(craft(tmp_path / "result_0.txt", evals, status="aborted"))
    assert d.verdict == "plateaued"
    assert d.reasons[0].startswith("no improvement larger than 0.001 over the last 3 evaluations")


def test_slow_progress_past_max_steps_is_too_slow(tmp_path: Path, craft) -> None:
    # LoRA at GBS 8, a 512-step schedule (4096 samples): falling 0.005 per 384 samples from
    # 0.975 reaches 0.925 near 6528 samples. No run_stop: the run is still going.
    hyper = {**LORA, "opt_learning_rate_training_steps": 512}
    log = craft(
        tmp_path / "result_0.txt",
        [0.99, 0.985, 0.98, 0.975],
        benchmark="llama2_70b_lora",
        gbs=8,
        every=384,
        first=1536,
        hyper=hyper,
        status=None,
    )
    d = diagnose(log)
    assert d.verdict == "too slow", d
    assert "reached at about 6,528 samples, beyond the 4,096 samples" in d.reasons[0]
    assert "no run_stop" in d.reasons[-1]


def test_no_warmup_where_the_log_says_128_steps_is_a_bad_schedule(
    tmp_path: Path, craft, hyper_8b
) -> None:
    lrs = [(10, 8e-4), (100, 8e-4), (1000, 7.99e-4)]  # at the peak from the start
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, 5.0, 4.2, 3.6, 3.29], lrs=lrs))
    assert d.verdict == "bad LR schedule"
    assert d.reasons[0].startswith("at step 10 the LR is 0.0008 where the logged schedule gives")
    assert "linear warmup over 128 steps to 0.0008" in d.reasons[0]
    assert d.reasons[1].startswith("reached 3.2900")  # the convergence is still said


def test_405b_warmup_against_the_rule(tmp_path: Path, craft) -> None:
    hyper = {
        "opt_base_learning_rate": 8e-5,
        "opt_end_learning_rate": 8e-7,
        "opt_learning_rate_warmup_steps": 1000,  # the rule at GBS 1152: ceil(8000*1152/1152)
        "opt_learning_rate_decay_steps": 1_192_000,
        "opt_learning_rate_decay_schedule": "cosine with linear warmup",
    }
    log = craft(
        tmp_path / "result_0.txt",
        [5.9, 5.7, 5.59],
        benchmark="llama31_405b",
        gbs=1152,
        every=18432,
        first=258048,
        hyper=hyper,
    )
    d = diagnose(log)
    assert d.verdict == "bad LR schedule"
    assert d.reasons[0] == "opt_learning_rate_warmup_steps is 1000 where the rules require 8000"


def test_evaluating_less_often_than_the_rule_is_bad_cadence(tmp_path: Path, craft) -> None:
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, 5.0, 4.2, 3.29], every=24576))
    assert d.verdict == "bad eval cadence"
    assert d.reasons[0].startswith("the first evaluation is at 24576 samples")
    assert "evaluations 24576 samples apart" in d.reasons[1]
    assert "require every 12288 samples" in d.reasons[1]


def test_lora_first_evaluation_later_than_the_skip_allows(tmp_path: Path, craft) -> None:
    log = craft(
        tmp_path / "result_0.txt",
        [0.95, 0.93, 0.92],
        benchmark="llama2_70b_lora",
        gbs=8,
        every=384,
        first=3072,
        hyper={**LORA, "opt_learning_rate_training_steps": 1024},
    )
    d = diagnose(log)
    assert d.verdict == "bad eval cadence"
    assert d.reasons[0] == (
        "the first evaluation is at 3072 samples; the rules evaluate every 384 samples "
        "skipping 3, so by 1536 at the latest"
    )


def test_evaluating_more_often_is_a_note_not_a_verdict(tmp_path: Path, craft) -> None:
    # The accepted HPE v5.1 llama31_8b logs evaluate every 8192 samples.
    d = diagnose(craft(tmp_path / "result_0.txt", [6.0, 5.0, 4.2, 3.6, 3.29], every=8192))
    assert d.verdict == "converged"
    assert d.notes[0].startswith(
        "evaluates every 8192 samples, more often than the 12288 that the rules"
    )


def test_garbled_line_is_unreadable(tmp_path: Path, craft) -> None:
    log = craft(tmp_path / "result_0.txt", [6.0, 3.29])
    lines = log.read_text().splitlines()
    lines[5] = lines[5][:40]
    log.write_text("\n".join(lines) + "\n")
    d = diagnose(log)
    assert d.verdict == "unreadable"
    assert d.reasons[0].startswith("log unreadable: line 6: invalid JSON after :::MLLOG")


def test_reduced_scale_is_judged_by_its_config(tmp_path: Path, craft) -> None:
    config = {
        "benchmark": "llama31_8b",
        "scale": "tiny",
        "train": {
            "global_batch_size": 16,
            "lr": 3e-3,
            "warmup_steps": 20,
            "max_steps": 1200,
            "end_lr_factor": 0.1,
            "eval_every_samples": 512,
            "eval_skip": 0,
            "target": 3.7,
        },
    }
    hyper = {
        "opt_base_learning_rate": 3e-3,
        "opt_end_learning_rate": 3e-4,
        "opt_learning_rate_warmup_steps": 20,
        "opt_learning_rate_decay_steps": 1180,
        "opt_learning_rate_decay_schedule": "cosine with linear warmup",
        "max_steps": 1200,
    }
    kwargs = dict(gbs=16, every=512, hyper=hyper)
    d = diagnose(craft(tmp_path / "result_0.txt", [5.0, 4.1, 3.69], **kwargs), config)
    assert d.verdict == "converged" and "target 3.7 at 1536 samples" in d.reasons[0]
    config["train"]["lr"] = 2e-3
    d = diagnose(craft(tmp_path / "result_1.txt", [5.0, 4.1, 3.69], **kwargs), config)
    assert d.verdict == "bad LR schedule"
    assert "opt_base_learning_rate is 0.003 where the run's config gives 0.002" in d.reasons


@pytest.mark.parametrize("step", [0, 5, 20, 21, 600, 1199, 1200, 1500])
def test_expected_lr_is_the_trainers_schedule(step: int) -> None:
    from trainperf.train.optim import lr_at

    hyper = {
        "opt_base_learning_rate": 3e-3,
        "opt_end_learning_rate": 3e-4,
        "opt_learning_rate_warmup_steps": 20,
        "opt_learning_rate_decay_steps": 1180,
    }
    want = lr_at(step, base_lr=3e-3, end_lr=3e-4, warmup_steps=20, max_steps=1200)
    assert expected_lr(step, hyper) == pytest.approx(want, rel=1e-12)
