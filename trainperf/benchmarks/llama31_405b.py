"""llama31_405b: MLPerf Training LLM pretraining (Llama 3.1 405B continued from Meta's checkpoint).

Rule constants (``training_6.0.0/closed_llama31_405b.yaml``, identical in 5.0.0 / 5.1.0; absent
from 6.1.0), where the data comes from, and two scales: ``full`` (the rules) and ``proxy`` (the
NVIDIA performance guide's reduced depth and batch, for ``trainperf perf`` on a few GPUs). A full
run needs the converted Meta checkpoint (members only) and the en_6 + en_7 blend, which the data
path does not read yet: ``trainperf run`` says so. No training logic lives here.
"""

from __future__ import annotations

import dataclasses
import math
import sys

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.pretraining import optimizer_events, pretraining_config
from trainperf.benchmarks.scale import PerfPreset, Scale
from trainperf.config import Config

SUBMISSION_BENCHMARK = C.LLAMA31_405B
RULESETS = ("5.0.0", "5.1.0", "6.0.0")  # mlperf_logging rulesets that know this benchmark

# --- closed_llama31_405b.yaml -----------------------------------------------------------------
MAX_SEQUENCE_LENGTH = 8192  # CHECK v['value'] == 8192
OPT_NAME = "adamw"
OPT_ADAMW_BETA_1 = 0.9
OPT_ADAMW_BETA_2 = 0.95
OPT_ADAMW_EPSILON = 1e-05
OPT_ADAMW_WEIGHT_DECAY = 0.1
OPT_GRADIENT_CLIP_NORM = 1.0
OPT_LEARNING_RATE_DECAY_SCHEDULE = "cosine with linear warmup"
EVAL_SAMPLES = 5760  # CHECK v['value'] == 5760: the first 5760 validation sequences
EVAL_ACCURACY_TARGET = 5.6  # ATLEAST_ONE_CHECK v['value'] <= 5.6 (log perplexity)
INIT_CHECKPOINT_STEP = 0  # CHECK v['value'] == 0
REFERENCE_GLOBAL_BATCH_SIZE = 1152
REFERENCE_LEARNING_RATE = 8e-5  # CHECK v['value'] * 1152 == GBS * 8e-5
# --- training rules --------------------------------------------------------------------------
OPT_END_LEARNING_RATE = 8e-7
EVALUATION_FREQUENCY = 18432  # samples
SUBMISSION_RUNS = 3
LOSS_REDUCTION = "token"  # log perplexity: mean cross entropy over every token of the eval set
MAX_STEPS = 1_200_000  # at GBS 1152: the decay horizon ceil(1,200,000 * 1152 / GBS)

# Keys whose compliance CHECK depends on the scale (a proxy logs its real, smaller values).
SCALE_DEPENDENT_KEYS = (
    C.OPT_BASE_LR,
    C.OPT_LR_DECAY_STEPS,
    C.EVAL_SAMPLES,
    C.EVAL_ACCURACY,
)

# --- data: the reference README (large_language_model_pretraining/nemo) -------------------------
# C4 en 3.0.1 tokenized with the Mixtral 8x22B tokenizer; training uses consolidated files 6 and 7
# (shards 768-1023) with equal weight, validation the first 91,205 documents.
DATASET_URI = (
    "https://training.mlcommons-storage.org/metadata/mixtral-8x22b-preprocessed-c4-dataset.uri"
)
TRAIN_PREFIXES = ("c4-train.en_6_text_document", "c4-train.en_7_text_document")
TOKENIZER_URI = None  # not on MLCommons storage: TOKENIZER_REPO
TOKENIZER_REPO = "mistralai/Mixtral-8x22B-v0.1"  # gated on the Hugging Face Hub
CHECKPOINT_NOTE = (
    "the starting checkpoint (Meta's Llama 3.1 405B BF16, converted by MLCommons) is available to "
    "MLCommons members only, so trainperf cannot fetch it; get it from MLCommons, or download "
    "meta-llama/Llama-3.1-405B (gated; accept the licence) and point model.checkpoint at it"
)


def base_learning_rate(global_batch_size: int) -> float:
    """opt_base_learning_rate for a GBS, unrounded: 8e-5 * GBS / 1152."""
    return REFERENCE_LEARNING_RATE * global_batch_size / REFERENCE_GLOBAL_BATCH_SIZE


def warmup_steps(global_batch_size: int) -> int:
    """opt_learning_rate_warmup_steps: ceil(8000 * 1152 / GBS)."""
    return math.ceil(8000 * REFERENCE_GLOBAL_BATCH_SIZE / global_batch_size)


def decay_steps(global_batch_size: int) -> int:
    """opt_learning_rate_decay_steps: ceil(1,200,000 * 1152 / GBS) - warmup steps."""
    total = math.ceil(1_200_000 * REFERENCE_GLOBAL_BATCH_SIZE / global_batch_size)
    return total - warmup_steps(global_batch_size)


def evaluations_skipped(global_batch_size: int) -> int:
    """Evaluations not logged at the start: floor(0.0026 * GBS + 12) (training rules)."""
    return math.floor(0.0026 * global_batch_size + 12)


SCALES: dict[str, Scale] = {
    "full": Scale(
        name="full",
        description="the MLPerf rules: Llama 3.1 405B from Meta's checkpoint, C4, GBS 1152, "
        "target 5.6",
        flavor="llama3.1-405b",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=REFERENCE_GLOBAL_BATCH_SIZE,
        micro_batch_size=1,
        lr=REFERENCE_LEARNING_RATE,
        warmup_steps=warmup_steps(REFERENCE_GLOBAL_BATCH_SIZE),
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=128256,
    ),
    # The NVIDIA Llama 3.1 405B performance guide measures reduced-depth proxies on few GPUs;
    # one 405B block (3.2 B parameters) plus the 4.2 B embedding and output layers, GBS 16.
    "proxy": Scale(
        name="proxy",
        description="throughput proxy: the 405B block shapes with 1 layer, GBS 16 (trainperf perf)",
        flavor="llama3.1-405b",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=16,
        micro_batch_size=1,
        lr=base_learning_rate(16),
        warmup_steps=warmup_steps(16),
        max_steps=math.ceil(MAX_STEPS * REFERENCE_GLOBAL_BATCH_SIZE / 16),
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=128256,
        n_layers=1,
    ),
}


PERF_PRESETS: dict[str, PerfPreset] = {
    "2gpu": PerfPreset(
        "one 405B block + embedding and output (7.4 B parameters), GBS 16: 2 GPUs of 141 GB",
        scale="proxy",
    ),
    "8gpu": PerfPreset(
        "4 405B blocks + embedding and output (17.3 B parameters), GBS 32, full activation "
        "checkpointing: 8 GPUs of 80 GB",
        scale="proxy",
        overrides=(
            "model.n_layers=4",
            "train.global_batch_size=32",
            "parallel.activation_checkpointing=full",
        ),
    ),
}


def default_config(scale: str) -> Config:
    """The benchmark's default configuration at one scale."""
    return pretraining_config(
        sys.modules[__name__], scale, end_lr_factor=OPT_END_LEARNING_RATE / SCALES[scale].lr
    )


def resolve_config(cfg: Config) -> Config:
    """Fill the values left to the rules (None): the evaluations skipped at this GBS."""
    if cfg.train.eval_skip is not None:
        return cfg
    skip = evaluations_skipped(cfg.train.global_batch_size)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_skip=skip))


def hyperparameter_events(cfg: Config) -> list[tuple[str, object]]:
    """The benchmark's MLLOG hyperparameter keys with the values this run really uses."""
    return [
        *optimizer_events(sys.modules[__name__], cfg),
        (C.INIT_CHECKPOINT_STEP, INIT_CHECKPOINT_STEP),
    ]
