"""What the C4 pretraining benchmarks (llama31_8b, llama31_405b, gpt_oss_20b, deepseekv3_671b)
share: the shape of their default config and of their MLLOG hyperparameter keys, and the rule
that ties decay steps and end LR to max_steps. The values stay in each module."""

from __future__ import annotations

from collections.abc import Mapping

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.spec import Scale
from trainperf.config import Config, DataConfig, LogConfig, ModelConfig, TrainConfig


def pretraining_config(
    benchmark: str, scale: Scale, rules: Mapping[str, object], *, end_lr_factor: float
) -> Config:
    """The default config of a pretraining benchmark at `scale`, with the optimizer of its
    closed-division `rules` (by MLLOG key)."""
    s = scale
    return Config(
        benchmark=benchmark,
        scale=s.name,
        model=ModelConfig(flavor=s.flavor, n_layers=s.n_layers),
        train=TrainConfig(
            seq_len=s.seq_len,
            global_batch_size=s.global_batch_size,
            micro_batch_size=s.micro_batch_size,
            lr=s.lr,
            warmup_steps=s.warmup_steps,
            max_steps=s.max_steps,
            end_lr_factor=end_lr_factor,
            beta1=rules[C.OPT_ADAMW_BETA_1],
            beta2=rules[C.OPT_ADAMW_BETA_2],
            eps=rules[C.OPT_ADAMW_EPSILON],
            weight_decay=rules[C.OPT_ADAMW_WEIGHT_DECAY],
            grad_clip=rules[C.OPT_GRADIENT_CLIP_NORM],
            eval_every_samples=s.eval_every_samples,
            eval_samples=s.eval_samples,
            target=s.target,
        ),
        data=DataConfig(source=s.data_source, vocab_size=s.vocab_size, max_bytes=s.max_bytes),
        log=LogConfig(),
    )


def optimizer_events(rules: Mapping[str, object], cfg: Config) -> list[tuple[str, object]]:
    """The hyperparameter keys both closed YAMLs check, with this run's values, in an order the
    checker accepts (warmup before decay steps, whose CHECK reads the warmup state)."""
    t = cfg.train
    return [
        (C.MAX_SEQUENCE_LENGTH, t.seq_len),
        (C.OPT_NAME, rules[C.OPT_NAME]),
        (C.OPT_BASE_LR, t.lr),
        (C.OPT_END_LR, t.end_lr),
        (C.OPT_LR_WARMUP_STEPS, t.warmup_steps),
        (C.OPT_LR_DECAY_STEPS, t.max_steps - t.warmup_steps),
        (C.OPT_LR_DECAY_SCHEDULE, rules[C.OPT_LR_DECAY_SCHEDULE]),
        (C.OPT_ADAMW_BETA_1, t.beta1),
        (C.OPT_ADAMW_BETA_2, t.beta2),
        (C.OPT_ADAMW_EPSILON, t.eps),
        (C.OPT_ADAMW_WEIGHT_DECAY, t.weight_decay),
        (C.OPT_GRADIENT_CLIP_NORM, t.grad_clip),
    ]


def max_steps_requirements(
    hyper: Mapping[str, object], full: bool, *, max_steps: int, end_lr_factor: float, schedule: str
) -> dict[str, object]:
    """What closed rules of the llama31_8b kind require of a logged schedule: its name at every
    scale; at full scale max_steps, decay steps = max_steps - the logged warmup, and end LR =
    end_lr_factor x the logged base LR."""
    want: dict[str, object] = {C.OPT_LR_DECAY_SCHEDULE: schedule}
    if not full:
        return want
    want[C.MAX_STEPS] = max_steps
    warmup, base = hyper.get(C.OPT_LR_WARMUP_STEPS), hyper.get(C.OPT_BASE_LR)
    if isinstance(warmup, int) and not isinstance(warmup, bool):
        want[C.OPT_LR_DECAY_STEPS] = max_steps - warmup
    if isinstance(base, int | float) and not isinstance(base, bool):
        want[C.OPT_END_LR] = base * end_lr_factor
    return want
