"""Tables in an 80-column terminal: ``list`` and ``systems`` fit it (stacked rows when the
table would not), nothing cut with an ellipsis; a wide terminal keeps the table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _cli(*args: str, columns: int) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "trainperf", *args], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list"], ["llama2_70b_lora", "  description: the MLPerf rules: Llama 3.1 8B, C4,"]),
        (["systems"], ["DGXH200_1x8", "  layout: parallel.activation_checkpointing=none"]),
    ],
)
def test_an_80_column_terminal_cuts_nothing(args: list[str], expected: list[str]) -> None:
    lines = _cli(*args, columns=80)
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert not any("…" in line for line in lines)
    for text in expected:
        assert any(line.startswith(text) for line in lines), (text, lines)


def test_a_wide_terminal_keeps_the_table() -> None:
    lines = _cli("systems", columns=200)
    assert any(line.startswith("┃ system") for line in lines)
