"""The live training line fits the console: one line when wide, two lines in 80 columns,
nothing cut with an ellipsis."""

import io
import itertools

import pytest
from rich.console import Console

from trainperf.train import progress as progress_module
from trainperf.train.progress import WIDE, RunProgress


def _render(width: int, monkeypatch) -> list[str]:
    """The display of a run 1,234,567 samples (100 s) in, on a console `width` columns wide."""
    clock = itertools.chain([0.0], itertools.repeat(100.0))
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None)  # not a terminal: no live bar
    progress = RunProgress(console, label="llama2_70b_lora/full", max_samples=12_000_000,
                           target=3.3, tokens_per_sample=8192)  # fmt: skip
    progress.update(samples=1_234_567, loss=3.456)
    console.print(progress._progress)
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 100])
def test_narrow_consoles_get_two_lines_that_fit(width: int, monkeypatch) -> None:
    first, second = _render(width, monkeypatch)
    assert first.startswith("llama2_70b_lora/full ") and "1234567/12000000 samples" in first
    assert second == "  loss 3.456 eval -/3.3 101,135,729 tok/s ETA 14:32 elapsed 00:00"
    assert all(len(line) <= width and "…" not in line for line in (first, second))


def test_a_wide_console_gets_one_line(monkeypatch) -> None:
    (line,) = _render(WIDE, monkeypatch)
    assert "samples loss 3.456 eval -/3.3 101,135,729 tok/s ETA 14:32" in line
    assert len(line) <= WIDE and "…" not in line
