"""The real ``trainperf compare`` CLI: a tiny run is refused (not comparable to full-scale MLPerf
results), an accelerator without published results is one clear error naming those with one, a
published folder copied anywhere compares with ratio 1 to itself.

The ``trainperf`` fixture (conftest.py) runs the CLI in a subprocess.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_run_logs import write_tiny_run

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mlperf_results"
DELL_V51 = FIXTURES / "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"


def test_a_tiny_run_is_not_ranked_against_published_systems(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path, 0)
    proc = trainperf("compare", str(tmp_path), "--accelerator", "h200", "--gpus", "8")
    assert proc.returncode == 2
    assert proc.stdout == ""  # no table, no ratio
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "holds tiny-scale runs of llama31_8b" in err and "not comparable" in err
    assert "trainperf run llama31_8b --scale full" in err


@pytest.mark.parametrize(
    "accelerator, fragment",
    [
        ("h300", "unknown accelerator 'h300': no published MLPerf result names it; give one of "),
        ("a100", "unknown accelerator 'a100'"),
    ],
)
def test_an_unknown_accelerator_is_one_error_exit_2(
    tmp_path: Path, trainperf, accelerator: str, fragment: str
) -> None:
    write_tiny_run(tmp_path, 0)  # the accelerator is refused before the folder is looked at
    proc = trainperf("compare", str(tmp_path), "--accelerator", accelerator, "--gpus", "8")
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip()
    assert fragment in err and "h100, h200" in err and len(err.splitlines()) == 1
    assert "No published result" not in proc.stdout + proc.stderr


def test_bad_gpu_count_is_one_error(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path, 0)
    proc = trainperf("compare", str(tmp_path), "--accelerator", "h100", "--gpus", "0")
    assert proc.returncode == 2 and "--gpus(0) must be at least 1" in proc.stderr


def test_a_published_folder_copied_anywhere_compares(tmp_path: Path, trainperf) -> None:
    if not DELL_V51.is_dir():
        pytest.skip(f"published MLPerf fixtures not found at {FIXTURES}")
    folder = shutil.copytree(DELL_V51, tmp_path / "lora")
    proc = trainperf("compare", str(folder), "--accelerator", "H200", "--gpus", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert round(got["score_minutes"], 3) == 23.527 and got["provisional_reasons"] == []
    dell = next(r for r in got["published"] if r["system"] == "1xXE9680Lx8H200-SXM-141GB")
    assert dell["ratio"] == pytest.approx(1.0, abs=1e-4)
    text = trainperf("compare", str(folder), "--accelerator", "h200", "--gpus", "8").stdout
    assert "yours / it: your score over the published one (above 1: yours is slower)" in text
