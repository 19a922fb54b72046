"""llama31_405b: MLPerf Training LLM pretraining (Llama 3.1 405B continued from Meta's checkpoint).

Rule constants (``training_6.0.0/closed_llama31_405b.yaml``, identical in 5.0.0 / 5.1.0; absent
from 6.1.0) and where the data comes from. Not yet in ``trainperf.benchmarks.BENCHMARKS``: its
scales, default config and throughput recipe come with the [speed] work; ``trainperf prepare
llama31_405b`` already uses the data constants below. No training logic lives here.
"""

from __future__ import annotations

import math

from mlperf_logging.mllog import constants as C

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

# --- data: the reference README (large_language_model_pretraining/nemo) -------------------------
# C4 en 3.0.1 tokenized with the Mixtral 8x22B tokenizer; training uses consolidated files 6 and 7
# (shards 768-1023) with equal weight, validation the first 91,205 documents.
DATASET_URI = (
    "https://training.mlcommons-storage.org/metadata/mixtral-8x22b-preprocessed-c4-dataset.uri"
)
TRAIN_PREFIXES = ("c4-train.en_6_text_document", "c4-train.en_7_text_document")
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
