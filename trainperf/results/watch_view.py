"""Showing a ``trainperf.results.watch.Watch``: a rich table (one column per run), plain lines,
JSON, and ``follow``, the poll-and-render loop of ``trainperf watch``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import constants as C
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainperf.results.curves import THROUGHPUT
from trainperf.results.watch import EXIT_FAILED, EXIT_SUCCESS, RunState, Watch

__all__ = [
    "follow",
    "render_lines",
    "render_table",
    "run_to_dict",
    "show_once",
    "summary_line",
    "watch_to_dict",
]


def run_to_dict(watch: Watch, run: RunState) -> dict[str, Any]:
    s = run.summary
    target, source = run.target
    eta_s, eta_why = run.eta_slope()
    rcp_s, rcp_mean, rcp_why = run.eta_rcp()
    return {
        "file": run.path.name,
        "segment": run.segment,
        "label": watch.label(run),
        "benchmark": s.benchmark,
        "seed": s.seed,
        "global_batch_size": s.global_batch_size,
        "status": run.status,
        "reason": run.reason,
        "ended": run.ended,
        "samples": run.samples,
        "train_loss": run.train_loss,
        "lr": run.lr,
        "samples_per_s": run.samples_per_s,
        "throughput_source": None if run.throughput is None else run.throughput.source,
        "logged_throughput": run.logged_throughput,
        "tokens_per_s": run.tokens_per_s,
        "evals": [[n, v] for n, v in s.evals],
        "target": target,
        "target_source": source,
        "trend": run.trend,
        "eta_slope_s": eta_s,
        "eta_slope_note": eta_why,
        "eta_rcp_s": rcp_s,
        "rcp_mean_samples": rcp_mean,
        "eta_rcp_note": rcp_why,
        "time_to_train_minutes": s.time_to_train_minutes,
        "parse_errors": len(run.errors),
        "idle_s": None if run.ended else round(watch.idle_seconds(run), 1),
    }


def watch_to_dict(watch: Watch) -> dict[str, Any]:
    """A JSON-ready view of everything watched."""
    return {
        "path": str(watch.path),
        "expected_runs": watch.expected_runs(),
        "throughput": THROUGHPUT,
        "finished": watch.finished_count(),
        "done": watch.done(),
        "exit_code": watch.exit_code(),
        "runs": [run_to_dict(watch, r) for r in watch.all_runs],
    }


def _rows(watch: Watch, run: RunState, *, stale_s: float) -> dict[str, str]:
    d = run_to_dict(watch, run)
    target = d["target"]
    evals = run.summary.evals
    last = f"{evals[-1][1]:.4f}" if evals else "-"
    mark = ""
    if evals and target is not None:
        mark = f" <= target {target:g}" if evals[-1][1] <= target else f" (target {target:g})"
    trend = "" if d["trend"] is None else f", {d['trend']:+.4f}/eval"
    gbs = _fmt(d["global_batch_size"], "d")
    status = d["status"] + (f" ({d['reason']})" if d["reason"] else "")
    if not run.ended and d["idle_s"] is not None and d["idle_s"] >= stale_s:
        status += f", no new lines for {_duration(d['idle_s'])}"
    return {
        "benchmark": d["benchmark"] or "?",
        "run": f"{d['label']} (seed {_fmt(d['seed'], 'd')}, GBS {gbs})",
        "status": status,
        "samples": _fmt(d["samples"], ","),
        "train loss": _fmt(d["train_loss"], ".4f"),
        "lr": _fmt(d["lr"], ".3g"),
        "training throughput": _throughput(d),
        "eval": f"{last}{mark}{trend} [{len(evals)} evals]",
        "evals": " ".join(f"{v:.3f}" for _, v in evals[-4:]) or "-",
        "ETA (slope)": _eta(d["eta_slope_s"], d["eta_slope_note"], run.ended),
        "ETA (RCP)": _eta(d["eta_rcp_s"], d["eta_rcp_note"], run.ended, d["rcp_mean_samples"]),
        "time to train": _time_to_train(run),
        "parse errors": str(d["parse_errors"]),
    }


def render_table(watch: Watch, *, stale_s: float = 60.0) -> Table:
    """One column per run, one row per figure."""
    runs = watch.all_runs
    n = watch.expected_runs()
    title = f"trainperf watch {watch.path.name}: {watch.finished_count()} of {n or len(runs)} ended"
    table = Table(title=escape(title), caption=escape(THROUGHPUT), show_lines=False)
    table.add_column("")
    for run in runs:
        name = run.path.name + (f" #{run.segment + 1}" if run.segment else "")
        table.add_column(escape(name), overflow="fold")
    if not runs:
        return table
    cells = [_rows(watch, r, stale_s=stale_s) for r in runs]
    for key in cells[0]:
        row = [escape(c[key]) for c in cells]
        if key == "status":
            row = [_style_status(r, text) for r, text in zip(runs, row, strict=True)]
        table.add_row(key, *row)
    return table


def render_lines(watch: Watch, *, stale_s: float = 60.0) -> list[str]:
    """One plain line per run (pipes, CI, --once without a terminal)."""
    out = []
    for run in watch.all_runs:
        r = _rows(watch, run, stale_s=stale_s)
        name = run.path.name + (f"#{run.segment + 1}" if run.segment else "")
        out.append(
            f"{name}: {r['benchmark']} {r['run']}: {r['status']}; samples {r['samples']}, "
            f"train loss {r['train loss']}, lr {r['lr']}, {r['training throughput']}; "
            f"eval {r['eval']}; "
            f"ETA slope {r['ETA (slope)']}, RCP {r['ETA (RCP)']}"
            + ("" if r["time to train"] == "-" else f"; time to train {r['time to train']}")
            + (f"; {r['parse errors']} parse errors" if run.errors else "")
        )
    return out


def summary_line(watch: Watch) -> str:
    code = watch.exit_code()
    n = watch.expected_runs() or len(watch.all_runs)
    word = {EXIT_SUCCESS: "all succeeded", EXIT_FAILED: "a run did not succeed"}
    return f"{watch.finished_count()} of {n} runs ended: {word.get(code, 'still running')}"


def show_once(watch: Watch, *, console: Console, as_json: bool, stale_s: float = 60.0) -> int:
    """Read everything there is now, print it (JSON, a table on a terminal, else plain lines)
    and return the exit code."""
    watch.poll(final=True)
    if as_json:
        console.file.write(json.dumps(watch_to_dict(watch), indent=2) + "\n")
    elif console.is_terminal:
        console.print(render_table(watch, stale_s=stale_s))
        console.print(summary_line(watch), markup=False, highlight=False)
    else:
        for line in [*render_lines(watch, stale_s=stale_s), summary_line(watch)]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    return watch.exit_code()


def follow(
    watch: Watch,
    *,
    console: Console,
    interval: float = 2.0,
    timeout: float | None = None,
    stale_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll ``watch`` every ``interval`` s and render until its runs end (or ``timeout``)."""
    start = time.monotonic()

    def keep_going() -> bool:
        if watch.done():
            return False
        return timeout is None or time.monotonic() - start < timeout

    if console.is_terminal:
        from rich.live import Live

        watch.poll()
        table = render_table(watch, stale_s=stale_s)
        with Live(table, console=console, auto_refresh=False) as live:
            while keep_going():
                sleep(interval)
                watch.poll()
                live.update(render_table(watch, stale_s=stale_s), refresh=True)
    else:
        shown: dict[tuple[Path, int], str] = {}
        watch.poll()
        if not watch.all_runs:
            console.print(f"waiting for the first result log in {watch.path}", markup=False)
        _print_changes(watch, console, shown, stale_s)
        while keep_going():
            sleep(interval)
            watch.poll()
            _print_changes(watch, console, shown, stale_s)
    console.print(summary_line(watch), markup=False, highlight=False)
    return watch.exit_code()


def _print_changes(
    watch: Watch, console: Console, shown: dict[tuple[Path, int], str], stale_s: float
) -> None:
    for run, line in zip(watch.all_runs, render_lines(watch, stale_s=stale_s), strict=True):
        key = (run.path, run.segment)
        # idle seconds change every poll; only their first crossing of stale_s is news
        bare = re.sub(r"no new lines for \S+", "no new lines", line)
        if shown.get(key) != bare:
            shown[key] = bare
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d{h:02d}h"
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _eta(seconds: float | None, note: str, ended: bool, mean: float | None = None) -> str:
    if ended:
        return "-"
    if seconds is None:
        return f"- ({note})"
    if mean is not None:
        return f"{_duration(seconds)} (mean {mean:,.0f} samples)"
    return _duration(seconds)


def _throughput(d: dict[str, Any]) -> str:
    """ "46.4 training samples/s, 5,939 tok/s (block timestamps)" (curves.THROUGHPUT)."""
    rate = d["samples_per_s"]
    if rate is None:
        return "- training samples/s (no training block yet)"
    text = f"{rate:.3g} training samples/s"
    if d["tokens_per_s"] is not None:
        text += f", {d['tokens_per_s']:,.0f} tok/s"
    return f"{text} ({d['throughput_source']})"


def _time_to_train(run: RunState) -> str:
    """The run's time to train, or for a running run the logged time since run_start."""
    s = run.summary
    if s.time_to_train_minutes is not None:
        return f"{s.time_to_train_minutes:.2f} min"
    if s.run_start_ms is None or not run.events:
        return "-"
    return f"{(run.events[-1].time_ms - s.run_start_ms) / 60000:.2f} min so far"


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _style_status(run: RunState, text: str) -> str:
    if not run.ended:
        return f"[yellow]{text}[/yellow]"
    return f"[green]{text}[/green]" if run.summary.status == C.SUCCESS else f"[red]{text}[/red]"
