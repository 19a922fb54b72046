"""llama31_405b: MLPerf Training LLM pretraining (Llama 3.1 405B continued from Meta's checkpoint).

Rule constants (``training_6.0.0/closed_llama31_405b.yaml``, identical in 5.0.0 / 5.1.0; absent
from 6.1.0), where the data comes from, and two scales: ``full`` (the rules) and ``proxy`` (the
NVIDIA performance guide's reduced depth and batch, for ``trainperf perf`` on a few GPUs). A full
run needs the converted Meta checkpoint (members only: ``trainperf prepare`` says so) and trains on
the en_6 + en_7 blend with equal weights, read sample for sample as megatron-core's
BlendedDataset reads it (``trainperf.data.blended``). No training logic lives here.
"""

from __future__ import annotations

import math

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.pretraining import optimizer_events, pretraining_config
from trainperf.benchmarks.spec import BenchmarkSpec, DataSpec, EvalRules, PerfPreset, Scale
from trainperf.config import Config
from trainperf.data.readers import read_pretraining
from trainperf.train.tasks import CausalLMTask

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
# pretrain_llama31.py::get_data: ["50", en_6, "50", en_7], a megatron BlendedDataset
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


# Evaluations skipped at the start: floor(0.0026 * GBS + 12) (training rules); the reference's
# first evaluation is at that boundary (18432 * floor(0.0026 GBS + 12) / GBS steps).
EVAL = EvalRules(
    target=EVAL_ACCURACY_TARGET,
    every_samples=EVALUATION_FREQUENCY,
    eval_samples=EVAL_SAMPLES,
    skip_slope=0.0026,
    skip_offset=12,
    first_eval_at_skip=True,
)


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


RULES = {
    C.MAX_SEQUENCE_LENGTH: MAX_SEQUENCE_LENGTH,
    C.OPT_NAME: OPT_NAME,
    C.OPT_ADAMW_BETA_1: OPT_ADAMW_BETA_1,
    C.OPT_ADAMW_BETA_2: OPT_ADAMW_BETA_2,
    C.OPT_ADAMW_EPSILON: OPT_ADAMW_EPSILON,
    C.OPT_ADAMW_WEIGHT_DECAY: OPT_ADAMW_WEIGHT_DECAY,
    C.OPT_GRADIENT_CLIP_NORM: OPT_GRADIENT_CLIP_NORM,
    C.OPT_LR_DECAY_SCHEDULE: OPT_LEARNING_RATE_DECAY_SCHEDULE,
    C.EVAL_SAMPLES: EVAL_SAMPLES,
    C.EVAL_ACCURACY: EVAL_ACCURACY_TARGET,
    C.INIT_CHECKPOINT_STEP: INIT_CHECKPOINT_STEP,
}


def default_config(scale: str) -> Config:
    """The benchmark's default configuration at one scale."""
    s = SCALES[scale]
    end_lr_factor = OPT_END_LEARNING_RATE / s.lr
    return pretraining_config(SUBMISSION_BENCHMARK, s, RULES, end_lr_factor=end_lr_factor)


def hyperparameter_events(cfg: Config) -> list[tuple[str, object]]:
    """The benchmark's MLLOG hyperparameter keys with the values this run really uses."""
    return [*optimizer_events(RULES, cfg), (C.INIT_CHECKPOINT_STEP, INIT_CHECKPOINT_STEP)]


def required_hyperparameters(hyper: dict, gbs: int | None, full: bool) -> dict[str, object]:
    """What the closed rules require at this GBS (the LR, warmup and decay scale with it);
    the decay schedule's name at every scale."""
    want: dict[str, object] = {C.OPT_LR_DECAY_SCHEDULE: OPT_LEARNING_RATE_DECAY_SCHEDULE}
    if full and gbs:
        want[C.OPT_BASE_LR] = base_learning_rate(gbs)
        want[C.OPT_LR_WARMUP_STEPS] = warmup_steps(gbs)
        want[C.OPT_LR_DECAY_STEPS] = decay_steps(gbs)
        want[C.OPT_END_LR] = OPT_END_LEARNING_RATE
    return want


SPEC = BenchmarkSpec(
    name=SUBMISSION_BENCHMARK,
    summary="Llama 3.1 405B continued pretraining on C4 from Meta's checkpoint, to 5.6",
    family_name="llama",
    rules=RULES,
    eval=EVAL,
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
        checkpoint_note=CHECKPOINT_NOTE,
    ),
    task=CausalLMTask(reduction=LOSS_REDUCTION, metric="log perplexity"),
    default_config=default_config,
    hyperparameter_events=hyperparameter_events,
    scale_dependent_keys=SCALE_DEPENDENT_KEYS,
    perf_presets=PERF_PRESETS,
    required_hyperparameters=required_hyperparameters,
)
