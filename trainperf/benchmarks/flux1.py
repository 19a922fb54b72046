"""flux1: MLPerf Training text-to-image (the FLUX.1-schnell transformer from scratch, CC12M).

Rule constants are named after the MLLOG key they satisfy; each cites the closed-division
compliance file of mlperf_logging (``training_5.1.0|6.0.0|6.1.0/closed_flux1.yaml``), the
reference (mlcommons/training ``text_to_image``: torchtitan branch ``mlperf-training-flux.1``,
``flux_schnell_mlperf.toml``) or the training rules. ``tests/unit/benchmarks`` checks them
against the YAML shipped in the installed mlperf_logging. No training logic lives here: the loss
is `FlowMatchingTask`, the data reader ``trainperf.data.flux``.
"""

from __future__ import annotations

from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.spec import BenchmarkSpec, DataSpec, EvalRules, PerfPreset, Scale
from trainperf.config import Config, DataConfig, LogConfig, ModelConfig, TrainConfig
from trainperf.train.tasks import FlowMatchingTask

SUBMISSION_BENCHMARK = C.FLUX1
RULESETS = ("5.1.0", "6.0.0", "6.1.0")  # mlperf_logging rulesets that know this benchmark
EVALUATION_FREQUENCY_KEY = "evaluation_frequency"  # no mllog constant names it

# --- closed_flux1.yaml ------------------------------------------------------------------------
EVALUATION_FREQUENCY = 262_144  # samples; 6.1.0: ceil(262144 / GBS) * GBS, logged after the GBS
OPT_NAME = "adamw"  # CHECK v['value'] == 'adamw'
OPT_ADAMW_BETA_1 = 0.9
OPT_ADAMW_BETA_2 = 0.95
OPT_ADAMW_EPSILON = 1e-08
OPT_ADAMW_WEIGHT_DECAY = 0.1  # on every parameter: the reference has one parameter group
OPT_GRADIENT_CLIP_NORM = 1.0
EVAL_ACCURACY_TARGET = 0.586  # ATLEAST_ONE_CHECK v['value'] <= 0.586 and v['value'] > 0.0
# --- the reference (README, flux_schnell_mlperf.toml) and the training rules -------------------
TRAIN_SAMPLES = 1_099_776  # the first ~10% of CC12M kept by the reference's cleaning
EVAL_SAMPLES = 29_696  # COCO-2014 val captions, 3,712 at each of the 8 timesteps
EVAL_BATCH_SIZE = 16  # eval.batch_size (no effect on the value)
MAX_STEPS = 30_000  # training.steps: an upper bound, the run stops at the target
SUBMISSION_RUNS = 10  # mlperf_logging benchmark_meta result-file count
LR_SCHEDULE = "constant"  # lr_scheduler warmup_steps then decay_ratio 0: warmup, then constant

# --- data sources: the reference README "Download the preprocessed data" (MLCommons R2) --------
DATASET_URI = "https://training.mlcommons-storage.org/metadata/flux-1-cc12m-preprocessed.uri"
CHECKPOINT_NOTE = None  # trains from the reference's initialisation

# RCP hyperparameters (rcp_checker/training_6.0.0/rcps_flux1.json = 6.1.0): GBS -> (LR, warmup
# samples = warmup steps x GBS). Warmup steps = warmup samples / GBS. 5.1.0 had other rows
# (1024: 2e-4 without warmup): the ruleset's own RCP file decides a run's verdict.
RCP_HYPERPARAMETERS: dict[int, tuple[float, int]] = {
    512: (2e-4, 1600 * 512),
    1024: (2.5e-4, 800 * 1024),
    2048: (2.5e-4, 0),
    4096: (4e-4, 100 * 4096),
}

# Keys whose compliance CHECK depends on the scale: a reduced-scale run evaluates every
# few thousand samples and stops at its own target.
SCALE_DEPENDENT_KEYS = (EVALUATION_FREQUENCY_KEY, C.EVAL_ACCURACY)

SCALES: dict[str, Scale] = {
    "full": Scale(
        name="full",
        description="the MLPerf rules: FLUX.1-schnell 11.9B, CC12M, GBS 512, target 0.586",
        flavor="flux-schnell",
        seq_len=512,
        global_batch_size=512,
        micro_batch_size=16,
        lr=RCP_HYPERPARAMETERS[512][0],
        warmup_steps=RCP_HYPERPARAMETERS[512][1] // 512,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="cc12m",
    ),
    "proxy": Scale(
        name="proxy",
        description="throughput on few GPUs: 6 double + 12 single blocks (3.8B), CC12M",
        flavor="flux-proxy",
        seq_len=512,
        global_batch_size=16,
        micro_batch_size=16,
        lr=RCP_HYPERPARAMETERS[512][0],
        warmup_steps=0,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="cc12m",
    ),
    "small": Scale(
        name="small",
        description="one GPU, minutes: a 12-block Flux on generated latents (same format)",
        flavor="flux-small",
        seq_len=320,
        global_batch_size=64,
        micro_batch_size=64,
        lr=1e-3,
        warmup_steps=20,
        max_steps=2000,
        eval_every_samples=4096,
        eval_samples=512,
        target=0.21,
        data_source="builtin",
    ),
    "tiny": Scale(
        name="tiny",
        description="CPU, minutes: a 6-block Flux on generated 8 x 8 latents (same format)",
        flavor="flux-tiny",
        seq_len=24,
        global_batch_size=32,
        micro_batch_size=32,
        lr=2e-3,
        warmup_steps=10,
        max_steps=1500,
        eval_every_samples=1024,
        eval_samples=256,
        target=0.85,
        data_source="builtin",
    ),
}

PERF_PRESETS: dict[str, PerfPreset] = {
    "1gpu": PerfPreset(
        "the peer's flux-proxy (6 double + 12 single blocks, 3.8B), batch 16, 256 x 256: one "
        "H100/H200",
        scale="proxy",
    ),
}

RULES: dict[str, Any] = {
    EVALUATION_FREQUENCY_KEY: EVALUATION_FREQUENCY,
    C.OPT_NAME: OPT_NAME,
    C.OPT_ADAMW_BETA_1: OPT_ADAMW_BETA_1,
    C.OPT_ADAMW_BETA_2: OPT_ADAMW_BETA_2,
    C.OPT_ADAMW_EPSILON: OPT_ADAMW_EPSILON,
    C.OPT_ADAMW_WEIGHT_DECAY: OPT_ADAMW_WEIGHT_DECAY,
    C.OPT_GRADIENT_CLIP_NORM: OPT_GRADIENT_CLIP_NORM,
    C.EVAL_SAMPLES: EVAL_SAMPLES,
    C.EVAL_ACCURACY: EVAL_ACCURACY_TARGET,
}


def default_config(scale: str) -> Config:
    """The benchmark's default configuration at one scale: the closed optimizer, warmup then a
    constant LR, weight decay on every parameter."""
    s = SCALES[scale]
    return Config(
        benchmark=SUBMISSION_BENCHMARK,
        scale=s.name,
        model=ModelConfig(flavor=s.flavor, n_layers=s.n_layers),
        train=TrainConfig(
            seq_len=s.seq_len,
            global_batch_size=s.global_batch_size,
            micro_batch_size=s.micro_batch_size,
            lr=s.lr,
            warmup_steps=s.warmup_steps,
            max_steps=s.max_steps,
            end_lr_factor=1.0,
            lr_schedule=LR_SCHEDULE,
            beta1=OPT_ADAMW_BETA_1,
            beta2=OPT_ADAMW_BETA_2,
            eps=OPT_ADAMW_EPSILON,
            weight_decay=OPT_ADAMW_WEIGHT_DECAY,
            decay_all_params=True,
            grad_clip=OPT_GRADIENT_CLIP_NORM,
            eval_every_samples=s.eval_every_samples,
            eval_samples=s.eval_samples,
            eval_batch_size=EVAL_BATCH_SIZE,
            target=s.target,
        ),
        data=DataConfig(source=s.data_source),
        log=LogConfig(),
    )


def hyperparameter_events(cfg: Config) -> list[tuple[str, object]]:
    """The closed keys with this run's values, in the reference's order. evaluation_frequency
    is the interval the run really evaluates at (ceil to the GBS, as 6.1.0 checks; 262,144 for
    every GBS that divides it, as 5.1.0 and 6.0.0 check)."""
    t = cfg.train
    return [
        (EVALUATION_FREQUENCY_KEY, t.eval_interval_samples),
        (C.OPT_NAME, OPT_NAME),
        (C.OPT_LR_WARMUP_STEPS, t.warmup_steps),
        (C.OPT_ADAMW_BETA_1, t.beta1),
        (C.OPT_ADAMW_BETA_2, t.beta2),
        (C.OPT_ADAMW_EPSILON, t.eps),
        (C.OPT_ADAMW_WEIGHT_DECAY, t.weight_decay),
        (C.OPT_BASE_LR, t.lr),
        (C.OPT_GRADIENT_CLIP_NORM, t.grad_clip),
    ]


def required_hyperparameters(hyper: dict, gbs: int | None, full: bool) -> dict[str, object]:
    """What the closed rules require of the logged schedule: the evaluation interval (262,144
    samples rounded up to the GBS); LR and warmup are free."""
    if not full or gbs is None:
        return {}
    return {EVALUATION_FREQUENCY_KEY: -(-EVALUATION_FREQUENCY // gbs) * gbs}


def read_flux(cfg: Config, paths: Any, model_cfg: Any) -> Any:
    """The spec's reader (``trainperf.data.flux``, imported when a run reads its data)."""
    from trainperf.data.flux import read_flux as read

    return read(cfg, paths, model_cfg)


SPEC = BenchmarkSpec(
    name=SUBMISSION_BENCHMARK,
    summary="FLUX.1-schnell text-to-image from scratch on CC12M, to validation loss 0.586",
    family_name="flux",
    rules=RULES,
    eval=EvalRules(
        target=EVAL_ACCURACY_TARGET, every_samples=EVALUATION_FREQUENCY, eval_samples=EVAL_SAMPLES
    ),
    scales=SCALES,
    rulesets=RULESETS,
    submission_runs=SUBMISSION_RUNS,
    data=DataSpec(
        source="cc12m",
        reader=read_flux,
        dataset_uri=DATASET_URI,
        train_samples=TRAIN_SAMPLES,
        checkpoint_note=CHECKPOINT_NOTE,
    ),
    task=FlowMatchingTask(),
    default_config=default_config,
    hyperparameter_events=hyperparameter_events,
    scale_dependent_keys=SCALE_DEPENDENT_KEYS,
    perf_presets=PERF_PRESETS,
    required_hyperparameters=required_hyperparameters,
    rcp_points=RCP_HYPERPARAMETERS,
    lr_schedule=LR_SCHEDULE,
)
