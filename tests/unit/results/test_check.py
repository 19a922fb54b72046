"""``trainperf check`` / ``score`` on the published folders (skipped when absent)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from trainperf.cli import main
from trainperf.results.check import check_directory
from trainperf.results.score import score_directory, score_to_csv, write_scaling

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"
V40 = FIXTURES / "training_results_v4.0/NVIDIA/results/eos_ngc24.04_nemo/llama2_70b_lora"
V51 = FIXTURES / "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"


def _need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("folder,ruleset", [(V51, "5.1.0"), (V40, "4.0.0")])
def test_check_published_folder_passes(folder: Path, ruleset: str) -> None:
    _need(folder)
    before = _snapshot(folder)
    report = check_directory(folder)
    assert report.passed, report.lines
    assert all(f"passed (compliance {ruleset})" in line for line in report.lines[:10])
    assert "factor 1.0033670033670032" in report.lines[10]
    assert main(["check", str(folder)]) == 0
    assert _snapshot(folder) == before


def test_score_leaves_scaling_json_alone_and_reports_rcp(capsys) -> None:
    _need(V51)
    before = _snapshot(V51)
    result = score_directory(V51)
    assert result.ruleset == "5.1.0" and result.scaling_source == "scaling.json"
    assert result.rcp.normalization_factor == pytest.approx(1.0033670033670032, abs=1e-9)
    assert all(r.passed for r in result.compliance.values())
    assert main(["score", str(V51), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rcp"]["verdict"] == "pass" and data["runs"][0]["compliance"]["passed"]
    assert main(["score", str(V51), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12 and rows[-1][0] == "score" and float(rows[-1][4]) > 23.5
    assert _snapshot(V51) == before


def test_rcp_factor_applies_without_scaling_json_and_write_scaling(tmp_path: Path) -> None:
    _need(V51)
    folder = tmp_path / "llama2_70b_lora"
    shutil.copytree(V51, folder)
    (folder / "scaling.json").unlink()
    result = score_directory(folder, ruleset="5.1.0")
    assert result.scaling_source == "rcp"
    assert result.score_minutes == pytest.approx(23.526972488776657, rel=1e-9)
    assert not (folder / "scaling.json").exists()
    assert main(["score", str(folder), "--ruleset", "5.1.0", "--write-scaling", "--csv"]) == 0
    factor = json.loads((folder / "scaling.json").read_text())["scaling_factor"]
    assert factor == pytest.approx(1.0033670033670032, abs=1e-12)
    write_scaling(folder, 1.5)
    assert json.loads((folder / "scaling.json").read_text()) == {"scaling_factor": 1.5}
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("result_")) == [
        "scaling.json"
    ]
    buf = io.StringIO()
    score_to_csv(result, buf)
    assert buf.getvalue().startswith("file,status")


def test_check_bad_input_exits_2(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert main(["check", str(tmp_path)]) == 2
    assert main(["check", str(tmp_path), "--ruleset", "9.9.9"]) == 2
