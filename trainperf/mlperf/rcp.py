"""The official RCP (reference convergence point) check, used as a library.

All the statistics come from ``mlperf_logging/rcp_checker/rcp_checker.py``: the olympic mean and
population stdev of each reference, the t-test bisection for the minimum acceptable mean, pruning
(the default ``pruned_rcps`` pass), linear interpolation between batch sizes and the llama31_405b
one-evaluation allowance (``Min Epochs - 46080``). This module only picks which reference applies,
the way ``rcp_checker.check_directory`` does, and never touches ``scaling.json``: the official
``_eval_submission_record`` deletes it (even with ``set_scaling=False`` it removes
``'' + '/scaling.json'``), so the two methods that write or delete it are disabled here.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlperf_logging.rcp_checker import rcp_checker

__all__ = [
    "NOT_CONVERGED",
    "RCPVerdict",
    "check_rcp",
    "check_rcp_directory",
    "rcp_band",
    "rcp_rulesets",
]

NOT_CONVERGED = 1e9
"""What the official checker uses as the samples of a run that did not converge."""

PASS, FAIL, MISSING, NOT_APPLICABLE = "pass", "fail", "missing RCP", "not-applicable"


@dataclass
class RCPVerdict:
    """Outcome of the RCP check of one folder of runs."""

    verdict: str
    """'pass', 'fail', 'missing RCP' or 'not-applicable'."""
    message: str
    """The official checker's message ('RCP found', 'RCP Interpolation', 'Missing RCP, ...')."""
    benchmark: str | None = None
    ruleset: str | None = None
    global_batch_size: int | None = None
    rcp_batch_size: int | None = None
    """Batch size of the reference used (the submission's when interpolated)."""
    rcp_mean: float | None = None
    """Olympic mean of the reference's samples to converge."""
    min_acceptable_mean: float | None = None
    """RCP mean / max speedup: the lowest olympic mean of the submission's samples that passes."""
    max_speedup: float | None = None
    submission_mean: float | None = None
    """Olympic mean of the submission's samples to converge."""
    normalization_factor: float = 1.0
    """RCP mean / submission mean when it passes faster than the RCP mean, else 1.0."""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ReadOnlyChecker(rcp_checker.RCP_Checker):
    """The official checker with its scaling.json writer and remover switched off."""

    def _set_results_scaling(self, scale_factor: float, results_dir: str) -> None:
        pass

    def _reset_results_scaling(self, results_dir: str) -> None:
        pass


@contextmanager
def _quiet() -> Iterator[None]:
    """The checker reports through the root logger; keep that out of trainperf's output."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def rcp_rulesets(benchmark: str, *, usage: str = "training") -> list[str]:
    """Rulesets whose RCP file exists for ``benchmark``, oldest first."""
    root = Path(rcp_checker.__file__).parent
    found = [p.parent.name.split("_", 1)[1] for p in root.glob(f"{usage}_*/rcps_{benchmark}.json")]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def check_rcp(
    *,
    benchmark: str,
    ruleset: str,
    gbs: int,
    samples: Sequence[float | None],
    rcp_pass: str = "pruned_rcps",
    usage: str = "training",
) -> RCPVerdict:
    """RCP verdict for runs of ``benchmark`` at global batch size ``gbs``.

    ``samples`` holds each run's samples to converge; None for a run that did not converge.
    """
    verdict = RCPVerdict(NOT_APPLICABLE, "", benchmark, ruleset, gbs)
    reason = _not_applicable(benchmark, ruleset, samples, usage)
    if reason is not None:
        verdict.message = reason
        return verdict
    expected = rcp_checker.submission_runs[usage][benchmark]
    if len(samples) != expected:
        verdict.notes.append(
            f"{len(samples)} runs where a {benchmark} submission has {expected}; the t-test "
            f"still assumes {expected}"
        )
    subm = [NOT_CONVERGED if s is None else float(s) for s in samples]
    if sum(s >= NOT_CONVERGED for s in subm) > 1:
        verdict.verdict, verdict.message = FAIL, "Insufficient convergence"
        return verdict
    with _quiet():
        checker = _ReadOnlyChecker(usage, ruleset, benchmark, False)
        _evaluate(checker, verdict, subm, rcp_pass)
    return verdict


def _not_applicable(
    benchmark: str, ruleset: str, samples: Sequence[float | None], usage: str
) -> str | None:
    if benchmark not in rcp_checker.submission_runs.get(usage, {}):
        return f"the RCP checker knows no benchmark {benchmark!r}"
    if ruleset not in rcp_rulesets(benchmark, usage=usage):
        known = ", ".join(rcp_rulesets(benchmark, usage=usage)) or "none"
        return f"no RCPs for {benchmark} in ruleset {ruleset} (rulesets with RCPs: {known})"
    if len(samples) < 3:
        return f"{len(samples)} run(s): the RCP check needs at least 3 for an olympic mean"
    return None


def _evaluate(
    checker: rcp_checker.RCP_Checker, verdict: RCPVerdict, subm: list[float], rcp_pass: str
) -> None:
    """The record choice of ``rcp_checker.check_directory``, then its own evaluation."""
    bs = verdict.global_batch_size
    record = checker._find_rcp(bs, rcp_pass)
    low = checker._find_top_min_rcp(bs, rcp_pass)
    high = checker._find_bottom_max_rcp(bs, rcp_pass)
    if record is not None:
        message = "RCP found"
    elif low is not None and high is not None:
        message = "RCP Interpolation"
        _, record = checker._create_interp_rcp(bs, low, high)
    elif low is not None:
        verdict.verdict = MISSING
        verdict.message = f"Missing RCP, please submit RCP with BS = {bs}"
        return
    elif high is not None:
        record = checker._find_min_rcp(rcp_pass)
        message = "RCP not found but slower convergence on smaller batch size"
    else:
        verdict.message = "Cannot find any RCPs"
        return
    ok, factor = checker._eval_submission_record(record, list(subm), "")
    verdict.rcp_batch_size = int(record["BS"])
    verdict.rcp_mean = float(record["RCP Mean"])
    verdict.max_speedup = float(record["Max Speedup"])
    verdict.min_acceptable_mean = verdict.rcp_mean / verdict.max_speedup
    ordered = sorted(subm)
    verdict.submission_mean = sum(ordered[1:-1]) / (len(ordered) - 2)
    if ok:
        verdict.verdict, verdict.message = PASS, message
        verdict.normalization_factor = float(factor)
    elif message.startswith("RCP not found"):
        verdict.verdict, verdict.message = MISSING, f"Missing RCP, please submit RCP with BS = {bs}"
    else:
        verdict.verdict, verdict.message = FAIL, message
    assert math.isfinite(verdict.normalization_factor)


def rcp_band(
    *,
    benchmark: str,
    ruleset: str,
    gbs: int,
    rcp_pass: str = "pruned_rcps",
    usage: str = "training",
) -> tuple[float, float, float] | None:
    """(RCP mean, RCP stdev, min acceptable mean) of samples to converge at ``gbs``, with the
    reference chosen as ``check_rcp`` chooses it (exact, or interpolated between neighbours);
    None when no reference applies."""
    if benchmark not in rcp_checker.submission_runs.get(usage, {}):
        return None
    if ruleset not in rcp_rulesets(benchmark, usage=usage):
        return None
    with _quiet():
        checker = _ReadOnlyChecker(usage, ruleset, benchmark, False)
        record = checker._find_rcp(gbs, rcp_pass)
        low = checker._find_top_min_rcp(gbs, rcp_pass)
        high = checker._find_bottom_max_rcp(gbs, rcp_pass)
        if record is None and low is not None and high is not None:
            _, record = checker._create_interp_rcp(gbs, low, high)
    if record is None:
        return None
    mean, stdev = float(record["RCP Mean"]), float(record["RCP Stdev"])
    return mean, stdev, mean / float(record["Max Speedup"])


def check_rcp_directory(
    directory: Path, *, ruleset: str, rcp_pass: str = "pruned_rcps", usage: str = "training"
) -> RCPVerdict:
    """RCP verdict for the ``result_*.txt`` of ``directory``, read by the official checker."""
    files = sorted(str(p) for p in Path(directory).glob("result_*.txt") if p.is_file())
    if not files:
        return RCPVerdict(NOT_APPLICABLE, f"no result_*.txt in {directory}", ruleset=ruleset)
    with _quiet():
        bs, samples, benchmark = _read_samples(files, ruleset)
    if bs == -1 or bs is None:
        return RCPVerdict(FAIL, "Could not detect global_batch_size", benchmark, ruleset)
    if samples is None:
        return RCPVerdict(FAIL, "Insufficient convergence", benchmark, ruleset, bs)
    runs = [None if s >= NOT_CONVERGED else s for s in samples]
    return check_rcp(
        benchmark=benchmark, ruleset=ruleset, gbs=bs, samples=runs, rcp_pass=rcp_pass, usage=usage
    )


def _read_samples(files: list[str], ruleset: str) -> tuple[Any, list[float] | None, Any]:
    """``rcp_checker.get_submission_epochs``; a file it cannot read gives no batch size."""
    try:
        bs, samples, benchmark = rcp_checker.get_submission_epochs(files, ruleset, False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        names = ", ".join(os.path.basename(f) for f in files)
        raise ValueError(f"the RCP checker cannot read {names}: {exc}") from None
    return bs, samples, benchmark
