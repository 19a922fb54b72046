"""The real ``trainperf check`` CLI: one verdict per file, the scale-dependent values of a tiny run
in one line, the checker's own text only with --verbose, the ruleset and why.

The ``trainperf`` fixture (conftest.py) runs the CLI in a subprocess; the runs are crafted
(``tests/tiny_run_logs.py``), the published folders are copied from the shared fixtures.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from full_run_logs import write_full_run
from tiny_run_logs import write_tiny_run

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mlperf_results"
V40 = FIXTURES / "training_results_v4.0/NVIDIA/results/eos_ngc24.04_nemo/llama2_70b_lora"
SCALE_KEYS = "eval_samples, max_sequence_length, opt_learning_rate_decay_steps, max_steps"


def test_tiny_runs_get_one_verdict_line_each(tmp_path: Path, trainperf) -> None:
    for i in range(3):
        write_tiny_run(tmp_path, i, seed=10 + i)
    proc = trainperf("check", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ruleset 6.1.0 (inferred from the logs: result_0.txt (scale tiny")
    assert lines[1:4] == [
        f"result_{i}.txt: passed (compliance 6.1.0); scale tiny: 5 values differ from the "
        f"full-scale rules only because of scale: {SCALE_KEYS}, eval_accuracy"
        for i in range(3)
    ]
    assert lines[4].startswith("RCP (6.1.0): not applicable at scale tiny")
    assert lines[5:] == ["seeds: passed", "check passed"]
    assert "failed" not in proc.stdout.lower()  # no raw checker text contradicting "passed"


def test_full_runs_of_a_benchmark_trainperf_cannot_train_pass(tmp_path: Path, trainperf) -> None:
    # deepseekv3_671b: evaluations every step from step 43 (6.1.0), success at step 47
    evals = {43: 3.647, 44: 3.611, 45: 3.604, 46: 3.602, 47: 3.556}
    for i in range(3):
        write_full_run(tmp_path, i, benchmark="deepseekv3_671b", evals=evals, seed=i + 1)
    proc = trainperf("check", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ruleset 6.1.0 (inferred from the logs: result_0.txt passes 6.0.0")
    assert lines[1:4] == [f"result_{i}.txt: passed (compliance 6.1.0)" for i in range(3)]
    assert lines[4:] == [
        "RCP (6.1.0): pass: RCP found, factor 1.0",
        "seeds: passed",
        "check passed",
    ]


def test_verbose_adds_the_checkers_text(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path, 0)
    proc = trainperf("check", str(tmp_path), "--verbose")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "    CHECK for 'max_steps' failed in line" in proc.stdout
    assert "failed test:  v['value'] == 1200000" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "check passed"


def test_a_structural_error_fails_in_one_line_exit_1(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path, 0, seed=1)
    write_tiny_run(tmp_path, 1, seed=2, overrides=["train.beta1=0.8"])
    proc = trainperf("check", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    bad = next(line for line in lines if line.startswith("result_1.txt"))
    assert re.match(
        r"result_1\.txt: FAILED \(compliance 6\.1\.0\): opt_adamw_beta_1 = 0\.8 \(line \d+\) "
        r"fails v\['value'\] == 0\.9; scale tiny: 5 values differ",
        bad,
    )
    assert lines[1].startswith("result_0.txt: passed (compliance 6.1.0)")
    assert lines[-1] == "check FAILED: result_1.txt"


def test_ruleset_is_given_or_inferred(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path, 0)
    proc = trainperf("check", str(tmp_path), "--ruleset", "5.1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "ruleset 5.1.0 (given with --ruleset)"
    assert "result_0.txt: passed (compliance 5.1.0)" in proc.stdout


def test_a_published_folder_copied_anywhere_passes(tmp_path: Path, trainperf) -> None:
    if not V40.is_dir():
        pytest.skip(f"published MLPerf fixtures not found at {FIXTURES}")
    folder = shutil.copytree(V40, tmp_path / "lora")
    proc = trainperf("check", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        "ruleset 6.0.0 (inferred from the logs: result_0.txt passes 4.0.0 to 6.0.0, the newest "
        "of which is used; 6.1.0 fails it on 9 keys (lowest_numerical_precision_in_linear"
    )
    assert lines[1:11] == [f"result_{i}.txt: passed (compliance 6.0.0)" for i in range(10)]
    assert lines[11] == "RCP (6.0.0): pass: RCP found, factor 1.0033670033670032"
    assert lines[12:] == ["seeds: passed", "check passed"]


def test_bad_folders_are_one_line_exit_2(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path / "mixed", 0)
    write_tiny_run(tmp_path / "mixed", 1, benchmark="llama2_70b_lora")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "result_0.txt").write_text("no MLLOG here\n")
    for folder, fragment in (
        ("mixed", "holds runs of several benchmarks (llama2_70b_lora, llama31_8b)"),
        ("garbled", "no ruleset knows the benchmark of these logs (none)"),
        ("missing", "is not a folder"),
    ):
        proc = trainperf("check", str(tmp_path / folder))
        err = proc.stderr.strip()
        assert proc.returncode == 2 and fragment in err, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
