"""``trainperf check``: the official compliance, RCP and seed checkers over one results folder.

Each verdict line carries the checkers' own messages. For our runs at a reduced scale (a
``config_<i>.json`` beside ``result_<i>.txt`` whose ``scale`` is not "full"), errors about the keys
of the benchmark's ``SCALE_DEPENDENT_KEYS`` are reported apart and do not fail the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainperf.mlperf.compliance import check_run_log, choose_ruleset
from trainperf.mlperf.rcp import check_rcp_directory
from trainperf.mlperf.seeds import check_seeds
from trainperf.results.parse import summarize_run
from trainperf.results.score import sort_naturally

__all__ = ["CheckReport", "check_directory"]


@dataclass
class CheckReport:
    passed: bool = True
    lines: list[str] = field(default_factory=list)


def check_directory(directory: Path, *, ruleset: str | None = None) -> CheckReport:
    """Run every check; ``passed`` is False on any structural failure."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a folder; give the folder holding result_*.txt")
    files = sort_naturally([p for p in directory.glob("result_*.txt") if p.is_file()])
    if not files:
        raise ValueError(f"no result_*.txt files in {directory}")
    names = {summarize_run(f).benchmark for f in files} - {None}
    benchmark = next(iter(names)) if len(names) == 1 else None
    ruleset = choose_ruleset(benchmark, files, directory=directory, given=ruleset).ruleset
    if ruleset is None:
        raise ValueError(
            f"no ruleset knows the benchmark of these logs ({', '.join(sorted(names)) or 'none'})"
        )
    report = CheckReport()
    scales = {_check_file(report, f, ruleset) for f in files} - {None, "full"}
    if scales:  # the RCPs are full-scale samples to converge: nothing to compare a tiny run with
        report.lines.append(f"RCP ({ruleset}): not applicable at scale {', '.join(sorted(scales))}")
    else:
        rcp = check_rcp_directory(directory, ruleset=ruleset)
        factor = f", factor {rcp.normalization_factor!r}" if rcp.passed else ""
        report.lines.append(f"RCP ({ruleset}): {rcp.verdict}: {rcp.message}{factor}")
        report.passed &= rcp.verdict in ("pass", "not-applicable")
    seeds = check_seeds(files, ruleset=ruleset)
    seed_line = "passed" if seeds.passed else "failed: " + "; ".join(seeds.reasons)
    report.lines.append(f"seeds: {seed_line}")
    report.passed &= seeds.passed
    return report


def _check_file(report: CheckReport, log: Path, ruleset: str) -> str | None:
    """Add the file's verdict to ``report``; return the run's trainperf scale (None if not ours)."""
    try:
        result = check_run_log(log, ruleset=ruleset)
    except ValueError as exc:
        report.lines.append(f"{log.name}: FAILED ({exc})")
        report.passed = False
        return None
    structural, scaled = result.structural_errors, result.scale_errors
    verdict = "passed" if not structural else "FAILED"
    line = f"{log.name}: {verdict} (compliance {ruleset})"
    line += "".join(f"\n  - {f.message}" for f in structural)
    if scaled:
        line += f"\n  scale {result.scale}: values that differ only because of scale:"
        line += "".join(f"\n  - {f.message}" for f in scaled)
    report.lines.append(line)
    report.passed &= not structural
    return result.scale
