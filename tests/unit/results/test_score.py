"""Unit tests for trainperf.results.score: synthetic folders and published MLPerf results."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from mllog_lines import T0, mllog
from rich.console import Console

from trainperf.results.score import (
    render_score,
    required_run_count,
    score_directory,
    score_runs,
    score_to_dict,
    sort_naturally,
)


def score_plain(path: Path) -> Any:
    """Hand-made logs are not full MLPerf logs: score them without compliance or RCP checks."""
    return score_directory(path, compliance=False, rcp=False)


FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"


def write_run(
    path: Path,
    minutes: float | None,
    *,
    status: str = "success",
    benchmark: str = "llama2_70b_lora",
    batch: int = 8,
    samples: int = 3072,
) -> Path:
    """A result log whose run lasts ``minutes`` (None: no run_stop) and ends with ``status``."""
    start = T0 + 120_000
    lines = [
        mllog("init_start", time_ms=T0),
        mllog("submission_benchmark", benchmark, time_ms=T0),
        mllog("global_batch_size", batch, time_ms=T0),
        mllog("run_start", time_ms=start),
        mllog("eval_accuracy", 0.93, time_ms=start + 1000, samples_count=samples - 384),
    ]
    if minutes is not None:
        stop = start + round(minutes * 60_000)
        lines.append(mllog("eval_accuracy", 0.92, time_ms=stop, samples_count=samples))
        lines.append(mllog("run_stop", time_ms=stop, samples_count=samples, status=status))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_folder(folder: Path, minutes: list[float | None], **kwargs: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(minutes):
        write_run(folder / f"result_{i}.txt", m, **kwargs)
    return folder


def test_olympic_mean_of_five_runs(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [30.0, 20.0, 25.0, 40.0, 26.0]))
    assert result.score_minutes == pytest.approx((25.0 + 26.0 + 30.0) / 3)
    assert result.valid
    assert result.method == "olympic mean of 3 of 5 runs"
    assert result.provisional and "5 of 10 required runs" in result.provisional_reasons
    assert result.benchmark == "llama2_70b_lora"


def test_ten_runs_are_not_provisional(tmp_path: Path) -> None:
    minutes = [20.0 + i for i in range(10)]
    result = score_plain(write_folder(tmp_path, minutes))
    assert not result.provisional and result.valid
    assert result.score_minutes == pytest.approx(sum(minutes[1:-1]) / 8)


def test_one_failed_run_stands_for_the_slowest(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0, 40.0])
    write_run(folder / "result_4.txt", 10.0, status="aborted")
    result = score_plain(folder)
    # Converged: 20 25 30 40; drop the fastest only: the aborted run is the dropped slowest.
    assert result.score_minutes == pytest.approx((25.0 + 30.0 + 40.0) / 3)
    assert result.valid
    assert any("result_4.txt (status aborted)" in n for n in result.notes)


def test_missing_run_stop_counts_as_failed(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [30.0, 20.0, None, 25.0]))
    assert result.score_minutes == pytest.approx((25.0 + 30.0) / 2)
    run = result.runs[2]
    assert not run.converged and any("no run_stop" in p for p in run.problems)


def test_two_failed_runs_are_invalid(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0, None])
    write_run(folder / "result_4.txt", 10.0, status="aborted")
    result = score_plain(folder)
    assert result.score_minutes is None and not result.valid
    assert any("2 of 5 runs did not converge" in n for n in result.notes)


def test_two_runs_give_a_provisional_plain_mean(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [30.0, 20.0]))
    assert result.score_minutes == pytest.approx(25.0)
    assert result.provisional and "fewer than 3 runs" in result.provisional_reasons
    text = _render(result)
    assert "Score (provisional: fewer than 3 runs" in text and "25.000 min" in text


def test_three_runs_of_405b_are_complete(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [30.0, 20.0, 25.0], benchmark="llama31_405b"))
    assert result.score_minutes == pytest.approx(25.0) and not result.provisional


def test_scaling_json_is_applied_and_left_alone(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0])
    scaling = folder / "scaling.json"
    scaling.write_text('{"scaling_factor": 1.1}')
    before = (scaling.read_bytes(), os.stat(scaling).st_mtime_ns)
    result = score_plain(folder)
    assert result.scaling_factor == 1.1
    assert result.score_minutes == pytest.approx(25.0 * 1.1)
    assert (scaling.read_bytes(), os.stat(scaling).st_mtime_ns) == before
    assert sorted(p.name for p in folder.iterdir()) == [
        "result_0.txt",
        "result_1.txt",
        "result_2.txt",
        "scaling.json",
    ]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1.1]",
        '{"factor": 1.1}',
        '{"scaling_factor": "big"}',
        '{"scaling_factor": -1}',
    ],
)
def test_bad_scaling_json_is_reported(tmp_path: Path, content: str) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0])
    (folder / "scaling.json").write_text(content)
    result = score_plain(folder)
    assert result.score_minutes is None and not result.valid
    assert any("scaling.json" in n for n in result.notes)
    assert (folder / "scaling.json").read_text() == content
    assert "none" in _render(result)


def test_no_scaling_json_is_not_created(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0])
    assert score_plain(folder).scaling_factor == 1.0
    assert not (folder / "scaling.json").exists()


def test_empty_directory_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no result_\\*.txt files in .*trainperf run --results"):
        score_plain(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        score_plain(tmp_path / "absent")


def test_natural_sort_order(tmp_path: Path) -> None:
    folder = tmp_path
    for i in (10, 2, 1, 11, 3):
        write_run(folder / f"result_{i}.txt", 20.0 + i)
    names = [run.path.name for run in score_plain(folder).runs]
    assert names == [
        "result_1.txt",
        "result_2.txt",
        "result_3.txt",
        "result_10.txt",
        "result_11.txt",
    ]
    assert [p.name for p in sort_naturally([Path("result_10.txt"), Path("result_9.txt")])] == [
        "result_9.txt",
        "result_10.txt",
    ]


def test_mixed_benchmarks_and_batch_sizes_are_invalid(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [30.0, 20.0, 25.0])
    write_run(folder / "result_3.txt", 22.0, benchmark="llama31_8b", batch=16)
    result = score_plain(folder)
    assert not result.valid and result.score_minutes is None
    assert any("different benchmarks" in n for n in result.notes)
    assert any("global_batch_size (8, 16)" in n for n in result.notes)


def test_score_to_dict_is_json_ready(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [30.0, 20.0, 25.0]))
    data = json.loads(json.dumps(score_to_dict(result)))
    for key in ("score_minutes", "provisional", "valid", "scaling_factor", "benchmark", "notes"):
        assert key in data
    run = data["runs"][0]
    assert run["file"] == "result_0.txt" and run["status"] == "success"
    assert run["time_to_train_minutes"] == pytest.approx(30.0)
    assert run["samples_to_converge"] == 3072 and run["final_eval"] == pytest.approx(0.92)
    assert run["seed"] is None and run["problems"] == []


def test_score_runs_rejects_bad_scaling_factor() -> None:
    with pytest.raises(ValueError, match="scaling_factor must be a positive"):
        score_runs([], scaling_factor=0.0)


def test_required_run_counts() -> None:
    assert required_run_count("llama2_70b_lora") == 10
    assert required_run_count("llama31_8b") == 10
    assert required_run_count("flux1") == 10
    assert required_run_count("llama31_405b") == 3
    assert required_run_count(None) is None


def test_render_lists_runs(tmp_path: Path) -> None:
    result = score_plain(write_folder(tmp_path, [20.0 + i for i in range(10)]))
    text = _render(result)
    assert "result_9.txt" in text and "success" in text
    assert "Score: 24.500 min (olympic mean of 8 of 10 runs)" in text


def _render(result: Any) -> str:
    buffer = io.StringIO()
    render_score(result, Console(file=buffer, width=200, color_system=None))
    return buffer.getvalue()


def _expected_scores() -> list[tuple[str, dict[str, Any]]]:
    path = FIXTURES / "expected_scores.json"
    if not path.is_file():
        return []
    return sorted(json.loads(path.read_text()).items())


@pytest.mark.parametrize("entry", _expected_scores() or [None], ids=lambda e: e and e[0])
def test_published_results_match_official_scores(entry: tuple[str, dict[str, Any]] | None) -> None:
    if entry is None:
        pytest.skip(f"published MLPerf fixtures not found at {FIXTURES}")
    directory, expected = entry
    result = score_directory(FIXTURES / directory)
    assert result.valid and result.score_minutes is not None
    assert round(result.score_minutes, 3) == round(expected["score"], 3)
    assert result.score_minutes == pytest.approx(expected["score"], rel=1e-9)
    assert result.scaling_factor == pytest.approx(expected["scaling"])
    minutes = {run.path.name: run.time_to_train_minutes for run in result.runs}
    # an entry whose per-run minutes were rounded (its note says to how many decimals) is
    # compared at that precision: half a unit of the last decimal
    rounded = re.search(r"rounded to (\d+) decimals", expected.get("note") or "")
    abs_tol = 0.5 * 10.0 ** -int(rounded.group(1)) if rounded else None
    assert minutes == pytest.approx(expected["runs"], abs=abs_tol)
    assert all(run.converged and run.samples_to_converge for run in result.runs)


def test_a_failed_rcp_check_makes_the_score_provisional(tmp_path: Path) -> None:
    # 10 llama2_70b_lora runs at GBS 8 converging at 1536 samples, far below the RCP's 2961
    folder = write_folder(tmp_path, [20.0 + i for i in range(10)], samples=1536)
    result = score_directory(folder, compliance=False)
    assert result.rcp.verdict == "fail" and result.valid
    assert result.provisional and result.provisional_reasons == ["RCP check fail"]
    assert "mean samples to converge, 1,536, is below the minimum acceptable mean" in " ".join(
        result.notes
    )
    assert "Score (provisional: RCP check fail): 24.500 min" in _render(result)
