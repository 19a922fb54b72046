"""Score a folder of result logs the way MLPerf Training does.

The rule [training_rules.adoc, "Scoring"]: drop the fastest and slowest runs and average the rest;
one non-converging run may stand for the slowest; more than one makes the result invalid. The
code that applies it is ``mlperf_logging/result_summarizer/result_summarizer.py``
(``_compute_strong_score_standalone``, ``_compute_olympic_average``); this module follows it and
multiplies by the RCP ``scaling_factor`` from ``scaling.json`` exactly as it does. It only reads
``scaling.json``: writing it is the RCP checker's job.

Like the official summarizer, a run whose log fails the compliance checker
(``trainperf.mlperf.compliance``) counts as dropped, as does one whose run_stop status is not
"success". The RCP check (``trainperf.mlperf.rcp``) gives the normalization factor: a folder's
``scaling.json`` wins when present (the summarizer reads it; the package checker wrote it), else the
factor of the RCP check is applied, which is what the package checker would have written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from trainperf.atomic import write_text_atomic
from trainperf.mlperf.compliance import (
    ComplianceReport,
    RulesetChoice,
    check_run_log,
    choose_ruleset,
    run_identity,
)
from trainperf.mlperf.rcp import RCPVerdict, check_rcp
from trainperf.results.parse import RunSummary, summarize_run
from trainperf.results.score_view import render_score, score_to_csv, score_to_dict
from trainperf.results.score_view import run_name as _name

__all__ = [
    "MAX_DROPPED_RUNS",
    "ScoreResult",
    "read_scaling_factor",
    "render_score",
    "required_run_count",
    "score_directory",
    "score_runs",
    "score_to_csv",
    "score_to_dict",
    "write_scaling",
    "sort_naturally",
]

MAX_DROPPED_RUNS = 1
"""result_summarizer's max_dropped_scores (4 only for unet3d, which trainperf does not run)."""
MIN_OLYMPIC_RUNS = 3
"""Fewer runs than this leave nothing after dropping the fastest and slowest."""

# Used only if mlperf_logging.benchmark_meta stops exposing _ALL_RESULT_FILE_COUNTS.
_FALLBACK_RUN_COUNTS: dict[str, int] = {
    "llama2_70b_lora": 10,
    "llama31_8b": 10,
    "llama31_405b": 3,
    "flux1": 10,
}


@dataclass
class ScoreResult:
    """The score of one benchmark folder (or of a list of runs) and how it was reached."""

    directory: Path | None
    benchmark: str | None
    runs: list[RunSummary]
    score_minutes: float | None
    """Olympic mean of the run times times ``scaling_factor``; None when there is no score."""
    provisional: bool
    """True when the score is not yet a submission score (too few runs, unknown benchmark)."""
    notes: list[str]
    scaling_factor: float
    valid: bool
    """False when the rules give no score (more than one failed run, mixed runs, bad scaling)."""
    method: str = ""
    """How the score was computed, e.g. "olympic mean of 8 of 10 runs"."""
    provisional_reasons: list[str] = field(default_factory=list)
    """Short reasons for ``provisional``, e.g. "fewer than 3 runs"."""
    ruleset: str | None = None
    """Ruleset of the compliance and RCP checks (None when they were not run)."""
    ruleset_reason: str = ""
    """Why that ruleset: given with --ruleset, the folder's round, or inferred from the logs."""
    scales: list[str] = field(default_factory=list)
    """trainperf scales of our runs (their config_<i>.json); empty for other submissions' logs."""
    compliance: dict[str, ComplianceReport | str] = field(default_factory=dict)
    """Per run file: the checker's report, or why it could not be checked."""
    rcp: RCPVerdict | None = None
    scaling_source: str = "none"
    """Where ``scaling_factor`` came from: "scaling.json", "rcp" or "none"."""
    counted: list[str] = field(default_factory=list)
    """Run files whose times the score averages (the rest: dropped fastest / slowest, failed)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Run files that cannot count (not converged, failed compliance) and why."""


def required_run_count(benchmark: str | None) -> int | None:
    """Number of result files a submission needs for ``benchmark`` (None if unknown)."""
    if benchmark is None:
        return None
    try:
        from mlperf_logging.benchmark_meta import _ALL_RESULT_FILE_COUNTS

        counts: dict[str, int] = _ALL_RESULT_FILE_COUNTS["training"]
    except (ImportError, KeyError):
        counts = _FALLBACK_RUN_COUNTS
    return counts.get(benchmark, _FALLBACK_RUN_COUNTS.get(benchmark))


def sort_naturally(paths: list[Path]) -> list[Path]:
    """Sort by name with digit runs compared as numbers (result_2 before result_10)."""

    def key(path: Path) -> list[tuple[int, int | str]]:
        parts = re.split(r"(\d+)", path.name)
        return [(0, int(p)) if p.isdigit() else (1, p) for p in parts]

    return sorted(paths, key=key)


def score_runs(
    runs: list[RunSummary],
    *,
    scaling_factor: float = 1.0,
    benchmark: str | None = None,
    dropped: dict[str, str] | None = None,
) -> ScoreResult:
    """Score run summaries with the official olympic-mean rule, times ``scaling_factor``.

    ``dropped`` maps run file names to the reason they do not count (e.g. failed compliance).
    """
    if not (math.isfinite(scaling_factor) and scaling_factor > 0):
        raise ValueError(
            f"scaling_factor must be a positive finite number, got {scaling_factor!r}; "
            "pass the value of scaling.json's 'scaling_factor' or leave the default 1.0"
        )
    result = ScoreResult(
        directory=None,
        benchmark=benchmark,
        runs=list(runs),
        score_minutes=None,
        provisional=False,
        notes=[],
        scaling_factor=scaling_factor,
        valid=True,
    )
    _check_consistency(result)
    _check_run_count(result)
    _compute_score(result, dropped or {})
    return result


def _check_consistency(result: ScoreResult) -> None:
    """Same benchmark and global batch size in every run, as the RCP checker requires."""
    names = {r.benchmark for r in result.runs if r.benchmark is not None}
    if result.benchmark is None and len(names) == 1:
        result.benchmark = names.pop()
    elif result.benchmark is None and len(names) > 1:
        result.valid = False
        result.notes.append(
            f"runs of different benchmarks in one folder ({', '.join(sorted(names))}); "
            "keep one benchmark per results folder"
        )
    elif result.benchmark is not None and names - {result.benchmark}:
        result.valid = False
        others = ", ".join(sorted(names - {result.benchmark}))
        result.notes.append(
            f"runs of other benchmarks ({others}) mixed with {result.benchmark}; "
            "keep one benchmark per results folder"
        )
    batches = sorted({r.global_batch_size for r in result.runs if r.global_batch_size is not None})
    if len(batches) > 1:
        result.valid = False
        result.notes.append(
            f"runs with different global_batch_size ({', '.join(map(str, batches))}); "
            "every run of a submission must use the same batch size"
        )


def _check_run_count(result: ScoreResult) -> None:
    n = len(result.runs)
    if n < MIN_OLYMPIC_RUNS:
        result.provisional = True
        result.provisional_reasons.append(f"fewer than {MIN_OLYMPIC_RUNS} runs")
        result.notes.append(
            f"fewer than {MIN_OLYMPIC_RUNS} runs: the score is the plain mean of the converged "
            "runs, not an olympic mean"
        )
    required = required_run_count(result.benchmark)
    if result.benchmark is None:
        result.provisional = True
        result.provisional_reasons.append("benchmark unknown")
        result.notes.append(
            "no submission_benchmark in the logs, so the required number of runs is unknown"
        )
    elif required is None:
        result.provisional = True
        result.provisional_reasons.append(f"{result.benchmark} has no known run count")
        result.notes.append(f"no required run count is known for benchmark {result.benchmark!r}")
    elif n < required:
        result.provisional = True
        result.provisional_reasons.append(f"{n} of {required} required runs")
        result.notes.append(
            f"{n} of the {required} runs that {result.benchmark} requires; the score is "
            f"provisional until all {required} are in"
        )
    elif n > required:
        result.notes.append(
            f"{n} runs, but a {result.benchmark} submission holds exactly {required} "
            "result files; submit the ones you choose under the rules' M>N procedure"
        )


def _compute_score(result: ScoreResult, dropped: dict[str, str]) -> None:
    runs = result.runs
    ok = [r for r in runs if _counts(r) and _name(r) not in dropped]
    ranked = sorted(ok, key=lambda r: r.time_to_train_minutes or 0.0)  # _counts: never None
    times = [r.time_to_train_minutes or 0.0 for r in ranked]
    failed = [r for r in runs if r not in ok]
    result.excluded = {_name(r): dropped.get(_name(r)) or _failure(r) for r in failed}
    if failed:
        result.notes.append(
            "dropped: "
            + ", ".join(f"{_name(r)} ({dropped.get(_name(r)) or _failure(r)})" for r in failed)
        )
    if not runs:
        result.valid = False
        result.notes.append("no runs to score")
        return
    if len(failed) > MAX_DROPPED_RUNS:
        result.valid = False
        result.notes.append(
            f"invalid: {len(failed)} of {len(runs)} runs did not converge or were dropped and "
            f"at most {MAX_DROPPED_RUNS} may; rerun until no more than {MAX_DROPPED_RUNS} fails"
        )
        return
    if not times:
        result.valid = False
        result.notes.append("no converged run to score")
        return
    if len(runs) < MIN_OLYMPIC_RUNS:
        chosen = ranked
        result.method = f"mean of {len(times)} converged run{'s' if len(times) > 1 else ''}"
    else:
        # _compute_olympic_average: a failed run stands for the slowest, so drop one fewer on top.
        chosen = ranked[1 : len(ranked) - (MAX_DROPPED_RUNS - len(failed))]
        result.method = f"olympic mean of {len(chosen)} of {len(runs)} runs"
    if not result.valid:
        return
    countable = [r.time_to_train_minutes or 0.0 for r in chosen]
    result.counted = [_name(r) for r in chosen]
    result.score_minutes = sum(countable) / len(countable) * result.scaling_factor
    if result.scaling_factor != 1.0:
        result.method += f" x scaling factor {result.scaling_factor:.6g}"


def _counts(run: RunSummary) -> bool:
    return run.converged and run.time_to_train_minutes is not None


def _failure(run: RunSummary) -> str:
    if run.run_start_ms is None:
        return "no run_start"
    if run.run_stop_ms is None:
        return "no run_stop"
    if run.status is None:
        return "run_stop without status"
    if run.status == "success":
        return "run_stop before run_start"
    return f"status {run.status}"


def read_scaling_factor(directory: Path) -> tuple[float, str | None]:
    """(factor, problem) from ``directory/scaling.json``; (1.0, None) when the file is absent.

    Only reads the file. A file that exists but cannot be used gives (1.0, reason).
    """
    path = Path(directory) / "scaling.json"
    if not path.exists():
        return 1.0, None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return 1.0, f"{path} cannot be read as JSON ({exc})"
    factor = content.get("scaling_factor") if isinstance(content, dict) else None
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        return 1.0, f'{path} has no numeric "scaling_factor" (expected {{"scaling_factor": f}})'
    if not (math.isfinite(factor) and factor > 0):
        return 1.0, f"{path} has scaling_factor {factor!r}; it must be a positive number"
    return float(factor), None


def score_directory(
    path: Path, *, ruleset: str | None = None, compliance: bool = True, rcp: bool = True
) -> ScoreResult:
    """Score every ``result_*.txt`` in ``path`` (natural order) the official way.

    ``ruleset`` (default: inferred from the logs by ``choose_ruleset``) selects the compliance
    and RCP rules; ``compliance=False`` / ``rcp=False`` skip those checks (e.g. for hand-made
    logs).
    """
    directory = Path(path)
    files = _result_files(directory)
    runs = [summarize_run(f) for f in files]
    names = {r.benchmark for r in runs if r.benchmark is not None}
    benchmark = next(iter(names)) if len(names) == 1 else None
    if compliance or rcp:  # a finished run tells the ruleset best
        telling = [r.path for r in runs if r.converged] + [r.path for r in runs if not r.converged]
        choice = choose_ruleset(benchmark, telling, directory=directory, given=ruleset)
    else:
        choice = RulesetChoice(ruleset, "given" if ruleset else "none needed: no checks asked for")
    reports = _check_compliance(files, choice.ruleset) if compliance else {}
    dropped = {n: _compliance_reason(r) for n, r in reports.items() if _failed(r)}
    scales = sorted({s for f in files if (s := run_identity(f)[1]) is not None})
    reduced = [s for s in scales if s != "full"]
    verdict = _check_rcp(runs, benchmark, choice.ruleset) if rcp and not reduced else None
    factor, problem = read_scaling_factor(directory)
    source = "scaling.json" if (directory / "scaling.json").exists() else "none"
    if source == "none" and verdict is not None and verdict.passed:
        factor, source = verdict.normalization_factor, "rcp"
    result = score_runs(runs, scaling_factor=factor, dropped=dropped)
    result.directory, result.compliance, result.scales = directory, reports, scales
    result.ruleset, result.ruleset_reason = choice.ruleset, choice.reason
    result.rcp, result.scaling_source = verdict, source
    _add_notes(result, reduced, problem)
    return result


def _result_files(directory: Path) -> list[Path]:
    hint = "point trainperf score at a folder written by trainperf run --results DIR"
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory; {hint}")
    files = sort_naturally([p for p in directory.glob("result_*.txt") if p.is_file()])
    if not files:
        raise ValueError(f"no result_*.txt files in {directory}; {hint}")
    return files


def _add_notes(result: ScoreResult, reduced: list[str], problem: str | None) -> None:
    if reduced:  # a score of its own, never one to set beside MLPerf's
        result.provisional = True
        result.provisional_reasons.append(f"scale {', '.join(reduced)}")
        result.notes.append(
            f"scale {', '.join(reduced)}: RCP check not applicable (the RCPs are full-scale "
            "samples to converge); compliance judged on structure (trainperf check names the "
            "values that differ only because of scale)"
        )
    verdict = result.rcp
    if verdict is not None and verdict.verdict in ("fail", "missing RCP"):
        # the package checker rejects it: a score, but not one MLPerf would accept as it is
        result.provisional = True
        result.provisional_reasons.append(f"RCP check {verdict.verdict}")
        result.notes.append(f"RCP check {verdict.verdict}: {_rcp_failure(verdict)}")
    if problem is not None:
        result.valid = False
        result.score_minutes = None
        result.notes.append(
            f"{problem}; the official score is multiplied by this factor, so there is no score "
            "until scaling.json is fixed or rewritten with trainperf score --write-scaling"
        )


def _rcp_failure(verdict: RCPVerdict) -> str:
    low, mean = verdict.min_acceptable_mean, verdict.submission_mean
    if verdict.verdict != "fail" or low is None or mean is None:
        return verdict.message
    return (
        f"the runs' olympic mean samples to converge, {mean:,.0f}, is below the minimum "
        f"acceptable mean of the reference, {low:,.0f} ({verdict.message})"
    )


def _check_compliance(files: list[Path], ruleset: str | None) -> dict[str, ComplianceReport | str]:
    if ruleset is None:
        return {f.name: "not checked: no ruleset knows the logs' benchmark" for f in files}
    reports: dict[str, ComplianceReport | str] = {}
    for f in files:
        try:
            reports[f.name] = check_run_log(f, ruleset=ruleset)
        except ValueError as exc:
            reports[f.name] = f"not checked: {exc}"
        except Exception as exc:  # the official checker raising on a garbled log
            reports[f.name] = f"checker crashed: {type(exc).__name__}: {exc}"
    return reports


def _failed(report: ComplianceReport | str) -> bool:
    # A reduced-scale run of ours counts when only its scale-dependent values differ.
    return (
        isinstance(report, ComplianceReport)
        and bool(report.structural_errors)
        or (isinstance(report, str) and report.startswith("checker crashed"))
    )


def _compliance_reason(report: ComplianceReport | str) -> str:
    if isinstance(report, str):
        return report
    errors = report.structural_errors
    first = errors[0].message
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"fails compliance {report.ruleset}: {first}{more}"


def _check_rcp(runs: list[RunSummary], benchmark: str | None, ruleset: str | None) -> RCPVerdict:
    batches = {r.global_batch_size for r in runs}
    if benchmark is None or ruleset is None or len(batches) != 1 or None in batches:
        return RCPVerdict("not-applicable", "one benchmark and one global_batch_size needed")
    samples = [r.samples_to_converge if r.converged else None for r in runs]
    return check_rcp(benchmark=benchmark, ruleset=ruleset, gbs=batches.pop(), samples=samples)


def write_scaling(directory: Path, factor: float) -> Path:
    """Write ``{"scaling_factor": factor}`` to ``directory/scaling.json`` atomically."""
    assert math.isfinite(factor) and factor > 0, factor
    target = Path(directory) / "scaling.json"
    write_text_atomic(target, json.dumps({"scaling_factor": factor}))
    return target
