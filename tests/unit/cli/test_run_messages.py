"""``trainperf run``'s last line for a run that did not succeed (``cli.run.evaluation_note``)."""

from __future__ import annotations

from pathlib import Path

from trainperf.benchmarks import get_default_config
from trainperf.cli.run import evaluation_note
from trainperf.config import apply_overrides
from trainperf.train.run import RunResult


def result(*, steps: int, last_eval: float | None) -> RunResult:
    path = Path("result_0.txt")
    return RunResult(0, path, path, "aborted", 1, steps=steps, last_eval=last_eval)


def test_the_last_eval_is_rounded_with_its_target() -> None:
    cfg = get_default_config("llama31_8b", "tiny")
    note = evaluation_note(result(steps=1200, last_eval=3.812345678901234), cfg)
    assert note == "last eval 3.8123 (target 3.7)"


def test_no_evaluation_names_the_first_one() -> None:
    cfg = apply_overrides(
        get_default_config("llama31_8b", "tiny"), ["train.max_steps=10", "train.warmup_steps=0"]
    )
    assert evaluation_note(result(steps=10, last_eval=None), cfg) == (
        "no evaluation ran: max_steps 10 x GBS 16 = 160 samples ends before the first "
        "evaluation at 512 samples; raise train.max_steps"
    )
    assert evaluation_note(result(steps=4, last_eval=None), cfg) == (
        "no evaluation ran before it stopped (the first is at 512 samples)"
    )


def test_skipped_evaluations_move_the_first_one() -> None:
    cfg = get_default_config("llama2_70b_lora", "tiny")  # GBS 8: 3 skipped, first at 4 x 384
    note = evaluation_note(result(steps=2, last_eval=None), cfg)
    assert note.endswith("(the first is at 1,536 samples)")
