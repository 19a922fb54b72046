"""Unit tests for trainperf.results.report: a crafted folder and the published fixtures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from trainperf.results.report import build_report, find_system_file, report_to_dict
from trainperf.results.score import score_directory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"


def crafted_folder(folder: Path, craft, *, bad: str = "garbled") -> Path:
    """Four converging runs and one bad one: garbled (truncated mid-line) or diverging."""
    folder.mkdir()
    for i, minutes in enumerate((50.0, 60.0, 55.0, 52.0)):
        craft(folder / f"result_{i}.txt", [6.0, 5.0, 4.2, 3.6, 3.29], seconds_per_eval=minutes * 12)
    if bad == "diverged":
        craft(folder / "result_4.txt", [6.0, 5.0, 5.2, 5.5, 5.9], status="aborted")
    else:
        text = craft(folder / "result_4.txt", [6.0, 3.29]).read_text()
        (folder / "result_4.txt").write_text(text[: text.index('"key": "run_start"') + 8])
    config = {"benchmark": "llama31_8b", "scale": "full", "parallel": {"dp_shard": -1, "tp": 2}}
    (folder / "config_0.json").write_text(json.dumps(config))
    return folder


def test_report_of_a_crafted_folder(tmp_path: Path, craft) -> None:
    folder = crafted_folder(tmp_path / "runs", craft)
    report = build_report(folder, compliance=False, rcp=False)
    out = folder / "report"
    assert report.html_path == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == [  # nothing left under a temporary name
        "loss.png",
        "report.html",
        "throughput.png",
        "time_to_train.png",
    ]
    for png in report.png_paths:
        assert png.read_bytes().startswith(PNG_SIGNATURE)
    page = report.html_path.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=\"(http|//)", page)  # opens offline
    score = score_directory(folder, compliance=False, rcp=False).score_minutes
    assert f"Score (provisional: 5 of 10 required runs): {score:.3f} min (olympic mean" in page
    verdicts = [r.diagnosis.verdict for r in report.runs]
    assert verdicts == ["converged"] * 4 + ["unreadable"]
    assert page.count("reached 3.2900 &lt;= target 3.3 at 61440 samples") == 4
    assert "log unreadable: line 13: invalid JSON after :::MLLOG" in page
    assert "config: parallel" in page and "tp=2" in page  # config_0.json, shown as it is
    assert "1xCPU" in page  # submission_platform from the log
    roles = [r["score_role"] for r in report_to_dict(report)["runs"]]
    assert roles == ["dropped fastest", "counted", "counted", "counted", "not counted"]


def test_out_folder_and_json(tmp_path: Path, craft) -> None:
    folder = crafted_folder(tmp_path / "runs", craft, bad="diverged")
    report = build_report(folder, out=tmp_path / "elsewhere" / "r", compliance=False, rcp=False)
    data = json.loads(json.dumps(report_to_dict(report)))
    assert data["html"] == str(tmp_path / "elsewhere" / "r" / "report.html")
    assert [Path(p).name for p in data["pngs"]] == [
        "loss.png",
        "time_to_train.png",
        "throughput.png",
    ]
    assert data["runs"][4]["verdict"] == "diverged"
    assert data["runs"][4]["reasons"][0].startswith("eval rose 3 evaluations in a row")
    assert "eval rose 3 evaluations in a row" in report.html_path.read_text()
    assert not (folder / "report").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "all garbled"])
def test_bad_folders_raise_one_line(tmp_path: Path, craft, case: str) -> None:
    folder = tmp_path / "runs"
    if case != "missing":
        folder.mkdir()
    if case == "all garbled":
        (folder / "result_0.txt").write_text(':::MLLOG {"key": "run_st\n')
        (folder / "result_1.txt").write_bytes(b"\x00\xff binary")
    with pytest.raises(ValueError) as info:
        build_report(folder)
    assert "\n" not in str(info.value)
    assert not (folder / "report").exists()


def test_system_file_of_a_published_layout(tmp_path: Path) -> None:
    bench = tmp_path / "Org" / "results" / "sys_a" / "llama31_8b"
    bench.mkdir(parents=True)
    assert find_system_file(bench) is None
    (tmp_path / "Org" / "systems").mkdir()
    (tmp_path / "Org" / "systems" / "sys_a.json").write_text("{}")
    assert find_system_file(bench) == tmp_path / "Org" / "systems" / "sys_a.json"


def _expected_scores() -> list[tuple[str, dict[str, Any]]]:
    path = FIXTURES / "expected_scores.json"
    return sorted(json.loads(path.read_text()).items()) if path.is_file() else []


@pytest.mark.parametrize("entry", _expected_scores() or [None], ids=lambda e: e and e[0][17:30])
def test_published_folders_render(tmp_path: Path, entry: tuple[str, dict[str, Any]] | None) -> None:
    if entry is None:
        pytest.skip(f"published MLPerf fixtures not found at {FIXTURES}")
    directory, expected = entry
    report = build_report(FIXTURES / directory, out=tmp_path)
    page = report.html_path.read_text()
    assert f"Score: {expected['score']:.3f} min" in page
    assert {r.file for r in report.runs} == set(expected["runs"])
    assert [r.diagnosis.verdict for r in report.runs] == ["converged"] * len(expected["runs"])
    system_file = find_system_file(FIXTURES / directory)
    if system_file is not None:
        assert json.loads(system_file.read_text())["system_name"] in page
    else:  # a fixture without <org>/systems/: the platform the logs name
        platform = report.runs[0].curves.hyper.get("submission_platform") or ""
        assert platform and platform in page
    assert "RCP check: pass" in page
    assert f"seeds ({report.score.ruleset}): passed" in page
    for png in report.png_paths:
        assert png.read_bytes().startswith(PNG_SIGNATURE)
