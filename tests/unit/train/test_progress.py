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
    progress.heartbeat.quiet = True  # the display only (its log lines: the heartbeat tests)
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


def test_heartbeat_prints_on_a_log_but_not_on_a_terminal() -> None:
    import io
    import threading

    from rich.console import Console

    from trainperf.train.progress import Heartbeat

    out = io.StringIO()
    log = Console(file=out, force_terminal=False, width=80)
    beat = Heartbeat(log, every=0.0)
    calls = []
    beat.beat(lambda: calls.append(1) or "line one")
    assert out.getvalue() == "line one\n" and calls == [1]
    rare = Heartbeat(log, every=3600.0)
    rare.beat(lambda: calls.append(2) or "never")  # not due: the text is not even built
    assert calls == [1] and "never" not in out.getvalue()
    # still: lines from a background thread while the block runs (here: until two are out)
    ticking = Heartbeat(log, every=0.001)
    seen = threading.Event()
    with ticking.still("building"):
        while out.getvalue().count("still building") < 2:
            seen.wait(0.001)
    assert "  still building (" in out.getvalue()
    terminal = io.StringIO()
    live = Heartbeat(Console(file=terminal, force_terminal=True), every=0.0)
    live.beat(lambda: "x")
    with live.still("y"):
        pass
    assert terminal.getvalue() == ""


def test_run_progress_on_a_log_prints_between_evaluations() -> None:
    import io

    from rich.console import Console

    from trainperf.train import progress as P

    out = io.StringIO()
    run = P.RunProgress(Console(file=out, width=80), label="x", max_samples=100, target=1.0,
                        tokens_per_sample=4)  # fmt: skip
    run.heartbeat.every = 0.0
    with run:
        run.update(samples=10, loss=2.5)
        run.record_eval(samples=20, value=1.5, loss=2.0)
    text = out.getvalue()
    assert "samples       10/100: train loss 2.500, last eval none yet (target 1)" in text
    assert "samples       20: eval 1.5000 (target 1), train loss 2.000" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_steps_between_logged_losses_still_beat() -> None:
    """A line is due by the clock, not by the log cadence: tick (after every step) prints it with
    the last logged train loss when steps are slow."""
    import io

    from rich.console import Console

    from trainperf.train import progress as P

    out = io.StringIO()
    run = P.RunProgress(Console(file=out, width=80), label="x", max_samples=100, target=1.0,
                        tokens_per_sample=4)  # fmt: skip
    with run:
        run.update(samples=10, loss=2.5)  # not due yet: nothing printed
        run.tick(samples=12)
        assert out.getvalue() == ""
        run.heartbeat.every = 0.0
        run.tick(samples=14)
    assert "samples       14/100: train loss 2.500, last eval none yet" in out.getvalue()
