"""Shared by the integration tests: the real CLI in a subprocess and the MLLOG records of a log.

The tiny trainings that several of them read (tiny_runs, lora_base, lora_runs) are trained once
per session in the background: tests/conftest.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "trainperf", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"trainperf {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_mllog(path: Path) -> list[dict]:
    return [
        json.loads(line.split(":::MLLOG ", 1)[1])
        for line in path.read_text().splitlines()
        if ":::MLLOG " in line
    ]


@pytest.fixture(scope="session")
def trainperf():
    """``trainperf(*args, check=False)``: run the CLI, return the CompletedProcess."""
    return run_cli


@pytest.fixture(scope="session")
def mllog():
    """``mllog(path)``: the MLLOG records of a result file."""
    return read_mllog
