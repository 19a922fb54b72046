"""Showing a ``trainperf.results.score.ScoreResult``: the table and notes of ``trainperf score``,
its JSON and its CSV."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainperf.mlperf.compliance import ComplianceReport
from trainperf.mlperf.rcp import RCPVerdict

if TYPE_CHECKING:
    from trainperf.results.parse import RunSummary
    from trainperf.results.score import ScoreResult

__all__ = [
    "CSV_COLUMNS",
    "render_score",
    "ruleset_line",
    "run_name",
    "score_line",
    "score_to_csv",
    "score_to_dict",
]


def run_name(run: RunSummary) -> str:
    """The run's file name ("<run>" for a summary without a path)."""
    return run.path.name if run.path is not None else "<run>"


def _compliance_dict(report: ComplianceReport | str | None) -> dict[str, Any] | None:
    if report is None:
        return None
    if isinstance(report, str):
        return {"passed": None, "ruleset": None, "errors": [report], "warnings": []}
    return {
        "passed": report.passed,
        "ruleset": report.ruleset,
        "scale": report.scale,
        "structural_errors": [f.message for f in report.structural_errors],
        "scale_errors": [f.message for f in report.scale_errors],
        "warnings": [f.message for f in report.warnings],
    }


def _compliance_word(report: ComplianceReport | str | None) -> str:
    if report is None:
        return "-"
    if isinstance(report, str):
        return "not checked"
    if report.passed:
        return "passed"
    if not report.structural_errors:
        return f"passed at scale {report.scale}"
    return "failed"


def score_to_dict(result: ScoreResult) -> dict[str, Any]:
    """A JSON-ready view of a ``ScoreResult``."""
    return {
        "directory": None if result.directory is None else str(result.directory),
        "benchmark": result.benchmark,
        "score_minutes": result.score_minutes,
        "provisional": result.provisional,
        "provisional_reasons": list(result.provisional_reasons),
        "valid": result.valid,
        "method": result.method,
        "scaling_factor": result.scaling_factor,
        "scaling_source": result.scaling_source,
        "ruleset": result.ruleset,
        "ruleset_reason": result.ruleset_reason,
        "scales": list(result.scales),
        "rcp": None if result.rcp is None else result.rcp.to_dict(),
        "notes": list(result.notes),
        "runs": [
            {
                "file": run_name(run),
                "status": run.status,
                "converged": run.converged,
                "time_to_train_minutes": run.time_to_train_minutes,
                "samples_to_converge": run.samples_to_converge,
                "final_eval": run.final_eval,
                "seed": run.seed,
                "global_batch_size": run.global_batch_size,
                "problems": list(run.problems),
                "compliance": _compliance_dict(result.compliance.get(run_name(run))),
            }
            for run in result.runs
        ],
    }


CSV_COLUMNS = (
    "file",
    "status",
    "converged",
    "compliance",
    "minutes",
    "samples_to_converge",
    "final_eval",
    "seed",
    "scaling_factor",
    "rcp",
)


def score_to_csv(result: ScoreResult, stream: Any) -> None:
    """One CSV row per run, then a row whose file is "score"."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in result.runs:
        writer.writerow(
            [
                run_name(run),
                run.status or "",
                run.converged,
                _compliance_word(result.compliance.get(run_name(run))),
                _csv(run.time_to_train_minutes),
                _csv(run.samples_to_converge),
                _csv(run.final_eval),
                _csv(run.seed),
                "",
                "",
            ]
        )
    rcp = "" if result.rcp is None else result.rcp.verdict
    writer.writerow(
        [
            "score",
            "valid" if result.valid else "invalid",
            "",
            "",
            _csv(result.score_minutes),
            "",
            "",
            "",
            result.scaling_factor,
            rcp,
        ]
    )


def _csv(value: object) -> str:
    return "" if value is None else str(value)


def render_score(result: ScoreResult, console: Console) -> None:
    """Print a table of the runs, the notes and the score line."""
    title = escape(f"{result.benchmark or 'unknown benchmark'}: {result.directory or 'runs'}")
    table = Table(title=title)
    for name in ("file", "status", "minutes", "samples to converge", "final eval"):
        table.add_column(name, justify="left" if name in ("file", "status") else "right")
    table.add_column("compliance")
    for run in result.runs:
        status = run.status or ("no run_stop" if run.run_stop_ms is None else "?")
        style = "green" if run.converged else "red"
        table.add_row(
            escape(run_name(run)),
            f"[{style}]{escape(status)}[/{style}]",
            _fmt(run.time_to_train_minutes, ".3f"),
            _fmt(run.samples_to_converge, "d"),
            _fmt(run.final_eval, ".4f"),
            _compliance_word(result.compliance.get(run_name(run))),
        )
    console.print(table)
    if result.ruleset is not None:
        console.print(f"  {escape(ruleset_line(result))}")
    if result.rcp is not None:
        console.print(f"  RCP ({result.ruleset}): {escape(_rcp_line(result.rcp))}")
    for note in result.notes:
        console.print(f"  - {escape(note)}")
    if result.score_minutes is None:
        console.print(f"[bold red]{escape(score_line(result))}[/bold red] (see the notes above)")
    else:
        console.print(f"[bold]{escape(score_line(result))}[/bold]")


def ruleset_line(result: ScoreResult) -> str:
    """ "ruleset 6.0.0 (inferred from the logs: ...)"."""
    reason = f" ({result.ruleset_reason})" if result.ruleset_reason else ""
    return f"ruleset {result.ruleset or 'none'}{reason}"


def score_line(result: ScoreResult) -> str:
    """ "Score: 23.527 min (olympic mean of 8 of 10 runs x scaling factor 1.00337)"."""
    label = "Score"
    if result.provisional:
        label += f" (provisional: {', '.join(result.provisional_reasons)})"
    if result.score_minutes is None:
        return f"{label}: none"
    return f"{label}: {result.score_minutes:.3f} min ({result.method})"


def _rcp_line(v: RCPVerdict) -> str:
    line = f"{v.verdict}: {v.message}"
    if v.rcp_mean is not None and v.min_acceptable_mean is not None:
        line += (
            f"; RCP mean {v.rcp_mean:.2f}, min acceptable mean {v.min_acceptable_mean:.2f}, "
            f"submission mean {v.submission_mean:.2f}, factor {v.normalization_factor:.6g}"
        )
    return line


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
