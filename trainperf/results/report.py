"""``trainperf report DIR``: one self-contained HTML file (and the same figures as PNG files) on a
folder of result logs, ours or a published submission's.

It holds the train loss and eval curves of every run against the target and the RCP band of
samples to converge, each run's time to train (the runs the score drops marked, as
``trainperf.results.score`` decides), throughput per block, the score with the compliance and RCP
verdicts, the system description, and a diagnosis of each run (``trainperf.results.diagnose``).
Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks import BENCHMARKS
from trainperf.mlperf.rcp import rcp_band
from trainperf.results.diagnose import (
    CONVERGED,
    UNREADABLE,
    Diagnosis,
    RunCurves,
    diagnose_run,
    extract_curves,
)
from trainperf.results.parse import MLLogEvent, RunSummary, parse_log, summarize_events
from trainperf.results.score import ScoreResult, score_directory, score_to_dict, sort_naturally

__all__ = ["Block", "Report", "RunReport", "build_report", "report_to_dict", "find_system_file"]

DPI = 80
FIGSIZE = (10.0, 3.6)


@dataclass
class Block:
    """One training block (block_start .. block_stop) and its throughput."""

    end_samples: int | None
    """Samples trained at the block's end (cumulative)."""
    samples: int | None
    """Samples in the block."""
    seconds: float
    samples_per_s: float | None
    source: str
    """"logged" (a throughput field) or "timestamps" (block size / block duration)."""


@dataclass
class RunReport:
    file: str
    summary: RunSummary
    diagnosis: Diagnosis
    curves: RunCurves
    blocks: list[Block]
    config: dict[str, Any] | None
    seq_len: int | None


@dataclass
class Report:
    directory: Path
    out_dir: Path
    html_path: Path
    png_paths: list[Path]
    runs: list[RunReport]
    score: ScoreResult
    system: list[tuple[str, str]]
    system_source: str
    band: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)


def build_report(
    directory: Path,
    *,
    out: Path | None = None,
    ruleset: str | None = None,
    compliance: bool = True,
    rcp: bool = True,
) -> Report:
    """Diagnose, score and plot every ``result_*.txt`` of ``directory``; write the report.

    ``ruleset``, ``compliance`` and ``rcp`` go to ``score_directory``. Raises ``ValueError``
    (one line) when the folder is missing, holds no result logs, or holds no readable one; a
    single unreadable log among good ones is diagnosed "unreadable".
    """
    directory = Path(directory)
    files = _result_files(directory)
    runs = [_read_run(f) for f in files]
    if all(r.diagnosis.verdict == UNREADABLE for r in runs):
        first = runs[0].diagnosis.reasons[0]
        raise ValueError(
            f"no readable result log in {directory} ({len(runs)} unreadable; {files[0].name}: "
            f"{first}); point trainperf report at a folder of complete :::MLLOG result logs"
        )
    score = score_directory(directory, ruleset=ruleset, compliance=compliance, rcp=rcp)
    out_dir = Path(out) if out is not None else directory / "report"
    _make_dir(out_dir)
    system, source = describe_system(directory, runs)
    report = Report(directory, out_dir, out_dir / "report.html", [], runs, score, system, source)
    report.band = _band(score, runs)
    figures = _figures(report)
    for name, png in figures.items():
        report.png_paths.append(_write_atomic(out_dir / name, png))
    _write_atomic(report.html_path, render_html(report, figures).encode("utf-8"))
    return report


def _result_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(
            f"{directory} is not a folder; give the folder holding result_*.txt "
            "(trainperf run --results DIR, or a published results/<system>/<benchmark> folder)"
        )
    files = sort_naturally([p for p in directory.glob("result_*.txt") if p.is_file()])
    if not files:
        raise ValueError(f"no result_*.txt files in {directory}; nothing to report")
    return files


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"cannot create the report folder {out_dir}: {exc.strerror or exc}; "
            "choose a writable one with --out PATH"
        ) from None


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write under a temporary name in the same folder, then rename (never half-written)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ValueError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable folder with --out"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- reading the runs -------------------------------------------------------------------------


def _read_run(path: Path) -> RunReport:
    parsed = parse_log(path)
    summary = summarize_events(parsed.events, path=path, errors=parsed.errors)
    config = _read_config(path)
    diagnosis = diagnose_run(parsed.events, errors=parsed.errors, config=config, summary=summary)
    curves = extract_curves(parsed.events, global_batch_size=summary.global_batch_size)
    seq_len = _seq_len(curves, config, summary.benchmark)
    return RunReport(path.name, summary, diagnosis, curves, _blocks(parsed.events), config, seq_len)


def _read_config(log: Path) -> dict[str, Any] | None:
    """Our ``config_<i>.json`` beside ``result_<i>.txt``; None for published logs."""
    path = log.with_name(log.name.replace("result_", "config_", 1)).with_suffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _seq_len(curves: RunCurves, config: dict[str, Any] | None, benchmark: str | None) -> int | None:
    logged = curves.hyper.get(C.MAX_SEQUENCE_LENGTH)
    if isinstance(logged, int) and logged > 0:
        return logged
    if config is not None:
        return (config.get("train") or {}).get("seq_len")
    module = BENCHMARKS.get(benchmark or "")
    return getattr(module, "MAX_SEQUENCE_LENGTH", None)


def _blocks(events: list[MLLogEvent]) -> list[Block]:
    """Blocks from block_start / block_stop pairs, with their throughput.

    Two conventions for samples_count: cumulative (ours, v4.x: start 1536, stop 1920) and the
    v5.1 mlperf_common one where both carry the block's size (start 384, stop 384). A logged
    ``throughput`` (tracked_stats, samples/s) inside a block wins over the timestamps.
    """
    blocks: list[Block] = []
    start: MLLogEvent | None = None
    logged: float | None = None
    trained = 0
    for event in events:
        if event.key == C.BLOCK_START:
            start, logged = event, None
        elif event.key == "tracked_stats" and isinstance(event.value, dict):
            value = event.value.get("throughput")
            if isinstance(value, int | float) and not isinstance(value, bool):
                logged = float(value)
        elif event.key == C.BLOCK_STOP and start is not None:
            size = _block_size(start, event)
            trained += size or 0
            seconds = (event.time_ms - start.time_ms) / 1000
            rate = logged if logged is not None else (size / seconds if size and seconds else None)
            source = "logged" if logged is not None else "timestamps"
            blocks.append(Block(trained if size else None, size, seconds, rate, source))
            start = None
    return blocks


def _block_size(start: MLLogEvent, stop: MLLogEvent) -> int | None:
    a, b = start.metadata.get(C.SAMPLES_COUNT), stop.metadata.get(C.SAMPLES_COUNT)
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b)):
        return None
    if a == b:  # v5.1: both are the block's size
        return int(b) or None
    return int(b - a) if b > a else None


# --- system description -----------------------------------------------------------------------


def find_system_file(directory: Path) -> Path | None:
    """``<org>/systems/<system>.json`` for a published ``<org>/results/<system>/<benchmark>``."""
    directory = Path(directory).resolve()
    for results in (directory.parent, directory):  # DIR = .../results/<system>[/<benchmark>]
        if results.parent.name == "results":
            candidate = results.parent.parent / "systems" / f"{results.name}.json"
            if candidate.is_file():
                return candidate
    return None


def describe_system(directory: Path, runs: list[RunReport]) -> tuple[list[tuple[str, str]], str]:
    """(rows, where they come from): the systems JSON, the logs' submission keys, our config."""
    rows: list[tuple[str, str]] = []
    sources = []
    path = find_system_file(directory)
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            rows.append(("systems file", f"{path.name} unreadable: {exc}"))
        else:
            rows += [(k, _flat(v)) for k, v in data.items() if _flat(v)]
        sources.append(str(path))
    readable = [r for r in runs if r.diagnosis.verdict != UNREADABLE] or runs
    hyper = readable[0].curves.hyper
    keys = (
        C.SUBMISSION_ORG,
        C.SUBMISSION_PLATFORM,
        C.SUBMISSION_DIVISION,
        C.SUBMISSION_STATUS,
        C.GLOBAL_BATCH_SIZE,
        C.GRADIENT_ACCUMULATION_STEPS,
        C.MAX_SEQUENCE_LENGTH,
        C.TENSOR_PARALLELISM,
        C.PIPELINE_PARALLELISM,
        C.CONTEXT_PARALLELISM,
        C.MICRO_BATCH_SIZE,
        C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR,
    )
    log_rows = [(f"log: {k}", _flat(hyper[k])) for k in keys if k in hyper]
    if log_rows:
        rows += log_rows
        sources.append(f"{readable[0].file} (MLLOG)")
    config = readable[0].config
    if config is not None:
        rows += _config_rows(config)
        differ = [r.file for r in runs if r.config is not None and r.config != config]
        if differ:
            rows.append(("config differs in", ", ".join(differ)))
        sources.append(readable[0].file.replace("result_", "config_").replace(".txt", ".json"))
    return rows, "; ".join(sources) or "nothing describes the system"


def _config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("config: benchmark / scale", f"{config.get('benchmark')} / {config.get('scale')}")]
    for section in ("model", "train", "parallel", "data"):
        if values := config.get(section):
            rows.append(
                (f"config: {section}", ", ".join(f"{k}={_flat(v)}" for k, v in values.items()))
            )
    return rows


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_flat(v) for v in value if _flat(v))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items() if _flat(v))
    return "" if value is None else str(value)


def _band(score: ScoreResult, runs: list[RunReport]) -> tuple[float, float, float] | None:
    batches = {r.summary.global_batch_size for r in runs} - {None}
    if score.benchmark is None or score.ruleset is None or len(batches) != 1:
        return None
    scales = {(r.config or {}).get("scale", "full") for r in runs}
    if scales != {"full"}:
        return None  # the RCPs are full-scale samples to converge
    return rcp_band(benchmark=score.benchmark, ruleset=score.ruleset, gbs=batches.pop())


# --- figures ----------------------------------------------------------------------------------


def _figures(report: Report) -> dict[str, bytes]:
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
    module = BENCHMARKS.get(report.score.benchmark or "")
    return getattr(module, "EVAL_ACCURACY_TARGET", None)


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
        title=f"throughput per block ({how})",
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


def score_line(score: ScoreResult) -> str:
    """The score as ``trainperf score`` prints it: "Score: 23.527 min (olympic mean of ...)"."""
    label = "Score"
    if score.provisional:
        label += f" (provisional: {', '.join(score.provisional_reasons)})"
    if score.score_minutes is None:
        return f"{label}: none"
    return f"{label}: {score.score_minutes:.3f} min ({score.method})"


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
    items = [f"ruleset: {score.ruleset or 'none'}"]
    if score.rcp is not None:
        items.append(f"RCP check: {score.rcp.verdict}: {score.rcp.message}")
    if report.band is not None:
        mean, std, low = report.band
        items.append(
            f"RCP samples to converge: mean {mean:,.0f} ± {std:,.0f} (min acceptable mean "
            f"{low:,.0f})"
        )
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
        rates = [b.samples_per_s for b in run.blocks if b.samples_per_s is not None]
        rate = sum(rates) / len(rates) if rates else None
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
        "samples/s",
        "tokens/s",
    )
    return _table(header, rows)


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
        "rcp": None if score.rcp is None else score.rcp.verdict,
        "runs": [
            {
                "file": run.file,
                "time_to_train_minutes": run.summary.time_to_train_minutes,
                "score_role": run_role(score, run),
                **run.diagnosis.to_dict(),
            }
            for run in report.runs
        ],
    }
