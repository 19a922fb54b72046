"""Drawing and writing a ``trainperf report``: the three figures (matplotlib, Agg backend), the
HTML page that embeds them as base64 PNG, and the JSON view. ``report.py`` reads the runs."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

from trainperf.benchmarks import BENCHMARKS
from trainperf.results.curves import THROUGHPUT
from trainperf.results.diagnose import CONVERGED
from trainperf.results.score import ScoreResult, score_to_dict
from trainperf.results.score_view import ruleset_line, score_line

if TYPE_CHECKING:
    from trainperf.results.report import Report, RunReport

__all__ = ["draw_figures", "render_html", "report_to_dict", "run_role", "score_line"]

DPI = 80
FIGSIZE = (10.0, 3.6)


# --- figures ----------------------------------------------------------------------------------


def draw_figures(report: Report) -> dict[str, bytes]:
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
        try:
            draw(fig, report)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
            figures[name] = buf.getvalue()
        finally:
            plt.close(fig)
    return figures


def _target(report: Report) -> float | None:
    for run in report.runs:
        target = ((run.config or {}).get("train") or {}).get("target")
        if target is not None:
            return float(target)
    spec = BENCHMARKS.get(report.score.benchmark or "")
    return spec.eval.target if spec is not None else None


def _draw_loss(fig: Any, report: Report) -> None:
    from matplotlib.ticker import EngFormatter

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
    target = _target(report)
    if target is not None:
        eval_ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    if report.band is not None:
        mean, std, low = report.band
        eval_ax.axvspan(mean - std, mean + std, color="gray", alpha=0.2, label="RCP mean ± std")
        eval_ax.axvline(mean, color="gray", lw=1)
        eval_ax.axvline(low, color="gray", lw=1, ls=":", label=f"min acceptable {low:,.0f}")
    train_ax.set(title="train loss", xlabel="samples")
    eval_ax.set(title="eval_accuracy (lower is better)", xlabel="samples")
    for ax in (train_ax, eval_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if len(report.runs) <= 12:
        eval_ax.legend(fontsize=6, ncol=2)


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
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    if report.score.score_minutes is not None:
        ax.axhline(
            report.score.score_minutes,
            color="black",
            ls="--",
            lw=1,
            label=f"score {report.score.score_minutes:.3f} min",
        )
        ax.legend(fontsize=7, loc="lower right")
    ax.set(
        title="time to train per run (blue: counted, gray: dropped by the olympic mean, "
        "red: not counted)",
        xlabel="result_<i>",
        ylabel="minutes",
    )
    ax.grid(axis="y", alpha=0.3)


def _draw_throughput(fig: Any, report: Report) -> None:
    from matplotlib.ticker import EngFormatter

    ax = fig.subplots()
    sources = set()
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
    how = " and ".join(sorted(sources)) or "no blocks logged"
    ax.set(
        title=f"training throughput per block: its samples / its duration, evaluation "
        f"excluded ({how})",
        xlabel="samples at the block's end",
        ylabel="samples/s",
    )
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if len(report.runs) <= 12 and any(r.blocks for r in report.runs):
        ax.legend(fontsize=6, ncol=2)


def run_role(score: ScoreResult, run: RunReport) -> str:
    """'counted', 'dropped fastest', 'dropped slowest', 'not counted' or 'no score', as
    ``score.py`` decided."""
    if run.file in score.counted:
        return "counted"
    if run.file in score.excluded or not score.counted:
        return "not counted" if run.file in score.excluded else "no score"
    counted = [
        r.time_to_train_minutes or 0.0
        for r in score.runs
        if r.path is not None and r.path.name in score.counted
    ]
    minutes = run.summary.time_to_train_minutes or 0.0
    return "dropped fastest" if minutes <= min(counted) else "dropped slowest"


# --- HTML and JSON ----------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #17702a; font-weight: bold; } .bad { color: #b00020; font-weight: bold; }
.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0 1em; }
"""


def render_html(report: Report, figures: dict[str, bytes]) -> str:
    """One HTML page with every figure embedded as base64 PNG (no external resource)."""
    e = html.escape
    score = report.score
    title = f"trainperf report: {score.benchmark or 'unknown benchmark'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(str(report.directory))}</p>",
        f'<h2 class="{"ok" if score.score_minutes is not None else "bad"}">'
        f"{e(score_line(score))}</h2>",
        _verdict_list(report),
        "<h2>Diagnosis per run</h2>",
        _diagnosis_table(report),
        "<h2>Loss and evaluation curves</h2>",
        _img(figures, "loss.png"),
        "<h2>Time to train</h2>",
        _img(figures, "time_to_train.png"),
        _runs_table(report),
        "<h2>Throughput per block</h2>",
        _img(figures, "throughput.png"),
        "<h2>System</h2>",
        f'<p class="note">from {e(report.system_source)}</p>',
        _table(("", "value"), report.system),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _img(figures: dict[str, bytes], name: str) -> str:
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<img alt="{name}" src="data:image/png;base64,{data}">'


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]] | list[tuple[str, str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict_list(report: Report) -> str:
    e, score = html.escape, report.score
    items = [ruleset_line(score)]
    if score.rcp is not None:
        items.append(f"RCP check: {score.rcp.verdict}: {score.rcp.message}")
    if report.band is not None:
        mean, std, low = report.band
        items.append(
            f"RCP samples to converge: mean {mean:,.0f} ± {std:,.0f} (min acceptable mean "
            f"{low:,.0f})"
        )
    if report.seeds is not None:
        items.append(f"seeds ({score.ruleset}): {report.seeds}")
    items.append(f"scaling factor {score.scaling_factor:.6g} ({score.scaling_source})")
    items += score.notes
    return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>"


def _diagnosis_table(report: Report) -> str:
    e = html.escape
    rows = []
    for run in report.runs:
        d = run.diagnosis
        css = "ok" if d.verdict == CONVERGED else "bad"
        reasons = "<br>".join(e(r) for r in d.reasons)
        notes = "<br>".join(e(n) for n in d.notes)
        rows.append(
            f'<tr><td>{e(run.file)}</td><td class="{css}">{e(d.verdict)}</td>'
            f'<td>{reasons}</td><td class="note">{notes}</td></tr>'
        )
    head = "<tr><th>run</th><th>diagnosis</th><th>why</th><th>notes</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _runs_table(report: Report) -> str:
    compliance = {r["file"]: r["compliance"] for r in score_to_dict(report.score)["runs"]}
    rows = []
    for run in report.runs:
        s = run.summary
        rate = run.throughput.samples_per_s if run.throughput is not None else None
        tokens = rate * run.seq_len if rate is not None and run.seq_len else None
        rows.append(
            (
                run.file,
                _fmt(s.seed, "d"),
                s.status or "no run_stop",
                _fmt(s.time_to_train_minutes, ".3f"),
                _fmt(s.samples_to_converge, ",d"),
                _fmt(s.final_eval, ".4f"),
                _compliance_word(compliance.get(run.file)),
                run_role(report.score, run),
                _fmt(rate, ".3f"),
                _fmt(tokens, ",.0f"),
            )
        )
    header = (
        "run",
        "seed",
        "status",
        "minutes",
        "samples to converge",
        "final eval",
        "compliance",
        "score",
        "training samples/s",
        "tokens/s",
    )
    return _table(header, rows) + f'<p class="note">{html.escape(THROUGHPUT)}</p>'


def _compliance_word(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not checked"
    if entry.get("passed"):
        return "passed"
    if entry.get("passed") is None:
        return "; ".join(entry.get("errors") or ["not checked"])
    if not entry.get("structural_errors"):
        return f"passed at scale {entry.get('scale')}"
    return "failed: " + entry["structural_errors"][0]


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report_to_dict(report: Report) -> dict[str, Any]:
    """The diagnoses and the paths written, JSON-ready (``trainperf report --json``)."""
    score = report.score
    return {
        "directory": str(report.directory),
        "html": str(report.html_path),
        "pngs": [str(p) for p in report.png_paths],
        "benchmark": score.benchmark,
        "score_minutes": score.score_minutes,
        "score": score_line(score),
        "ruleset": score.ruleset,
        "ruleset_reason": score.ruleset_reason,
        "rcp": None if score.rcp is None else score.rcp.verdict,
        "seeds": report.seeds,
        "runs": [_run_to_dict(score, run) for run in report.runs],
        "throughput": THROUGHPUT,
    }


def _run_to_dict(score: ScoreResult, run: RunReport) -> dict[str, Any]:
    rate = run.throughput
    return {
        "file": run.file,
        "time_to_train_minutes": run.summary.time_to_train_minutes,
        "training_samples_per_s": None if rate is None else rate.samples_per_s,
        "throughput_source": None if rate is None else rate.source,
        "score_role": run_role(score, run),
        **run.diagnosis.to_dict(),
    }
