"""Unit tests for trainperf.mlperf.seeds (the official seed checker, called as a library)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainperf.mlperf.seeds import check_seeds

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"
V51 = FIXTURES / "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"


def write_log(path: Path, seed: int | None) -> Path:
    lines = []
    if seed is not None:
        record = {
            "namespace": "",
            "time_ms": 1,
            "event_type": "POINT_IN_TIME",
            "key": "seed",
            "value": seed,
            "metadata": {"file": "train.py", "lineno": 7},
        }
        lines.append(":::MLLOG " + json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_distinct_seeds_pass(tmp_path: Path) -> None:
    files = [write_log(tmp_path / f"result_{i}.txt", 100 + i) for i in range(3)]
    assert check_seeds(files, ruleset="5.1.0").passed


def test_repeated_seed_and_missing_seed_fail(tmp_path: Path) -> None:
    files = [write_log(tmp_path / f"result_{i}.txt", 5) for i in range(2)]
    files.append(write_log(tmp_path / "result_2.txt", None))
    verdict = check_seeds(files, ruleset="5.1.0")
    assert not verdict.passed
    assert any("already logs the same seed" in r for r in verdict.reasons)
    assert any("logs no seed" in r for r in verdict.reasons)


def test_published_folder_passes() -> None:
    if not V51.is_dir():
        pytest.skip(f"{V51} absent")
    assert check_seeds(sorted(V51.glob("result_*.txt")), ruleset="5.1.0").passed
