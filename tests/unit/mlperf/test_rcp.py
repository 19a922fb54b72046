"""Unit tests for trainperf.mlperf.rcp against the numbers of the spec (§2.5, §3.5, §4.5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainperf.mlperf.rcp import check_rcp, check_rcp_directory, rcp_rulesets

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"
V40 = FIXTURES / "training_results_v4.0/NVIDIA/results/eos_ngc24.04_nemo/llama2_70b_lora"
V51 = FIXTURES / "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"
PUBLISHED_FACTOR = 1.0033670033670032


def lora(gbs: int, samples: list[float | None], ruleset: str = "5.1.0"):
    return check_rcp(benchmark="llama2_70b_lora", ruleset=ruleset, gbs=gbs, samples=samples)


def test_lora_gbs8_at_3072_passes_and_is_normalized() -> None:
    v = lora(8, [3072] * 10)
    assert v.verdict == "pass" and v.message == "RCP found"
    assert v.normalization_factor == pytest.approx(1.034722222222222, abs=1e-12)
    assert v.rcp_mean == pytest.approx(3178.67, abs=0.01)
    assert v.min_acceptable_mean == pytest.approx(2960.63, abs=0.01)
    assert v.max_speedup == pytest.approx(1.0736, abs=1e-4)


def test_lora_gbs8_at_2688_fails() -> None:
    v = lora(8, [2688] * 10)
    assert v.verdict == "fail" and v.normalization_factor == 1.0
    assert v.submission_mean == 2688


def test_slower_than_rcp_mean_passes_without_normalization() -> None:
    v = lora(8, [3456] * 10)
    assert v.verdict == "pass" and v.normalization_factor == 1.0


def test_lora_gbs64_interpolates_between_16_and_128_because_32_is_pruned() -> None:
    v = lora(64, [8000] * 10)
    assert v.message == "RCP Interpolation"
    # np.interp of the pruned neighbours 16 (4032.00) and 128 (11264.00)
    assert v.rcp_mean == pytest.approx(4032 + (11264 - 4032) * 48 / 112, rel=1e-9)


def test_lora_gbs256_is_missing_rcp() -> None:
    v = lora(256, [20000] * 10)
    assert v.verdict == "missing RCP" and "BS = 256" in v.message


def test_one_failed_run_stands_for_the_slowest_and_two_fail() -> None:
    assert lora(8, [3072] * 9 + [None]).verdict == "pass"
    assert lora(8, [3072] * 8 + [None, None]).message == "Insufficient convergence"


def test_llama31_8b_gbs32() -> None:
    v = check_rcp(benchmark="llama31_8b", ruleset="5.1.0", gbs=32, samples=[175000.0] * 10)
    assert v.verdict == "pass"
    assert v.rcp_mean == pytest.approx(178858.67, abs=0.01)
    assert v.min_acceptable_mean == pytest.approx(173649.76, abs=0.01)
    assert v.max_speedup == pytest.approx(1.0300, abs=1e-4)
    assert v.normalization_factor == pytest.approx(v.rcp_mean / 175000.0)


def test_405b_one_eval_allowance() -> None:
    v = check_rcp(benchmark="llama31_405b", ruleset="5.1.0", gbs=1152, samples=[240000.0] * 3)
    assert v.verdict == "pass"
    assert v.min_acceptable_mean == pytest.approx(239264.1, abs=0.1)


def test_not_applicable_cases() -> None:
    assert lora(8, [3072] * 10, ruleset="3.0.0").verdict == "not-applicable"
    assert lora(8, [3072, 3072]).verdict == "not-applicable"
    assert check_rcp(benchmark="nope", ruleset="5.1.0", gbs=8, samples=[1] * 10).verdict == (
        "not-applicable"
    )
    assert "5.1.0" in rcp_rulesets("llama31_8b") and "4.0.0" not in rcp_rulesets("llama31_8b")


@pytest.mark.parametrize("folder,ruleset", [(V51, "5.1.0"), (V40, "4.0.0")])
def test_published_folder_reproduces_scaling_json(folder: Path, ruleset: str, tmp_path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    v = check_rcp_directory(folder, ruleset=ruleset)
    assert v.verdict == "pass"
    assert v.normalization_factor == pytest.approx(PUBLISHED_FACTOR, abs=1e-9)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after == before


def test_scaling_json_is_never_touched(tmp_path: Path) -> None:
    if not V51.is_dir():
        pytest.skip(f"{V51} absent")
    folder = tmp_path / "runs"
    shutil.copytree(V51, folder)
    (folder / "scaling.json").write_text('{"scaling_factor": 7.0}')
    check_rcp_directory(folder, ruleset="5.1.0")
    assert (folder / "scaling.json").read_text() == '{"scaling_factor": 7.0}'
    (folder / "scaling.json").unlink()
    check_rcp_directory(folder, ruleset="5.1.0")
    assert not (folder / "scaling.json").exists()
