"""Unit tests for trainperf.results.published: the table and compare."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from trainperf.results.published import (
    BENCHMARKS,
    compare,
    compare_directory,
    comparison_to_dict,
    load_published,
    normalize_accelerator,
    render_compare,
)


def test_table_loads_with_required_fields() -> None:
    rows = load_published()
    assert len(rows) > 100
    assert {r.benchmark for r in rows} == set(BENCHMARKS)
    for r in rows:
        assert r.round.startswith("v") and r.submitter and r.system
        assert r.accelerator == normalize_accelerator(r.accelerator_name)
        assert r.accelerators > 0 and r.score_minutes > 0 and r.scaling_factor >= 1.0
        assert r.tokens_per_s_per_gpu is None or r.tokens_per_s_per_gpu > 0


def test_normalize_accelerator() -> None:
    assert normalize_accelerator("H100-SXM5-80GB") == "h100"
    assert normalize_accelerator("Blackwell GPU (GB200)") == "gb200"
    assert normalize_accelerator("Blackwell GPU (B200-SXM-180GB)") == "b200"
    assert normalize_accelerator("H200-NVL-141GB") == "h200-nvl"
    assert normalize_accelerator("AMD Instinct MI300X 192GB HBM3") == "mi300x"


def test_compare_lora_8_h200() -> None:
    rows = compare(23.062 * 1.1, benchmark="llama2_70b_lora", accelerator="H200", count=8)
    best = rows[0].published
    assert (best.submitter, best.round, best.score_minutes) == ("Lenovo", "v4.1", 23.062)
    assert best.tokens_per_s_per_gpu == 2646
    assert rows[0].ratio == pytest.approx(1.1)
    assert all(r.same_count and r.published.accelerators == 8 for r in rows)
    assert all(r.published.accelerator == "h200" for r in rows)  # no H200 NVL
    nvidia = next(r for r in rows if r.published.system == "h200_ngc24.09_nemo")
    assert nvidia.ratio == pytest.approx(23.062 * 1.1 / 24.116)
    scores = [r.published.score_minutes for r in rows]
    assert scores == sorted(scores)


def test_compare_nearest_count() -> None:
    # No 8-GPU H100 llama31_8b result: the 64-GPU Cisco one is the nearest.
    rows = compare(300.0, benchmark="llama31_8b", accelerator="h100", count=8)
    assert [(r.published.submitter, r.published.accelerators) for r in rows] == [("Cisco", 64)]
    assert not rows[0].same_count
    assert rows[0].ratio == pytest.approx(300.0 / 45.445)


def test_compare_405b_and_unknowns() -> None:
    rows = compare(269.122, benchmark="llama31_405b", accelerator="h100", count=512)
    assert len(rows) == 1 and rows[0].ratio == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown accelerator 'a100'.*give one of b200, b300"):
        compare(10.0, benchmark="llama2_70b_lora", accelerator="a100", count=8)
    with pytest.raises(ValueError, match="no published llama31_405b result on mi300x; .* on b200"):
        compare(10.0, benchmark="llama31_405b", accelerator="mi300x", count=8)
    with pytest.raises(ValueError, match="known: llama2_70b_lora"):
        compare(10.0, benchmark="gpt3", accelerator="h100", count=8)


def test_render_and_dict() -> None:
    rows = compare(30.0, benchmark="llama2_70b_lora", accelerator="h100", count=8)
    buf = io.StringIO()
    render_compare(rows, Console(file=buf, width=200), score_minutes=30.0)
    out = buf.getvalue()
    assert "AS-8125GS-TNHR-1" in out and "27.536" in out and "1.089" in out
    data = json.loads(json.dumps(comparison_to_dict(rows[0])))
    assert data["ratio"] == pytest.approx(30.0 / 27.536) and data["same_count"] is True
    buf = io.StringIO()
    render_compare([], Console(file=buf))
    assert "No published result" in buf.getvalue()


DELL_V51 = (
    Path(__file__).resolve().parents[3].parent
    / "shared/fixtures/mlperf_results/training_results_v5.1/Dell/results"
    / "1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"
)


@pytest.mark.skipif(not DELL_V51.is_dir(), reason="published result fixtures absent")
def test_compare_directory_scores_a_published_folder() -> None:
    result, rows = compare_directory(DELL_V51, accelerator="h200", count=8)
    assert round(result.score_minutes, 3) == 23.527
    dell = next(r for r in rows if r.published.system == "1xXE9680Lx8H200-SXM-141GB")
    assert (dell.published.round, dell.published.score_minutes) == ("v5.1", 23.527)
    assert dell.ratio == pytest.approx(1.0, abs=1e-4)


FIXTURES = Path(__file__).resolve().parents[3].parent / "shared/fixtures/mlperf_results"
NEBIUS_FLUX1 = FIXTURES / "training_results_v5.1/Nebius/results/nebius_b200_n4/flux1"


def test_flux1_rows() -> None:
    rows = [r for r in load_published() if r.benchmark == "flux1"]
    assert len(rows) == 16 and {r.round for r in rows} == {"v5.1"}
    assert {r.accelerator for r in rows} == {"b200", "gb200", "gb300"}
    assert min(r.accelerators for r in rows) >= 16
    assert all(r.tokens_per_s_per_gpu is None and r.samples_per_s_per_gpu for r in rows)
    nebius = next(r for r in rows if r.submitter == "Nebius")
    assert (nebius.system, nebius.accelerators, nebius.score_minutes) == (
        "nebius_b200_n4",
        32,
        93.173,
    )
    path = FIXTURES / "expected_scores.json"
    if path.is_file():
        expected = json.loads(path.read_text())[str(NEBIUS_FLUX1.relative_to(FIXTURES))]
        assert nebius.score_minutes == round(expected["score"], 3)
        assert nebius.scaling_factor == pytest.approx(expected["scaling"])


def test_compare_flux1_renders_samples_per_s() -> None:
    rows = compare(100.0, benchmark="flux1", accelerator="b200", count=32)
    assert [r.published.system for r in rows] == ["nebius_b200_n4", "hpg.dgxb200x8.n4"]
    buf = io.StringIO()
    render_compare(rows, Console(file=buf, width=200), score_minutes=100.0)
    out = buf.getvalue()
    assert "samples/s/GPU" in out and "tok/s/GPU" not in out and "1.073" in out


@pytest.mark.skipif(not NEBIUS_FLUX1.is_dir(), reason="published flux1 fixture absent")
def test_compare_directory_flux1() -> None:
    result, rows = compare_directory(NEBIUS_FLUX1, accelerator="b200", count=32)
    assert result.benchmark == "flux1" and round(result.score_minutes, 3) == 93.173
    assert rows and all(r.published.benchmark == "flux1" for r in rows)
    assert all(r.published.accelerator == "b200" and r.same_count for r in rows)
    nebius = next(r for r in rows if r.published.submitter == "Nebius")
    assert nebius.ratio == pytest.approx(1.0, abs=1e-5)
