"""``choose_ruleset``: the ruleset inferred from the logs, a path's round only when the logs pass
it, --ruleset first; and ``Finding.summary``, the one-line form of a checker message."""

from __future__ import annotations

from pathlib import Path

from tiny_run_logs import write_tiny_run

from trainperf.mlperf.compliance import Finding, choose_ruleset, round_of_path


def test_our_tiny_run_gets_the_newest_ruleset(tmp_path: Path) -> None:
    log = write_tiny_run(tmp_path, 0)
    choice = choose_ruleset("llama31_8b", [log])
    assert choice.ruleset == "6.1.0" and "passes 5.1.0 to 6.1.0" in choice.reason
    assert choose_ruleset("llama31_8b", [log], given="5.1.0").reason == "given with --ruleset"


def test_a_path_round_is_a_hint_the_logs_confirm(tmp_path: Path) -> None:
    folder = tmp_path / "training_results_v5.1" / "x" / "results" / "s" / "llama31_8b"
    log = write_tiny_run(folder, 0)
    assert round_of_path(folder) == "5.1.0" and round_of_path(tmp_path) is None
    choice = choose_ruleset("llama31_8b", [log], directory=folder)
    assert choice.describe() == (
        "ruleset 5.1.0 (the folder's round, training_results_v5.1; result_0.txt passes it)"
    )


def test_a_log_that_passes_nothing_gets_the_fewest_problems(tmp_path: Path) -> None:
    log = write_tiny_run(tmp_path, 0, status=None)  # still running: no run_stop
    choice = choose_ruleset("llama31_8b", [log])
    assert choice.ruleset == "6.1.0"
    assert choice.reason.endswith(
        "passes no ruleset that knows its benchmark; 6.1.0 finds the fewest problems (run_stop)"
    )
    assert choose_ruleset(None, [log]).ruleset is None
    assert choose_ruleset("nosuch", [log]).reason == "no ruleset of mlperf_logging knows nosuch"


def test_finding_summary_is_one_line() -> None:
    line = ':::MLLOG {"key": "max_steps", "value": 1200, "time_ms": 1}'
    message = (
        f"CHECK for 'max_steps' failed in line 25:\n{line}\nfailed test:  v['value'] == 1200000 "
        "\ncurrent context[s]={}\ncurrent line[v]={}"
    )
    assert Finding("max_steps", message).summary == (
        "max_steps = 1200 (line 25) fails v['value'] == 1200000"
    )
    missing = "Required EXACTLY_ONE occurrence of 'seed' but found 0"
    assert Finding("seed", missing).summary == missing
