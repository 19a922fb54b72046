"""Diagnose one run from its parsed MLLOG events: converged, diverged, plateaued, too slow, or an
LR schedule / evaluation cadence that is not what the rules require; in plain words.

Pure functions on ``trainperf.results.parse`` events. The rules come from the benchmark modules
(``trainperf.benchmarks.*``: targets, evaluation interval and skips, schedule constants) and, for
our own runs, from the ``config_<i>.json`` written beside the log (a reduced scale is judged
against its own config, not against the full-scale rules). Every ``eval_accuracy`` of these
benchmarks is lower-is-better (eval loss or log perplexity, mlperf_spec.md section 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks import BENCHMARKS
from trainperf.results.parse import MLLogEvent, RunSummary, summarize_events

__all__ = [
    "CONVERGED",
    "VERDICTS",
    "Diagnosis",
    "RunCurves",
    "diagnose_run",
    "extract_curves",
    "expected_lr",
]

K_EVALS = 3
"""Evaluations in a row that make a trend (rising: diverged; flat: plateaued)."""
EPSILON = 1e-3
"""An evaluation improves only when it beats the best before it by more than this (eval units)."""
LR_RTOL = 2e-3
"""Relative tolerance on a logged learning rate (float32 optimizers round; logs print 16 digits)."""

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
_TRAIN_LOSS_FIELDS = ("train_loss", "reduced_train_loss")


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


@dataclass
class RunCurves:
    """The series of one log that the diagnosis and the report's figures read."""

    train: list[tuple[int, float]] = field(default_factory=list)
    """(samples_count, train loss)."""
    lr: list[tuple[int, float]] = field(default_factory=list)
    """(optimizer step, learning rate) where the log gives the LR of a step."""
    hyper: dict[str, Any] = field(default_factory=dict)
    """First value of each POINT_IN_TIME key logged before run_start (the hyperparameters)."""
    non_finite: list[str] = field(default_factory=list)
    """"train loss is nan at 800 samples (line 12)" for each non-finite train loss."""


def extract_curves(events: Sequence[MLLogEvent], *, global_batch_size: int | None) -> RunCurves:
    """Train loss, per-step LR and hyperparameters of a log (ours or a published one)."""
    curves = RunCurves()
    started = False
    for event in events:
        started |= event.key == C.RUN_START
        if not started and event.event_type != "INTERVAL_START":
            curves.hyper.setdefault(event.key, event.value)
        loss = _train_loss(event)
        if loss is None:
            continue
        samples = _int(event.metadata.get(C.SAMPLES_COUNT))
        if not math.isfinite(loss):
            where = f"{samples} samples" if samples is not None else "a step"
            curves.non_finite.append(f"train loss is {loss} at {where} (line {event.lineno})")
        if samples is not None:
            curves.train.append((samples, loss))
        lr = event.metadata.get("lr")
        step = _int(event.metadata.get("step"))
        if step is None and samples is not None and global_batch_size:
            step = samples // global_batch_size
        if isinstance(lr, int | float) and not isinstance(lr, bool) and step is not None:
            curves.lr.append((step, float(lr)))
    return curves


def _train_loss(event: MLLogEvent) -> float | None:
    value: Any = None
    if event.key == "train_loss":
        value = event.value
    elif event.key == "tracked_stats" and isinstance(event.value, dict):
        value = next((event.value[f] for f in _TRAIN_LOSS_FIELDS if f in event.value), None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    rules = _Rules.of(summary, config)
    curves = extract_curves(events, global_batch_size=summary.global_batch_size)
    evals = [(s, v) for s, v in summary.evals if s is not None]
    findings += _divergence(curves, summary.evals, k)
    findings += _schedule(curves, rules, notes)
    findings += _cadence(evals, rules, notes)
    findings += _progress(summary, evals, rules, curves.hyper, k=k, epsilon=epsilon)
    return _decide(findings, notes)


def _decide(findings: list[tuple[str, str]], notes: list[str]) -> Diagnosis:
    assert findings, "every run gets at least one finding"
    verdict = min((v for v, _ in findings), key=VERDICTS.index)
    ordered = sorted(findings, key=lambda f: VERDICTS.index(f[0]))
    return Diagnosis(verdict=verdict, reasons=[r for _, r in ordered], notes=notes)


@dataclass
class _Rules:
    """What one run is judged against: the benchmark's rules, or our config at a reduced scale."""

    module: ModuleType | None
    gbs: int | None
    full: bool
    """Judged by the full-scale rules (published logs, or our runs at scale 'full')."""
    target: float | None
    eval_interval: int | None
    """Samples between evaluations, rounded up to a multiple of the GBS (training rules)."""
    evals_skipped: int
    config_train: dict[str, Any]

    @classmethod
    def of(cls, summary: RunSummary, config: dict[str, Any] | None) -> _Rules:
        module = BENCHMARKS.get(summary.benchmark or "")
        train = dict((config or {}).get("train") or {})
        full = config is None or config.get("scale") == "full"
        gbs = summary.global_batch_size or _int(train.get("global_batch_size"))
        target = train.get("target")
        every = train.get("eval_every_samples")
        skip = train.get("eval_skip")
        if module is not None and full:
            target = module.EVAL_ACCURACY_TARGET if target is None else target
            every = module.EVALUATION_FREQUENCY if every is None else every
            if skip is None and hasattr(module, "evaluations_skipped") and gbs:
                skip = module.evaluations_skipped(gbs)
        interval = -(-every // gbs) * gbs if every and gbs else None
        return cls(module, gbs, full, target, interval, int(skip or 0), train)

    def max_samples(self, hyper: dict[str, Any]) -> int | None:
        """Samples the run may train: max_steps (or the LoRA schedule's horizon) x GBS."""
        steps = self.config_train.get("max_steps")
        for key in (C.MAX_STEPS, C.OPT_LR_TRAINING_STEPS):
            steps = steps or _int(hyper.get(key))
        return steps * self.gbs if steps and self.gbs else None


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
    rules: _Rules,
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
    if len(recent) < 2:
        return None
    n = len(recent)
    mean_s = sum(s for s, _ in recent) / n
    mean_v = sum(v for _, v in recent) / n
    var = sum((s - mean_s) ** 2 for s, _ in recent)
    if var == 0:
        return None
    slope = sum((s - mean_s) * (v - mean_v) for s, v in recent) / var
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


# --- the learning-rate schedule ---------------------------------------------------------------


def _schedule(curves: RunCurves, rules: _Rules, notes: list[str]) -> list[tuple[str, str]]:
    found = [(BAD_SCHEDULE, r) for r in _hyperparameter_problems(curves.hyper, rules)]
    found += [(BAD_SCHEDULE, r) for r in _trajectory_problems(curves, rules)]
    notes += _rcp_notes(curves.hyper, rules)
    return found


def _expected_hyperparameters(hyper: dict[str, Any], rules: _Rules) -> dict[str, Any]:
    """Key -> the value the rules (full scale) or our config (any scale) require."""
    name = getattr(rules.module, "SUBMISSION_BENCHMARK", None)
    base = hyper.get(C.OPT_BASE_LR)
    warmup = _int(hyper.get(C.OPT_LR_WARMUP_STEPS))
    want: dict[str, Any] = {}
    m, gbs = rules.module, rules.gbs
    if rules.full and name == C.LLAMA31_8B:
        want[C.MAX_STEPS] = m.MAX_STEPS
        if warmup is not None:
            want[C.OPT_LR_DECAY_STEPS] = m.MAX_STEPS - warmup
        if isinstance(base, int | float):
            want[C.OPT_END_LR] = base * m.OPT_END_LEARNING_RATE_FACTOR
    if rules.full and name == C.LLAMA31_405B and gbs:
        want[C.OPT_BASE_LR] = m.base_learning_rate(gbs)
        want[C.OPT_LR_WARMUP_STEPS] = m.warmup_steps(gbs)
        want[C.OPT_LR_DECAY_STEPS] = m.decay_steps(gbs)
        want[C.OPT_END_LR] = m.OPT_END_LEARNING_RATE
    if name in (C.LLAMA31_8B, C.LLAMA31_405B):
        want[C.OPT_LR_DECAY_SCHEDULE] = m.OPT_LEARNING_RATE_DECAY_SCHEDULE
    t = rules.config_train
    if t.get("lr") is not None:
        want[C.OPT_BASE_LR] = t["lr"]
        if name == C.LLAMA2_70B_LORA:
            want[C.OPT_LR_TRAINING_STEPS] = t["max_steps"]
            want[C.OPT_LR_WARMUP_FACTOR] = t["warmup_steps"] / t["max_steps"]
        else:
            want[C.OPT_LR_WARMUP_STEPS] = t["warmup_steps"]
            want[C.OPT_LR_DECAY_STEPS] = t["max_steps"] - t["warmup_steps"]
            want[C.OPT_END_LR] = t["lr"] * t["end_lr_factor"]
    return want


def _hyperparameter_problems(hyper: dict[str, Any], rules: _Rules) -> list[str]:
    source = "the rules require" if rules.full else "the run's config gives"
    problems = []
    for key, want in _expected_hyperparameters(hyper, rules).items():
        got = hyper.get(key)
        if got is None:
            problems.append(f"{key} is not logged; {source} {want!r}")
        elif not _same(got, want):
            problems.append(f"{key} is {got!r} where {source} {want!r}")
    return problems


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)
    return got == want


def expected_lr(step: int, hyper: dict[str, Any]) -> float | None:
    """The LR at optimizer ``step`` of the schedule the log's hyperparameters describe.

    Pretraining (NeMo CosineAnnealing, as ``trainperf.train.optim.lr_at``): linear warmup
    ``base * (step + 1) / (warmup + 1)``, then a half cosine from base to end over the decay
    steps. LoRA (HF ``get_cosine_schedule_with_warmup``): warmup of ``ceil(factor * T)`` steps,
    then ``base * 0.5 * (1 + cos(pi * progress))`` over ``T = opt_learning_rate_training_steps``.
    """
    base = hyper.get(C.OPT_BASE_LR)
    if not isinstance(base, int | float):
        return None
    if C.OPT_LR_WARMUP_STEPS in hyper or C.OPT_LR_DECAY_STEPS in hyper:
        warmup = _int(hyper.get(C.OPT_LR_WARMUP_STEPS)) or 0
        decay = _int(hyper.get(C.OPT_LR_DECAY_STEPS))
        end = hyper.get(C.OPT_END_LR, 0.0)
        if step < warmup:
            return base * (step + 1) / (warmup + 1)
        if not decay:
            return None
        progress = min(1.0, (step - warmup) / decay)
        return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    horizon = _int(hyper.get(C.OPT_LR_TRAINING_STEPS))
    if not horizon:
        return None
    warmup = math.ceil(float(hyper.get(C.OPT_LR_WARMUP_FACTOR) or 0.0) * horizon)
    if step < warmup:
        return base * step / warmup
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _trajectory_problems(curves: RunCurves, rules: _Rules) -> list[str]:
    """The logged per-step LRs against the schedule of the logged hyperparameters (one step of
    slack either way: logs differ on whether a step's LR is logged before or after it)."""
    base = curves.hyper.get(C.OPT_BASE_LR)
    problems = []
    if curves.lr and isinstance(base, int | float):
        peak = max(lr for _, lr in curves.lr)
        if peak > base * (1 + LR_RTOL):
            problems.append(f"the LR peaks at {peak:.4g}, above opt_base_learning_rate {base:g}")
    for step, lr in curves.lr:
        near = [expected_lr(s, curves.hyper) for s in (step - 1, step, step + 1) if s >= 0]
        if any(v is None for v in near) or not near:
            return problems
        low, high = min(near) * (1 - LR_RTOL), max(near) * (1 + LR_RTOL)
        if not low - 1e-12 <= lr <= high + 1e-12:
            problems.append(
                f"at step {step} the LR is {lr:.4g} where the logged schedule gives "
                f"{near[len(near) // 2]:.4g} ({_schedule_words(curves.hyper)})"
            )
            break
    return problems


def _schedule_words(hyper: dict[str, Any]) -> str:
    base = hyper.get(C.OPT_BASE_LR)
    if C.OPT_LR_WARMUP_STEPS in hyper:
        warmup = hyper.get(C.OPT_LR_WARMUP_STEPS)
        return f"linear warmup over {warmup} steps to {base:g}, then cosine decay"
    factor = hyper.get(C.OPT_LR_WARMUP_FACTOR) or 0.0
    steps = hyper.get(C.OPT_LR_TRAINING_STEPS)
    return f"warmup factor {factor:g}, cosine from {base:g} over {steps} steps"


def _rcp_notes(hyper: dict[str, Any], rules: _Rules) -> list[str]:
    """Where the run differs from the RCP's hyperparameters in what the rules leave free."""
    table = getattr(rules.module, "RCP_HYPERPARAMETERS", None)
    if not rules.full or not table or rules.gbs not in table:
        return []
    rcp = table[rules.gbs]
    rcp_lr = rcp[0] if isinstance(rcp, tuple) else rcp
    base = hyper.get(C.OPT_BASE_LR)
    notes = []
    if isinstance(base, int | float) and not _same(base, rcp_lr):
        notes.append(
            f"opt_base_learning_rate {base:g} differs from the RCP's {rcp_lr:g} at GBS "
            f"{rules.gbs} (the rules leave it free)"
        )
    if isinstance(rcp, tuple):
        warmup = _int(hyper.get(C.OPT_LR_WARMUP_STEPS))
        rcp_warmup = rcp[1] // rules.gbs
        if warmup is not None and warmup != rcp_warmup:
            notes.append(
                f"opt_learning_rate_warmup_steps {warmup} differs from the RCP's {rcp_warmup} "
                f"({rcp[1]} samples / GBS {rules.gbs}; the rules leave it free)"
            )
    return notes


# --- the evaluation cadence -------------------------------------------------------------------


def _cadence(
    evals: list[tuple[int, float]], rules: _Rules, notes: list[str]
) -> list[tuple[str, str]]:
    """Eval samples_count spacing against the rule's interval (ceil to GBS) and skips."""
    interval = rules.eval_interval
    if interval is None or not evals:
        return []
    where = "the rules" if rules.full else "the run's config"
    require = "the rules require" if rules.full else "the run's config gives"
    found = []
    latest_first = (rules.evals_skipped + 1) * interval
    first = evals[0][0]
    if first > latest_first:
        found.append(
            (
                BAD_CADENCE,
                f"the first evaluation is at {first} samples; {where} evaluate every {interval} "
                f"samples skipping {rules.evals_skipped}, so by {latest_first} at the latest",
            )
        )
    gaps = [(b[0] - a[0], b[0]) for a, b in zip(evals, evals[1:])]
    wide = [(g, at) for g, at in gaps if g > interval]
    if wide:
        g, at = wide[0]
        found.append(
            (
                BAD_CADENCE,
                f"evaluations {g} samples apart (before {at} samples) where {require} "
                f"every {interval} samples ({len(wide)} such gap{'s' if len(wide) > 1 else ''})",
            )
        )
    narrow = sorted({g for g, _ in gaps if 0 < g < interval})
    if narrow:
        notes.append(
            f"evaluates every {', '.join(map(str, narrow))} samples, more often than the "
            f"{interval} that {require}: samples to converge then fall between the RCP's "
            "evaluation points"
        )
    return found
