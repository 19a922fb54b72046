"""The real ``trainperf score`` CLI on published folders copied anywhere: the ruleset is inferred
from the logs (not from the path), said with its reason, and the official score comes out.

The published folders are copied from the shared fixtures (skipped when absent) into a temporary
folder outside any ``training_results_v*`` path; our runs are crafted (``tests/tiny_run_logs.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from full_run_logs import write_full_run
from tiny_run_logs import write_tiny_run

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mlperf_results"
FOLDERS = {
    "v4.0": "training_results_v4.0/NVIDIA/results/eos_ngc24.04_nemo/llama2_70b_lora",
    "v4.1": "training_results_v4.1/NVIDIA/results/eos_ngc24.09_nemo/llama2_70b_lora",
    "v5.1": "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora",
    "v5.1-8b": "training_results_v5.1/HPE/results/HPE-Cray-XD670-H200-SXM5-141GB_n8_25.09/"
    "llama31_8b",
}
# Every ruleset that knows the benchmark passes these logs up to 6.0.0; 6.1.0 made the
# precision, parallelism and config keys mandatory, which none of them logs.
PASSED = {"v4.0": "4.0.0", "v4.1": "4.0.0", "v5.1": "4.0.0", "v5.1-8b": "5.1.0"}


def copy_published(name: str, to: Path) -> tuple[Path, dict[str, Any]]:
    """The published folder ``name`` copied to ``to`` and its official score entry."""
    expected = FIXTURES / "expected_scores.json"
    if not expected.is_file():
        pytest.skip(f"published MLPerf fixtures not found at {FIXTURES}")
    folder = shutil.copytree(FIXTURES / FOLDERS[name], to)
    return folder, json.loads(expected.read_text())[FOLDERS[name]]


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_a_copied_published_folder_scores_officially(tmp_path: Path, trainperf, name: str) -> None:
    folder, expected = copy_published(name, tmp_path / "copy")
    proc = trainperf("score", str(folder), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout)
    assert got["valid"] and not got["provisional"], got["notes"]
    assert got["score_minutes"] == pytest.approx(expected["score"], rel=1e-9)
    assert got["ruleset"] == "6.0.0"
    assert got["ruleset_reason"].startswith(
        f"inferred from the logs: {sorted(expected['runs'])[0]} passes {PASSED[name]} to 6.0.0, "
        "the newest of which is used; 6.1.0 fails it on 9 keys"
    )
    assert all(r["compliance"]["passed"] for r in got["runs"])


def test_the_text_output_says_which_ruleset_and_why(tmp_path: Path, trainperf) -> None:
    folder, expected = copy_published("v4.0", tmp_path / "copy")
    proc = trainperf("score", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "  ruleset 6.0.0 (inferred from the logs: result_0.txt passes 4.0.0 to 6.0.0" in proc.stdout
    )
    assert f"Score: {expected['score']:.3f} min (olympic mean of 8 of 10 runs" in proc.stdout
    assert "invalid" not in proc.stdout and "dropped" not in proc.stdout


def test_a_round_in_the_path_must_be_confirmed_by_the_logs(tmp_path: Path, trainperf) -> None:
    folder, expected = copy_published("v4.0", tmp_path / "training_results_v6.1" / "lora")
    got = json.loads(trainperf("score", str(folder), "--json", check=True).stdout)
    assert got["ruleset"] == "6.0.0" and got["valid"]
    assert got["ruleset_reason"].startswith(
        "the folder's name says v6.1, but 6.1.0 fails result_0.txt on 9 keys"
    )
    assert got["score_minutes"] == pytest.approx(expected["score"], rel=1e-9)
    folder, _ = copy_published("v4.0", tmp_path / "training_results_v4.1" / "lora")
    got = json.loads(trainperf("score", str(folder), "--json", check=True).stdout)
    assert got["ruleset"] == "4.1.0"
    assert (
        got["ruleset_reason"] == "the folder's round, training_results_v4.1; result_0.txt passes it"
    )


def test_ruleset_given_wins(tmp_path: Path, trainperf) -> None:
    folder, _ = copy_published("v4.0", tmp_path / "copy")
    got = json.loads(trainperf("score", str(folder), "--ruleset", "4.0.0", "--json").stdout)
    assert (got["ruleset"], got["ruleset_reason"]) == ("4.0.0", "given with --ruleset")
    proc = trainperf("score", str(folder), "--ruleset", "6.1.0", "--json")
    got = json.loads(proc.stdout)  # the user asked for it: the verdict of that ruleset
    assert proc.returncode == 1 and not got["valid"] and got["score_minutes"] is None


def test_our_tiny_runs_keep_the_newest_ruleset(tmp_path: Path, trainperf) -> None:
    for i in range(3):
        write_tiny_run(tmp_path, i, seed=20 + i)
    proc = trainperf("score", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout)
    assert got["ruleset"] == "6.1.0" and got["scales"] == ["tiny"]
    assert got["ruleset_reason"] == (
        "inferred from the logs: result_0.txt (scale tiny: its scale-dependent values aside) "
        "passes 5.1.0 to 6.1.0, the newest of which is used"
    )
    assert got["valid"] and "scale tiny" in got["provisional_reasons"]
    assert all(r["compliance"]["structural_errors"] == [] for r in got["runs"])


def test_three_full_runs_of_deepseekv3_671b_score(tmp_path: Path, trainperf) -> None:
    evals = {43: 3.647, 44: 3.611, 45: 3.604, 46: 3.602, 47: 3.556}  # 47 steps of 60 s .. 72 s
    for i, step_s in enumerate((60.0, 72.0, 66.0)):
        write_full_run(tmp_path, i, benchmark="deepseekv3_671b", evals=evals, seed=i + 1,
                       step_s=step_s)  # fmt: skip
    got = json.loads(trainperf("score", str(tmp_path), "--json", check=True).stdout)
    assert got["benchmark"] == "deepseekv3_671b" and got["ruleset"] == "6.1.0"
    assert got["valid"] and not got["provisional"], got["notes"]
    assert got["score_minutes"] == pytest.approx(47 * 66.0 / 60)  # the middle of 3
    assert all(r["compliance"]["passed"] for r in got["runs"])
