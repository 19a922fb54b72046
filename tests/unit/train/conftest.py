"""What the trainer and run tests share: a very small config of the tiny llama31_8b scale on a
very small built-in corpus, and running it to its log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.config import Config, apply_overrides
from trainperf.data.prepare import prepare_data
from trainperf.train.run import RunResult, run_benchmark

SPEC = get_benchmark("llama31_8b")
SMALL = [
    "data.max_bytes=300000", "data.vocab_size=512", "train.seq_len=32",
    "train.global_batch_size=4", "train.micro_batch_size=2", "train.eval_every_samples=10",
    "train.eval_samples=4", "train.max_steps=9", "train.warmup_steps=2", "train.target=0.5",
]  # fmt: skip


def small_config(tmp_path: Path, *extra: str) -> Config:
    overrides = [*SMALL, f"log.results_dir={tmp_path / 'results'}", *extra]
    return apply_overrides(get_default_config("llama31_8b", "tiny"), overrides)


def run_small(cfg: Config) -> RunResult:
    paths = prepare_data(cfg, progress=False)
    return run_benchmark(cfg, SPEC, paths, console=Console(quiet=True), show_progress=False)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def small() -> Callable[..., Config]:
    """``small(tmp_path, *overrides)``: the very small config, results under tmp_path."""
    return small_config


@pytest.fixture(scope="session")
def run() -> Callable[[Config], RunResult]:
    """``run(cfg)``: prepare its data and run it to its log (run_benchmark)."""
    return run_small


@pytest.fixture(scope="session")
def records() -> Callable[[Path], list[dict]]:
    """``records(path)``: the MLLOG records of a log."""
    return read_records
