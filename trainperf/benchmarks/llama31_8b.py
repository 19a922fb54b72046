"""llama31_8b: MLPerf Training small-LLM pretraining (Llama 3.1 8B on C4 from random init).

Rule constants are named after the MLLOG key they satisfy; each cites the closed-division
compliance file of mlperf_logging (``training_6.0.0/closed_llama31_8b.yaml``, identical in 5.1.0)
or the training rules. ``tests/unit/benchmarks`` checks them against the YAML shipped in the
installed mlperf_logging. No training logic lives here.
"""

from __future__ import annotations

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.pretraining import (
    max_steps_requirements,
    optimizer_events,
    pretraining_config,
)
from trainperf.benchmarks.spec import BenchmarkSpec, DataSpec, EvalRules, PerfPreset, Scale
from trainperf.config import Config
from trainperf.data.readers import read_pretraining
from trainperf.train.tasks import CausalLMTask

SUBMISSION_BENCHMARK = C.LLAMA31_8B
RULESETS = ("5.1.0", "6.0.0", "6.1.0")  # mlperf_logging rulesets that know this benchmark

# --- closed_llama31_8b.yaml -------------------------------------------------------------------
MAX_SEQUENCE_LENGTH = 8192  # CHECK v['value'] == 8192
OPT_NAME = "adamw"  # CHECK v['value'] == 'adamw'
OPT_ADAMW_BETA_1 = 0.9
OPT_ADAMW_BETA_2 = 0.95
OPT_ADAMW_EPSILON = 1e-05
OPT_ADAMW_WEIGHT_DECAY = 0.1
OPT_GRADIENT_CLIP_NORM = 1.0
OPT_LEARNING_RATE_DECAY_SCHEDULE = "cosine with linear warmup"
MAX_STEPS = 1_200_000  # CHECK v['value'] == 1200000; decay steps == MAX_STEPS - warmup steps
EVAL_SAMPLES = 1024  # CHECK v['value'] == 1024: the first 1024 validation sequences
EVAL_ACCURACY_TARGET = 3.3  # ATLEAST_ONE_CHECK v['value'] <= 3.3 (log perplexity)
# --- training rules (training_rules.adoc v6.0) ------------------------------------------------
OPT_END_LEARNING_RATE_FACTOR = 0.1  # opt_end_learning_rate = opt_base_learning_rate * 0.1
EVALUATION_FREQUENCY = 12288  # samples, rounded up to a multiple of the global batch size
SUBMISSION_RUNS = 10  # mlperf_logging benchmark_meta result-file count
LOSS_REDUCTION = "token"  # log perplexity: mean cross entropy over every token of the eval set

# --- data sources: the reference README "Download Preprocessed Data" (MLCommons R2 storage) ------
DATASET_URI = (
    "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri"
)
TOKENIZER_URI = "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-tokenizer.uri"
TOKENIZER_REPO = None  # MLCommons hosts the tokenizer (TOKENIZER_URI)
TRAIN_PREFIXES = ("c4-train.en_6_text_document",)  # pretrain_llama31.py::get_data: file 6 only
CHECKPOINT_NOTE = None  # trains from random init

# RCP hyperparameters (rcp_checker/training_6.0.0/rcps_llama31_8b.json): GBS -> (LR, warmup
# samples). Warmup steps = warmup samples / GBS.
RCP_HYPERPARAMETERS: dict[int, tuple[float, int]] = {
    16: (4e-4, 256),
    32: (8e-4, 4096),
    64: (8e-4, 6144),
    96: (1e-3, 16348),
    128: (2e-3, 32768),
}

# Keys whose compliance CHECK depends on the scale: a reduced-scale run logs its real (smaller)
# values, and the checker flags exactly these. Everything else must pass at every scale.
SCALE_DEPENDENT_KEYS = (
    C.MAX_SEQUENCE_LENGTH,
    C.MAX_STEPS,
    C.OPT_LR_DECAY_STEPS,
    C.EVAL_SAMPLES,
    C.EVAL_ACCURACY,
)

SCALES: dict[str, Scale] = {
    "full": Scale(
        name="full",
        description="the MLPerf rules: Llama 3.1 8B, C4, seq 8192, GBS 32, target 3.3",
        flavor="llama3.1-8b",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=32,
        micro_batch_size=1,
        lr=RCP_HYPERPARAMETERS[32][0],
        warmup_steps=RCP_HYPERPARAMETERS[32][1] // 32,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=128256,
    ),
    "small": Scale(
        name="small",
        description="one GPU, minutes: an 8-layer model on the built-in corpus",
        flavor="small",
        seq_len=1024,
        global_batch_size=32,
        micro_batch_size=8,
        lr=2e-3,
        warmup_steps=50,
        max_steps=1200,
        eval_every_samples=3072,
        eval_samples=128,
        target=3.4,
        data_source="builtin",
        vocab_size=8192,
        max_bytes=64_000_000,
    ),
    "tiny": Scale(
        name="tiny",
        description="CPU, about a minute: a 2-layer model on the built-in corpus",
        flavor="tiny",
        seq_len=128,
        global_batch_size=16,
        micro_batch_size=16,
        lr=3e-3,
        warmup_steps=20,
        max_steps=1200,
        eval_every_samples=512,
        eval_samples=256,
        target=3.7,
        data_source="builtin",
        vocab_size=2048,
        max_bytes=8_000_000,
    ),
}


PERF_PRESETS: dict[str, PerfPreset] = {
    "1gpu": PerfPreset(
        "Llama 3.1 8B shapes with 4 of its 32 layers, GBS 4 (accumulated): one 80 GB GPU",
        scale="full",
        overrides=("model.n_layers=4", "train.global_batch_size=4"),
    ),
    "2gpu": PerfPreset(
        "the full 8B, one sequence per GPU per step on 2 GPUs (GBS 2, the peer's shape)",
        scale="full",
        overrides=("train.global_batch_size=2",),
    ),
}


RULES = {
    C.MAX_SEQUENCE_LENGTH: MAX_SEQUENCE_LENGTH,
    C.OPT_NAME: OPT_NAME,
    C.OPT_ADAMW_BETA_1: OPT_ADAMW_BETA_1,
    C.OPT_ADAMW_BETA_2: OPT_ADAMW_BETA_2,
    C.OPT_ADAMW_EPSILON: OPT_ADAMW_EPSILON,
    C.OPT_ADAMW_WEIGHT_DECAY: OPT_ADAMW_WEIGHT_DECAY,
    C.OPT_GRADIENT_CLIP_NORM: OPT_GRADIENT_CLIP_NORM,
    C.OPT_LR_DECAY_SCHEDULE: OPT_LEARNING_RATE_DECAY_SCHEDULE,
    C.MAX_STEPS: MAX_STEPS,
    C.EVAL_SAMPLES: EVAL_SAMPLES,
    C.EVAL_ACCURACY: EVAL_ACCURACY_TARGET,
}


def default_config(scale: str) -> Config:
    """The benchmark's default configuration at one scale."""
    return pretraining_config(
        SUBMISSION_BENCHMARK, SCALES[scale], RULES, end_lr_factor=OPT_END_LEARNING_RATE_FACTOR
    )


def hyperparameter_events(cfg: Config) -> list[tuple[str, object]]:
    """The benchmark's MLLOG hyperparameter keys with the values this run really uses."""
    return [*optimizer_events(RULES, cfg), (C.MAX_STEPS, cfg.train.max_steps)]


def required_hyperparameters(hyper: dict, gbs: int | None, full: bool) -> dict[str, object]:
    """What the closed rules require of the logged schedule (decay steps and end LR follow from
    the logged warmup and base LR); the decay schedule's name at every scale."""
    return max_steps_requirements(
        hyper,
        full,
        max_steps=MAX_STEPS,
        end_lr_factor=OPT_END_LEARNING_RATE_FACTOR,
        schedule=OPT_LEARNING_RATE_DECAY_SCHEDULE,
    )


SPEC = BenchmarkSpec(
    name=SUBMISSION_BENCHMARK,
    summary="Llama 3.1 8B pretraining on C4 from random init, to log perplexity 3.3",
    family_name="llama",
    rules=RULES,
    eval=EvalRules(
        target=EVAL_ACCURACY_TARGET, every_samples=EVALUATION_FREQUENCY, eval_samples=EVAL_SAMPLES
    ),
    scales=SCALES,
    rulesets=RULESETS,
    submission_runs=SUBMISSION_RUNS,
    data=DataSpec(
        source="c4",
        reader=read_pretraining,
        dataset_uri=DATASET_URI,
        tokenizer_uri=TOKENIZER_URI,
        tokenizer_repo=TOKENIZER_REPO,
        train_prefixes=TRAIN_PREFIXES,
        vocab_size=SCALES["full"].vocab_size,  # the Llama 3.1 tokenizer's 128,256
        checkpoint_note=CHECKPOINT_NOTE,
    ),
    task=CausalLMTask(reduction=LOSS_REDUCTION, metric="log perplexity"),
    default_config=default_config,
    hyperparameter_events=hyperparameter_events,
    scale_dependent_keys=SCALE_DEPENDENT_KEYS,
    perf_presets=PERF_PRESETS,
    required_hyperparameters=required_hyperparameters,
    rcp_points=RCP_HYPERPARAMETERS,
)
