"""Diagnose one run from its parsed MLLOG events: converged, diverged, plateaued, too slow, or an
LR schedule / evaluation cadence that is not what the rules require; in plain words.

Pure functions on ``trainperf.results.parse`` events. The rules (``trainperf.results.conformance``)
come from the benchmark modules (targets, evaluation interval and skips, schedule constants) and,
for our own runs, from the ``config_<i>.json`` written beside the log (a reduced scale is judged
against its own config, not against the full-scale rules). Every ``eval_accuracy`` of these
benchmarks is lower-is-better (eval loss or log perplexity, mlperf_spec.md section 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trainperf.results.conformance import RunRules, cadence_problems, schedule_problems
from trainperf.results.curves import RunCurves, extract_curves, least_squares_slope
from trainperf.results.parse import MLLogEvent, RunSummary, summarize_events

__all__ = ["CONVERGED", "UNREADABLE", "VERDICTS", "Diagnosis", "diagnose_run"]

K_EVALS = 3
"""Evaluations in a row that make a trend (rising: diverged; flat: plateaued)."""
EPSILON = 1e-3
"""An evaluation improves only when it beats the best before it by more than this (eval units)."""

CONVERGED, DIVERGED, PLATEAUED, TOO_SLOW = "converged", "diverged", "plateaued", "too slow"
BAD_SCHEDULE, BAD_CADENCE = "bad LR schedule", "bad eval cadence"
UNREADABLE, NOT_CONVERGED, INCOMPLETE = "unreadable", "not converged", "incomplete"
VERDICTS = (
    UNREADABLE,
    DIVERGED,
    BAD_SCHEDULE,
    BAD_CADENCE,
    CONVERGED,
    PLATEAUED,
    TOO_SLOW,
    NOT_CONVERGED,
    INCOMPLETE,
)
"""Every verdict, most severe first: a run gets the first one that any finding gives it."""


# Keys holding the train loss: ours and NVIDIA v4.1 log "train_loss"; NeMo's mlperf_common logs
# tracked_stats {"train_loss": x} (v5.1 LoRA) or {"reduced_train_loss": x} (v5.1 pretraining).
@dataclass
class Diagnosis:
    """The verdict on one run and why, in plain words."""

    verdict: str
    """One of ``VERDICTS``."""
    reasons: list[str] = field(default_factory=list)
    """What decided the verdict, and every other problem found."""
    notes: list[str] = field(default_factory=list)
    """Observations that do not change the verdict (e.g. choices the rules leave free)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose_run(
    events: Sequence[MLLogEvent],
    *,
    errors: Sequence[str] = (),
    config: dict[str, Any] | None = None,
    summary: RunSummary | None = None,
    k: int = K_EVALS,
    epsilon: float = EPSILON,
) -> Diagnosis:
    """Diagnose one run from its events (``parse_log(path).events``) and parse ``errors``.

    ``config`` is our ``config_<i>.json`` (None for published logs, judged by the full-scale
    rules); ``summary`` is ``summarize_events`` of the same events when the caller has it.
    """
    events = list(events)
    summary = summary or summarize_events(events, errors=errors)
    findings: list[tuple[str, str]] = []  # (verdict, reason)
    notes: list[str] = []
    if errors:
        more = f" (+{len(errors) - 1} more unreadable lines)" if len(errors) > 1 else ""
        findings.append((UNREADABLE, f"log unreadable: {errors[0]}{more}"))
    if not events:
        findings.append((UNREADABLE, "log unreadable: no :::MLLOG line in it"))
        return _decide(findings, notes)
    rules = RunRules.of(summary, config)
    curves = extract_curves(events, global_batch_size=summary.global_batch_size)
    evals = [(s, v) for s, v in summary.evals if s is not None]
    findings += _divergence(curves, summary.evals, k)
    findings += [(BAD_SCHEDULE, r) for r in schedule_problems(curves, rules, notes)]
    findings += [(BAD_CADENCE, r) for r in cadence_problems(evals, rules, notes)]
    findings += _progress(summary, evals, rules, curves.hyper, k=k, epsilon=epsilon)
    return _decide(findings, notes)


def _decide(findings: list[tuple[str, str]], notes: list[str]) -> Diagnosis:
    assert findings, "every run gets at least one finding"
    verdict = min((v for v, _ in findings), key=VERDICTS.index)
    ordered = sorted(findings, key=lambda f: VERDICTS.index(f[0]))
    return Diagnosis(verdict=verdict, reasons=[r for _, r in ordered], notes=notes)


def _divergence(
    curves: RunCurves, evals: list[tuple[int | None, float]], k: int
) -> list[tuple[str, str]]:
    found = [(DIVERGED, curves.non_finite[0])] if curves.non_finite else []
    for samples, value in evals:
        if not math.isfinite(value):
            found.append((DIVERGED, f"eval is {value} at {samples} samples"))
            return found
    values = [v for _, v in evals]
    for end in range(k, len(values)):
        window = values[end - k : end + 1]
        if all(b > a for a, b in zip(window, window[1:])):
            path = " -> ".join(f"{v:.4g}" for v in window)
            found.append(
                (
                    DIVERGED,
                    f"eval rose {k} evaluations in a row ({path}, at {evals[end][0]} samples)",
                )
            )
            break
    return found


def _progress(
    summary: RunSummary,
    evals: list[tuple[int, float]],
    rules: RunRules,
    hyper: dict[str, Any],
    *,
    k: int,
    epsilon: float,
) -> list[tuple[str, str]]:
    """Converged, or why not: plateaued, too slow, not converged, incomplete."""
    target, final = rules.target, summary.final_eval
    reached = target is not None and final is not None and final <= target
    if summary.converged and reached:
        return [(CONVERGED, f"reached {final:.4f} <= target {target:g} at {evals[-1][0]} samples")]
    found: list[tuple[str, str]] = []
    if summary.converged and target is not None and final is not None:
        found.append(
            (
                NOT_CONVERGED,
                f"run_stop says success but the last eval {final:.4g} is "
                f"above the target {target:g}",
            )
        )
    if target is None:
        return found + [(NOT_CONVERGED, "no target known for this benchmark and scale")]
    if len(evals) > k and all(math.isfinite(v) for _, v in evals):
        before = min(v for _, v in evals[:-k])
        recent = min(v for _, v in evals[-k:])
        if before - recent <= epsilon:
            found.append(
                (
                    PLATEAUED,
                    f"no improvement larger than {epsilon:g} over the last {k} evaluations "
                    f"(best {min(before, recent):.4g}, target {target:g})",
                )
            )
    slow = _too_slow(evals, target, rules.max_samples(hyper), k)
    if slow is not None:
        found.append((TOO_SLOW, slow))
    if summary.run_stop_ms is None:
        found.append((INCOMPLETE, "no run_stop (the run ended early or is still running)"))
    elif not found:
        found.append((NOT_CONVERGED, f"run_stop status {summary.status!r}, target not reached"))
    return found


def _too_slow(
    evals: list[tuple[int, float]], target: float, max_samples: int | None, k: int
) -> str | None:
    """Least-squares slope of the last k evaluations, projected to the target."""
    recent = [(s, v) for s, v in evals[-k:] if math.isfinite(v)]
    slope = least_squares_slope(recent)
    if slope is None:
        return None
    last_s, last_v = recent[-1]
    if slope >= 0:
        return (
            f"the eval is not falling (slope {slope:+.3g} per sample): it never reaches {target:g}"
        )
    at = last_s + (target - last_v) / slope
    if max_samples is not None and at > max_samples:
        return (
            f"at the recent slope ({slope:.3g} per sample) the target {target:g} is reached at "
            f"about {at:,.0f} samples, beyond the {max_samples:,} samples the run may train"
        )
    return None
