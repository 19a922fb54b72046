"""The figures of a ``trainperf report`` (matplotlib, Agg backend): train loss and the eval metric
against the target and the RCP band, time to train per run, training throughput per block.

``build_figures`` returns the matplotlib figures (tests read their axes); ``draw_figures`` the
PNG bytes that the report writes and embeds.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from trainperf.benchmarks import BENCHMARKS
from trainperf.results.report_render import run_role

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainperf.results.report import Report

__all__ = ["LEGEND_POINTS", "build_figures", "draw_figures", "eval_label"]

DPI = 100
FIGSIZE = (11.0, 4.0)
LEGEND_POINTS = 8.5
"""Font size of every legend (points): readable in the page at its natural width."""
MAX_LEGEND_RUNS = 12
"""More runs than this get no per-run legend entries (colours repeat past 10 anyway)."""


def build_figures(report: Report) -> dict[str, Figure]:
    """``{"loss.png": figure, "time_to_train.png": ..., "throughput.png": ...}``; close them
    with ``matplotlib.pyplot.close``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from matplotlib import pyplot as plt

    figures = {}
    for name, draw in (
        ("loss.png", _draw_loss),
        ("time_to_train.png", _draw_times),
        ("throughput.png", _draw_throughput),
    ):
        fig = plt.figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        figures[name] = fig
        draw(fig, report)
    return figures


def draw_figures(report: Report) -> dict[str, bytes]:
    """The figures as PNG files (bytes), by name."""
    from matplotlib import pyplot as plt

    pngs = {}
    figures = build_figures(report)
    try:
        for name, fig in figures.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
            pngs[name] = buf.getvalue()
    finally:
        for fig in figures.values():
            plt.close(fig)
    return pngs


def eval_label(benchmark: str | None) -> str:
    """The eval metric as the benchmark's task names it ("eval log perplexity", "eval loss");
    "eval_accuracy" (the MLLOG key) for an unknown benchmark."""
    spec = BENCHMARKS.get(benchmark or "")
    metric = getattr(getattr(spec, "task", None), "metric", None)
    if not metric:
        return "eval_accuracy"
    return metric if metric.startswith("eval") else f"eval {metric}"


def _target(report: Report) -> float | None:
    for run in report.runs:
        target = ((run.config or {}).get("train") or {}).get("target")
        if target is not None:
            return float(target)
    spec = BENCHMARKS.get(report.score.benchmark or "")
    return spec.eval.target if spec is not None else None


def _draw_loss(fig: Any, report: Report) -> None:
    train_ax, eval_ax = fig.subplots(1, 2)
    for i, run in enumerate(report.runs):
        color = f"C{i % 10}"
        if run.curves.train:
            xs, ys = zip(*run.curves.train)
            train_ax.plot(xs, ys, color=color, lw=0.8, alpha=0.8, label=run.file)
        evals = [(s, v) for s, v in run.summary.evals if s is not None]
        if evals:
            xs, ys = zip(*evals)
            eval_ax.plot(xs, ys, color=color, lw=1.0, marker="o", ms=3, label=run.file)
    _mark_target_and_band(eval_ax, report)
    metric = eval_label(report.score.benchmark)
    train_ax.set(title="train loss", xlabel="samples", ylabel="train loss")
    eval_ax.set(title=f"{metric} (lower is better)", xlabel="samples", ylabel=metric)
    for ax in (train_ax, eval_ax):
        _samples_axis(ax)
    runs_legend = len(report.runs) <= MAX_LEGEND_RUNS
    if any(run.curves.train for run in report.runs):
        if runs_legend:
            train_ax.legend(fontsize=LEGEND_POINTS, ncol=2, loc="upper right")
        _legend(eval_ax, skip={run.file for run in report.runs})  # the runs: on the left
    else:
        note = "these logs carry no train loss"
        train_ax.text(0.5, 0.5, note, ha="center", va="center", transform=train_ax.transAxes)
        train_ax.set(xticks=[], yticks=[])
        _legend(eval_ax, skip=set() if runs_legend else {r.file for r in report.runs})


def _mark_target_and_band(ax: Any, report: Report) -> None:
    target = _target(report)
    if target is not None:
        ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    if report.band is not None:
        mean, std, low = report.band
        ax.axvspan(mean - std, mean + std, color="gray", alpha=0.2, label="RCP mean ± std")
        ax.axvline(mean, color="gray", lw=1)
        ax.axvline(low, color="gray", lw=1, ls=":", label=f"min acceptable {low:,.0f}")


def _legend(ax: Any, *, skip: set[str]) -> None:
    handles, labels = ax.get_legend_handles_labels()
    kept = [(h, label) for h, label in zip(handles, labels, strict=True) if label not in skip]
    if kept:
        columns = 2 if len(kept) > 6 else 1
        ax.legend(*zip(*kept), fontsize=LEGEND_POINTS, ncol=columns, loc="upper right")


def _samples_axis(ax: Any) -> None:
    from matplotlib.ticker import EngFormatter

    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _draw_times(fig: Any, report: Report) -> None:
    ax = fig.subplots()
    labels, values, colors = [], [], []
    for run in report.runs:
        role = run_role(report.score, run)
        index = run.file.removeprefix("result_").removesuffix(".txt")
        labels.append(index if role == "counted" else f"{index}\n{role.removeprefix('dropped ')}")
        values.append(run.summary.time_to_train_minutes or 0.0)
        colors.append({"counted": "C0", "dropped": "0.7"}.get(role.split()[0], "C3"))
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=LEGEND_POINTS)
    score = report.score.score_minutes
    if score is not None:
        ax.axhline(score, color="black", ls="--", lw=1, label=f"score {score:.3f} min")
        ax.legend(fontsize=LEGEND_POINTS, loc="lower right")
    ax.set(
        title="time to train per run (blue: counted, gray: dropped by the olympic mean, "
        "red: not counted)",
        xlabel="result_<i>",
        ylabel="minutes",
    )
    ax.grid(axis="y", alpha=0.3)


def _draw_throughput(fig: Any, report: Report) -> None:
    ax = fig.subplots()
    sources, highest = set(), 0.0
    for i, run in enumerate(report.runs):
        points = [
            (b.end_samples, b.samples_per_s)
            for b in run.blocks
            if b.end_samples is not None and b.samples_per_s is not None
        ]
        sources |= {b.source for b in run.blocks}
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=f"C{i % 10}", marker="o", ms=3, lw=1, label=run.file)
            highest = max(highest, *ys)
    how = " and ".join(sorted(sources)) or "no blocks logged"
    ax.set(
        title=f"training throughput per block: its samples / its duration, evaluation "
        f"excluded ({how})",
        xlabel="samples at the block's end",
        ylabel="training samples/s",
    )
    # from 0, so that a 1 % wobble does not look like a cliff; room above for the legend
    ax.set_ylim(bottom=0, top=highest * 1.15 if highest > 0 else None)
    _samples_axis(ax)
    if len(report.runs) <= MAX_LEGEND_RUNS and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LEGEND_POINTS, ncol=5, loc="lower center")
