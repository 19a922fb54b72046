"""Writing a ``trainperf report``: the HTML page that embeds the figures (``report_figures``) as
base64 PNG, and the JSON view. ``report.py`` reads the runs."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from trainperf.results.curves import THROUGHPUT
from trainperf.results.diagnose import CONVERGED
from trainperf.results.score import ScoreResult, score_to_dict
from trainperf.results.score_view import ruleset_line, score_line

if TYPE_CHECKING:
    from trainperf.results.report import Report, RunReport

__all__ = ["render_html", "report_to_dict", "run_role", "score_line"]


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
