"""``trainperf check``: the official compliance, RCP and seed checkers over one results folder.

One verdict per file, in one line: passed or FAILED against the ruleset that ``choose_ruleset``
infers from the logs (or --ruleset), with a one-line summary of each structural error. For our
runs at a reduced scale (a ``config_<i>.json`` beside ``result_<i>.txt`` whose ``scale`` is not
"full"), the errors about the benchmark's ``SCALE_DEPENDENT_KEYS`` are summarised as the keys
whose values differ only because of scale; they do not fail the check. The checkers' own text is
kept per file in ``details`` (``trainperf check --verbose``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainperf.mlperf.compliance import (
    ComplianceReport,
    RulesetChoice,
    check_run_log,
    choose_ruleset,
)
from trainperf.mlperf.rcp import check_rcp_directory
from trainperf.mlperf.seeds import check_seeds
from trainperf.results.parse import summarize_run
from trainperf.results.score import sort_naturally

__all__ = ["CheckReport", "check_directory"]

ERRORS_SHOWN = 3
"""Structural errors summarised in a file's verdict line; the rest are counted."""


@dataclass
class CheckReport:
    passed: bool = True
    lines: list[str] = field(default_factory=list)
    """One verdict line per file, then the RCP and the seed verdicts."""
    ruleset: RulesetChoice | None = None
    details: dict[int, list[str]] = field(default_factory=dict)
    """Per file's verdict (its index in ``lines``): the checker's own messages, errors then
    warnings (for --verbose)."""
    failed: list[str] = field(default_factory=list)
    """What failed: file names, "RCP", "seeds"."""

    @property
    def verdict(self) -> str:
        """The last line: "check passed" or "check FAILED: result_1.txt, seeds"."""
        return "check passed" if self.passed else f"check FAILED: {', '.join(self.failed)}"


def check_directory(directory: Path, *, ruleset: str | None = None) -> CheckReport:
    """Run every check; ``passed`` is False on any structural failure."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a folder; give the folder holding result_*.txt")
    files = sort_naturally([p for p in directory.glob("result_*.txt") if p.is_file()])
    if not files:
        raise ValueError(f"no result_*.txt files in {directory}")
    runs = [summarize_run(f) for f in files]
    names = {r.benchmark for r in runs} - {None}
    if len(names) > 1:
        raise ValueError(
            f"{directory} holds runs of several benchmarks ({', '.join(sorted(names))}); keep "
            "one benchmark per results folder"
        )
    benchmark = next(iter(names)) if names else None
    telling = [r.path for r in runs if r.converged] + [r.path for r in runs if not r.converged]
    choice = choose_ruleset(benchmark, telling, directory=directory, given=ruleset)
    if choice.ruleset is None:
        raise ValueError(
            f"no ruleset knows the benchmark of these logs ({', '.join(sorted(names)) or 'none'}); "
            f"{choice.reason}"
        )
    report = CheckReport(ruleset=choice)
    scales = {_check_file(report, f, choice.ruleset) for f in files} - {None, "full"}
    _check_rcp(report, directory, choice.ruleset, scales)
    seeds = check_seeds(files, ruleset=choice.ruleset)
    seed_line = "passed" if seeds.passed else "FAILED: " + "; ".join(seeds.reasons)
    report.lines.append(f"seeds: {seed_line}")
    _fail(report, "seeds", seeds.passed)
    return report


def _fail(report: CheckReport, what: str, passed: bool) -> None:
    if not passed:
        report.passed = False
        report.failed.append(what)


def _check_rcp(report: CheckReport, directory: Path, ruleset: str, scales: set[str]) -> None:
    if scales:  # the RCPs are full-scale samples to converge: nothing to compare a tiny run with
        report.lines.append(
            f"RCP ({ruleset}): not applicable at scale {', '.join(sorted(scales))} (the RCPs "
            "are full-scale samples to converge)"
        )
        return
    rcp = check_rcp_directory(directory, ruleset=ruleset)
    factor = f", factor {rcp.normalization_factor!r}" if rcp.passed else ""
    report.lines.append(f"RCP ({ruleset}): {rcp.verdict}: {rcp.message}{factor}")
    _fail(report, "RCP", rcp.verdict in ("pass", "not-applicable"))


def _check_file(report: CheckReport, log: Path, ruleset: str) -> str | None:
    """Add the file's verdict to ``report``; return the run's trainperf scale (None if not ours)."""
    try:
        result = check_run_log(log, ruleset=ruleset)
    except ValueError as exc:
        report.lines.append(f"{log.name}: FAILED ({exc})")
        _fail(report, log.name, False)
        return None
    report.details[len(report.lines)] = [f.message for f in result.errors + result.warnings]
    report.lines.append(file_verdict(result))
    _fail(report, log.name, not result.structural_errors)
    return result.scale


def file_verdict(result: ComplianceReport) -> str:
    """One line: "result_0.txt: passed (compliance 6.1.0); scale tiny: 5 values differ from the
    full-scale rules only because of scale: max_sequence_length, ..."."""
    structural, scaled = result.structural_errors, result.scale_errors
    verdict = "FAILED" if structural else "passed"
    line = f"{result.path.name}: {verdict} (compliance {result.ruleset})"
    if structural:
        shown = "; ".join(f.summary for f in structural[:ERRORS_SHOWN])
        more = len(structural) - ERRORS_SHOWN
        line += f": {shown}" + (f" (+{more} more, --verbose shows them)" if more > 0 else "")
    if scaled:
        keys = ", ".join(dict.fromkeys(f.key or "?" for f in scaled))
        line += (
            f"; scale {result.scale}: {len(scaled)} value{'s' if len(scaled) > 1 else ''} "
            f"differ{'' if len(scaled) > 1 else 's'} from the full-scale rules only because of "
            f"scale: {keys}"
        )
    if result.warnings:
        line += f"; {len(result.warnings)} checker warning{'s' if len(result.warnings) > 1 else ''}"
    return line
