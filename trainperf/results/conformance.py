"""A run's LR schedule and evaluation cadence against what its benchmark's rules require (or,
for our reduced-scale runs, what the run's ``config_<i>.json`` gives).

The rules are the benchmark specs' (``get_benchmark(name)``: evaluation rules, required
hyperparameters, RCP points), from the training rules' evaluation table (mlperf_spec.md section
1.3): every N samples rounded up to the GBS, skipping the first evaluations where the rules allow
it. Functions return plain-language problems; ``trainperf.results.diagnose`` turns them into
verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks import BENCHMARKS
from trainperf.benchmarks.spec import BenchmarkSpec
from trainperf.results.curves import RunCurves, as_int
from trainperf.results.parse import RunSummary

__all__ = ["RunRules", "cadence_problems", "expected_lr", "schedule_problems"]

LR_RTOL = 2e-3
"""Relative tolerance on a logged learning rate (float32 optimizers round; logs print 16 digits)."""


@dataclass
class RunRules:
    """What one run is judged against: the benchmark's rules, or our config at a reduced scale."""

    spec: BenchmarkSpec | None
    gbs: int | None
    full: bool
    """Judged by the full-scale rules (published logs, or our runs at scale 'full')."""
    target: float | None
    eval_interval: int | None
    """Samples between evaluations, rounded up to a multiple of the GBS (training rules)."""
    evals_skipped: int
    config_train: dict[str, Any]

    @classmethod
    def of(cls, summary: RunSummary, config: dict[str, Any] | None) -> RunRules:
        spec = BENCHMARKS.get(summary.benchmark or "")
        train = dict((config or {}).get("train") or {})
        full = config is None or config.get("scale") == "full"
        gbs = summary.global_batch_size or as_int(train.get("global_batch_size"))
        target = train.get("target")
        every = train.get("eval_every_samples")
        skip = train.get("eval_skip")
        if spec is not None and full:
            target = spec.eval.target if target is None else target
            every = spec.eval.every_samples if every is None else every
            if skip is None and gbs:
                skip = spec.eval.first_eval_index(gbs) - 1
        interval = -(-every // gbs) * gbs if every and gbs else None
        return cls(spec, gbs, full, target, interval, int(skip or 0), train)

    def max_samples(self, hyper: dict[str, Any]) -> int | None:
        """Samples the run may train: max_steps (or the LoRA schedule's horizon) x GBS."""
        steps = self.config_train.get("max_steps")
        for key in (C.MAX_STEPS, C.OPT_LR_TRAINING_STEPS):
            steps = steps or as_int(hyper.get(key))
        return steps * self.gbs if steps and self.gbs else None


# --- the learning-rate schedule ---------------------------------------------------------------


def schedule_problems(curves: RunCurves, rules: RunRules, notes: list[str]) -> list[str]:
    """Hyperparameters and logged per-step LRs that are not what ``rules`` require; what only
    differs from the RCP's choices (left free by the rules) goes to ``notes``."""
    notes += _rcp_notes(curves.hyper, rules)
    return _hyperparameter_problems(curves.hyper, rules) + _trajectory_problems(curves, rules)


def _expected_hyperparameters(hyper: dict[str, Any], rules: RunRules) -> dict[str, Any]:
    """Key -> the value the rules (full scale) or our config (any scale) require."""
    if rules.spec is None:
        return {}
    want = rules.spec.required_hyperparameters(hyper, rules.gbs, rules.full)
    want.update(_config_schedule(rules.spec, rules.config_train))
    return want


_SCHEDULE_KEYS = (
    C.OPT_BASE_LR,
    C.OPT_END_LR,
    C.OPT_LR_WARMUP_STEPS,
    C.OPT_LR_DECAY_STEPS,
    C.OPT_LR_WARMUP_FACTOR,
    C.OPT_LR_TRAINING_STEPS,
)


def _config_schedule(spec: BenchmarkSpec, train: dict[str, Any]) -> dict[str, Any]:
    """The schedule keys our run's config logs (its spec's hyperparameter events on the
    config's train section), or nothing when the config has no learning rate."""
    if train.get("lr") is None:
        return {}
    base = spec.default_config(next(iter(spec.scales)))
    fields = {f.name for f in dataclasses.fields(base.train)}
    known = {k: v for k, v in train.items() if k in fields}
    try:
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, **known))
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in spec.hyperparameter_events(cfg) if k in _SCHEDULE_KEYS}


def _hyperparameter_problems(hyper: dict[str, Any], rules: RunRules) -> list[str]:
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


def expected_lr(step: int, hyper: dict[str, Any], schedule: str = "cosine") -> float | None:
    """The LR at optimizer ``step`` of the schedule the log's hyperparameters describe.

    schedule 'constant' (flux1, torchtitan's warmup-stable): ``base * (step + 1) / warmup``
    during the warmup, then ``base``.

    Pretraining (NeMo CosineAnnealing, as ``trainperf.train.optim.lr_at``): linear warmup
    ``base * (step + 1) / (warmup + 1)``, then a half cosine from base to end over the decay
    steps. LoRA (HF ``get_cosine_schedule_with_warmup``): warmup of ``ceil(factor * T)`` steps,
    then ``base * 0.5 * (1 + cos(pi * progress))`` over ``T = opt_learning_rate_training_steps``.
    """
    base = hyper.get(C.OPT_BASE_LR)
    if not isinstance(base, int | float):
        return None
    if schedule == "constant":
        warmup = as_int(hyper.get(C.OPT_LR_WARMUP_STEPS)) or 0
        return base * min(1.0, (step + 1) / warmup) if warmup else base
    if C.OPT_LR_WARMUP_STEPS in hyper or C.OPT_LR_DECAY_STEPS in hyper:
        warmup = as_int(hyper.get(C.OPT_LR_WARMUP_STEPS)) or 0
        decay = as_int(hyper.get(C.OPT_LR_DECAY_STEPS))
        end = hyper.get(C.OPT_END_LR, 0.0)
        if step < warmup:
            return base * (step + 1) / (warmup + 1)
        if not decay:
            return None
        progress = min(1.0, (step - warmup) / decay)
        return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    horizon = as_int(hyper.get(C.OPT_LR_TRAINING_STEPS))
    if not horizon:
        return None
    warmup = math.ceil(float(hyper.get(C.OPT_LR_WARMUP_FACTOR) or 0.0) * horizon)
    if step < warmup:
        return base * step / warmup
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _trajectory_problems(curves: RunCurves, rules: RunRules) -> list[str]:
    """The logged per-step LRs against the schedule of the logged hyperparameters (one step of
    slack either way: logs differ on whether a step's LR is logged before or after it)."""
    base = curves.hyper.get(C.OPT_BASE_LR)
    schedule = rules.config_train.get("lr_schedule") or (
        rules.spec.lr_schedule if rules.spec is not None else "cosine"
    )
    problems = []
    if curves.lr and isinstance(base, int | float):
        peak = max(lr for _, lr in curves.lr)
        if peak > base * (1 + LR_RTOL):
            problems.append(f"the LR peaks at {peak:.4g}, above opt_base_learning_rate {base:g}")
    for step, lr in curves.lr:
        near = [
            expected_lr(s, curves.hyper, schedule) for s in (step - 1, step, step + 1) if s >= 0
        ]
        if any(v is None for v in near) or not near:
            return problems
        low, high = min(near) * (1 - LR_RTOL), max(near) * (1 + LR_RTOL)
        if not low - 1e-12 <= lr <= high + 1e-12:
            problems.append(
                f"at step {step} the LR is {lr:.4g} where the logged schedule gives "
                f"{near[len(near) // 2]:.4g} ({_schedule_words(curves.hyper, schedule)})"
            )
            break
    return problems


def _schedule_words(hyper: dict[str, Any], schedule: str = "cosine") -> str:
    base = hyper.get(C.OPT_BASE_LR)
    if schedule == "constant":
        warmup = hyper.get(C.OPT_LR_WARMUP_STEPS)
        return f"linear warmup over {warmup} steps to {base:g}, then constant"
    if C.OPT_LR_WARMUP_STEPS in hyper:
        warmup = hyper.get(C.OPT_LR_WARMUP_STEPS)
        return f"linear warmup over {warmup} steps to {base:g}, then cosine decay"
    factor = hyper.get(C.OPT_LR_WARMUP_FACTOR) or 0.0
    steps = hyper.get(C.OPT_LR_TRAINING_STEPS)
    return f"warmup factor {factor:g}, cosine from {base:g} over {steps} steps"


def _rcp_notes(hyper: dict[str, Any], rules: RunRules) -> list[str]:
    """Where the run differs from the RCP's hyperparameters in what the rules leave free."""
    table = rules.spec.rcp_points if rules.spec is not None else {}
    if not rules.full or rules.gbs not in table:
        return []
    rcp_lr, rcp_warmup_samples = table[rules.gbs]
    base = hyper.get(C.OPT_BASE_LR)
    notes = []
    if isinstance(base, int | float) and not _same(base, rcp_lr):
        notes.append(
            f"opt_base_learning_rate {base:g} differs from the RCP's {rcp_lr:g} at GBS "
            f"{rules.gbs} (the rules leave it free)"
        )
    if rcp_warmup_samples is not None:
        warmup = as_int(hyper.get(C.OPT_LR_WARMUP_STEPS))
        rcp_warmup = rcp_warmup_samples // rules.gbs
        if warmup is not None and warmup != rcp_warmup:
            notes.append(
                f"opt_learning_rate_warmup_steps {warmup} differs from the RCP's {rcp_warmup} "
                f"({rcp_warmup_samples} samples / GBS {rules.gbs}; the rules leave it free)"
            )
    return notes


# --- the evaluation cadence -------------------------------------------------------------------


def cadence_problems(
    evals: list[tuple[int, float]], rules: RunRules, notes: list[str]
) -> list[str]:
    """Eval samples_count spacing against the rule's interval (ceil to GBS) and skips; evaluating
    more often than required goes to ``notes`` (accepted submissions do, e.g. HPE v5.1 8B)."""
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
            f"the first evaluation is at {first} samples; {where} evaluate every {interval} "
            f"samples skipping {rules.evals_skipped}, so by {latest_first} at the latest"
        )
    gaps = [(b[0] - a[0], b[0]) for a, b in zip(evals, evals[1:])]
    wide = [(g, at) for g, at in gaps if g > interval]
    if wide:
        g, at = wide[0]
        found.append(
            f"evaluations {g} samples apart (before {at} samples) where {require} "
            f"every {interval} samples ({len(wide)} such gap{'s' if len(wide) > 1 else ''})"
        )
    narrow = sorted({g for g, _ in gaps if 0 < g < interval})
    if narrow:
        notes.append(
            f"evaluates every {', '.join(map(str, narrow))} samples, more often than the "
            f"{interval} that {require}: samples to converge then fall between the RCP's "
            "evaluation points"
        )
    return found
