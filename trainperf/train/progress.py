"""Human-readable progress for a run (never part of the MLLOG stream)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


HEARTBEAT_S = 10.0
"""On a console that is not a terminal (a log file, CI, a Slurm output), long work prints a line at
least this often, so that nobody waits on silence."""


class Heartbeat:
    """Lines for a console without a live display: `beat` prints when HEARTBEAT_S have passed
    since the last line; `still` prints from a background thread while a single long call runs
    (``with heartbeat.still("training the tokenizer"):``). On a terminal both print nothing: the
    live display shows progress there."""

    def __init__(self, console: Console, *, every: float = HEARTBEAT_S) -> None:
        self.console = console
        self.quiet = console.is_terminal or console.quiet
        self.every = every
        self._last = time.perf_counter()

    def beat(self, text: Callable[[], str]) -> None:
        """Print ``text()`` if a line is due (called only then: it may read a device value)."""
        now = time.perf_counter()
        if not self.quiet and now - self._last >= self.every:
            self.console.print(text(), markup=False, highlight=False)
            self._last = now

    def reset(self) -> None:
        """Another line was just printed: the next beat is due HEARTBEAT_S from now."""
        self._last = time.perf_counter()

    @contextlib.contextmanager
    def still(self, what: str) -> Iterator[None]:
        """'still <what> (N s)' every HEARTBEAT_S while the block runs."""
        if self.quiet:
            yield
            return
        done, start = threading.Event(), time.perf_counter()

        def tick() -> None:
            while not done.wait(self.every):
                elapsed = time.perf_counter() - start
                self.console.print(f"  still {what} ({elapsed:.0f} s)", markup=False)

        thread = threading.Thread(target=tick, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.reset()


WIDE = 132
"""Consoles at least this wide show the live display on one line, narrower ones on two."""


class _TwoLineProgress(Progress):
    """The bar and the samples on a first line, the figures below: fits 80 columns."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            f, elapsed = task.fields, _fmt_eta(task.elapsed)
            yield Text(
                f"  loss {f['loss']} eval {f['eval']} {f['rate']} ETA {f['eta']} elapsed {elapsed}",
                overflow="fold",
            )


def _progress_for(console: Console, *, disable: bool) -> Progress:
    """One line of columns on a wide console; two (`_TwoLineProgress`) on a narrower one."""
    head = (TextColumn("[bold]{task.description}"), BarColumn(bar_width=16),
            TextColumn("{task.fields[samples]}"))  # fmt: skip
    if console.width < WIDE:
        return _TwoLineProgress(*head, console=console, disable=disable)
    return Progress(
        *head,
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("eval {task.fields[eval]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


class RunProgress:
    """A live line while training: samples, train loss, last eval vs target, throughput, ETA.

    The ETA is to the quality target, extrapolated from the slope of the last two evaluations,
    and to the step limit when there is no downward trend yet. On a non-terminal console the
    live bar is replaced by one printed line per evaluation and, between them, a line at least
    every HEARTBEAT_S seconds (at the next train-loss update after that).
    """

    def __init__(
        self,
        console: Console,
        *,
        label: str,
        max_samples: int,
        target: float,
        tokens_per_sample: int,
    ) -> None:
        self.console = console
        self.max_samples = max_samples
        self.target = target
        self.tokens_per_sample = tokens_per_sample
        self.live = console.is_terminal
        self.evals: list[tuple[int, float]] = []
        self._t0 = time.perf_counter()
        self.heartbeat = Heartbeat(console)
        self._loss: float | None = None
        self._progress = _progress_for(console, disable=not self.live)
        self._task = self._progress.add_task(
            label, total=max_samples, samples="0", loss="-", eval="-", rate="-", eta="--:--"
        )

    def __enter__(self) -> RunProgress:
        self._progress.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _eta_seconds(self, samples: int, rate: float) -> float | None:
        if rate <= 0:
            return None
        if len(self.evals) >= 2:
            (s0, v0), (s1, v1) = self.evals[-2], self.evals[-1]
            slope = (v1 - v0) / max(s1 - s0, 1)  # eval units per sample
            if slope < 0:
                need = max(0.0, (v1 - self.target) / -slope)
                return min(need, self.max_samples - samples) / rate
        return (self.max_samples - samples) / rate

    def update(self, *, samples: int, loss: float | None) -> None:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = samples / elapsed
        last = f"{self.evals[-1][1]:.3f}/{self.target:g}" if self.evals else f"-/{self.target:g}"
        self._progress.update(
            self._task,
            completed=samples,
            samples=f"{samples}/{self.max_samples} samples",
            loss="-" if loss is None else f"{loss:.3f}",
            eval=last,
            rate=f"{rate * self.tokens_per_sample:,.0f} tok/s",
            eta=_fmt_eta(self._eta_seconds(samples, rate)),
        )
        if loss is not None:
            self._loss = loss
        self.tick(samples=samples)

    def tick(self, *, samples: int) -> None:
        """After every step: the heartbeat line if one is due (the last logged train loss)."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = samples / elapsed
        loss, last_eval = self._loss, f"{self.evals[-1][1]:.4f}" if self.evals else "none yet"
        self.heartbeat.beat(
            lambda: (
                f"  samples {samples:>8}/{self.max_samples}: train loss "
                f"{'-' if loss is None else f'{loss:.3f}'}, last eval {last_eval} (target "
                f"{self.target:g}), {rate * self.tokens_per_sample:,.0f} tok/s, {elapsed:.1f} s"
            )
        )

    def record_eval(self, *, samples: int, value: float, loss: float | None) -> None:
        self.evals.append((samples, value))
        self.update(samples=samples, loss=loss)
        if not self.live:
            mark = "<= target" if value <= self.target else f"target {self.target:g}"
            loss_text = "" if loss is None else f", train loss {loss:.3f}"
            self.console.print(
                f"  samples {samples:>8}: eval {value:.4f} ({mark}){loss_text}, "
                f"{time.perf_counter() - self._t0:.1f} s"
            )
            self.heartbeat.reset()
