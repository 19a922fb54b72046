"""deepseekv3_671b: MLPerf Training LLM MoE pretraining (DeepSeek-V3 671B continued on C4).

Rule constants (``training_6.0.0/closed_deepseekv3_671b.yaml``; 6.1.0 adds only the first
evaluation's step), where the data comes from, and one scale: ``full`` (the rules). trainperf
cannot train it: there is no DeepSeek-V3 model family (multi-head latent attention, a shared
expert beside 256 routed ones, 3 dense layers, multi-token prediction), and the starting
checkpoint is for MLCommons members only. Every command that would build the model says so
(`UNTRAINABLE`); list, score, check, watch and report read its result logs. No training logic
lives here.
"""

from __future__ import annotations

import math

from mlperf_logging.mllog import constants as C

from trainperf.benchmarks.pretraining import optimizer_events, pretraining_config
from trainperf.benchmarks.spec import BenchmarkSpec, DataSpec, EvalRules, Scale
from trainperf.config import Config
from trainperf.data.readers import read_pretraining
from trainperf.train.tasks import CausalLMTask

SUBMISSION_BENCHMARK = C.DEEPSEEKV3_671B
RULESETS = ("6.0.0", "6.1.0")  # mlperf_logging rulesets that know this benchmark

# --- closed_deepseekv3_671b.yaml --------------------------------------------------------------
MIN_GLOBAL_BATCH_SIZE = 15360  # CHECK v['value'] >= 15360
MAX_SEQUENCE_LENGTH = 4096  # CHECK v['value'] == 4096
OPT_NAME = "adamw"  # CHECK v['value'] == 'adamw'
REFERENCE_GLOBAL_BATCH_SIZE = 16384
REFERENCE_LEARNING_RATE = 2.4e-5  # CHECK abs(v['value'] - 2.4e-05 * (GBS / 16384) ** 0.5) < 1e-9
OPT_LEARNING_RATE_WARMUP_STEPS = 4  # CHECK v['value'] == 4
OPT_LEARNING_RATE_DECAY_STEPS = 11996  # CHECK v['value'] == 12000 - s['..._warmup_steps']
OPT_LEARNING_RATE_DECAY_SCHEDULE = "cosine with linear warmup"
OPT_ADAMW_BETA_1 = 0.9
OPT_ADAMW_BETA_2 = 0.95
OPT_ADAMW_EPSILON = 1e-08
OPT_ADAMW_WEIGHT_DECAY = 0.1
OPT_GRADIENT_CLIP_NORM = 1.0
MOE_AUX_LOSS_COEFF = 0.01  # CHECK v['value'] == 0.01 (the sequence auxiliary loss weight)
EVAL_SAMPLES = 1024  # CHECK v['value'] == 1024: the first 1024 validation sequences
EVAL_ACCURACY_TARGET = 3.6  # ATLEAST_ONE_CHECK (v['value'] <= 3.6) and v['value'] > 0.0
# 6.1.0 only, on eval_accuracy: FIRST_CHECK samples_count == GBS * floor(42 + 24576 / GBS)
# --- training rules (training_rules.adoc v6.0) and the reference ---------------------------------
MAX_STEPS = 12000  # the decay horizon, warmup + decay steps (the RCP logs' max_steps; not checked)
OPT_END_LEARNING_RATE = 1e-8  # the reference's min_lr (no longer a rule; not checked)
EVALUATION_FREQUENCY = 1  # samples: "every step", rounded up to one global batch at any GBS
SUBMISSION_RUNS = 3  # mlperf_logging benchmark_meta result-file count
LOSS_REDUCTION = "token"  # log perplexity: mean cross entropy over every token of the eval set

# --- data: the reference README (llm_moe_pretraining/nemo) --------------------------------------
# llama31_8b's preprocessed C4 en 3.0.1 (Llama 3.1 tokenizer); training reads consolidated file 6
# only, validation the first 1024 sequences of 4096 tokens.
DATASET_URI = (
    "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri"
)
TOKENIZER_URI = "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-tokenizer.uri"
TOKENIZER_REPO = None  # MLCommons hosts the tokenizer (TOKENIZER_URI)
TRAIN_PREFIXES = ("c4-train.en_6_text_document",)
VOCAB_SIZE = 128256  # the Llama 3.1 tokenizer (the model's embedding keeps DeepSeek-V3's 129280)
CHECKPOINT_NOTE = (
    "the starting checkpoint (DeepSeek-V3 671B after 50 MLCommons steps with aux loss 1e-2, HF "
    "format, ~1.4 TB: deepseekv3_checkpoint_bf16.uri) is available to MLCommons members only"
)
UNTRAINABLE = (
    "there is no DeepSeek-V3 model family under trainperf/models (multi-head latent attention, "
    "a shared expert "
    "beside 256 routed experts, 3 dense layers and multi-token prediction are not implemented), "
    f"and {CHECKPOINT_NOTE}; list, score, check, watch and report still read its result logs"
)

# RCP hyperparameters (rcp_checker/training_6.0.0/rcps_deepseekv3_671b.json, 6.1.0 the same):
# GBS -> (LR, warmup samples). The rules fix both (the table of training_rules.adoc), so the
# warmup is None: no free choice of the RCPs.
RCP_HYPERPARAMETERS: dict[int, tuple[float, int | None]] = {
    15360: (0.000023238, None),
    16384: (0.000024, None),
    18432: (0.000025456, None),
}


def base_learning_rate(global_batch_size: int) -> float:
    """opt_base_learning_rate: 2.4e-5 * sqrt(GBS / 16384), rounded to the 9th decimal place as
    the rules' table gives it (15360 -> 0.000023238)."""
    ratio = global_batch_size / REFERENCE_GLOBAL_BATCH_SIZE
    return round(REFERENCE_LEARNING_RATE * math.sqrt(ratio), 9)


# Evaluation every step. 6.1.0 (and the reference since 2026-07) runs the first at step
# floor(42 + 24576 / GBS): 43 for every GBS in [12288, 24576], which holds the three RCP batch
# sizes. EvalRules' FLOOR(slope * GBS + offset) cannot follow the 24576 / GBS term, so it skips
# 42 at every GBS: exact up to GBS 24576; above it the rule's first step is 42 and the official
# checker (trainperf check) judges it. 6.0.0 evaluates from step 1, which the rules allow too.
EVAL = EvalRules(
    target=EVAL_ACCURACY_TARGET,
    every_samples=EVALUATION_FREQUENCY,
    eval_samples=EVAL_SAMPLES,
    skip_offset=42,
)


SCALES: dict[str, Scale] = {
    "full": Scale(
        name="full",
        description="the MLPerf rules: DeepSeek-V3 671B from the MLCommons checkpoint, C4, "
        "GBS 16384, target 3.6 (the reference: 256 GPUs; not trainable here: no DeepSeek-V3 "
        "family)",
        flavor="deepseek-v3-671b",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=REFERENCE_GLOBAL_BATCH_SIZE,
        micro_batch_size=1,
        lr=base_learning_rate(REFERENCE_GLOBAL_BATCH_SIZE),
        warmup_steps=OPT_LEARNING_RATE_WARMUP_STEPS,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=VOCAB_SIZE,
    ),
}


RULES = {
    C.MAX_SEQUENCE_LENGTH: MAX_SEQUENCE_LENGTH,
    C.OPT_NAME: OPT_NAME,
    C.OPT_LR_WARMUP_STEPS: OPT_LEARNING_RATE_WARMUP_STEPS,
    C.OPT_ADAMW_BETA_1: OPT_ADAMW_BETA_1,
    C.OPT_ADAMW_BETA_2: OPT_ADAMW_BETA_2,
    C.OPT_ADAMW_EPSILON: OPT_ADAMW_EPSILON,
    C.OPT_ADAMW_WEIGHT_DECAY: OPT_ADAMW_WEIGHT_DECAY,
    C.OPT_GRADIENT_CLIP_NORM: OPT_GRADIENT_CLIP_NORM,
    C.OPT_LR_DECAY_SCHEDULE: OPT_LEARNING_RATE_DECAY_SCHEDULE,
    C.MOE_AUX_LOSS_COEFF: MOE_AUX_LOSS_COEFF,
    C.EVAL_SAMPLES: EVAL_SAMPLES,
    C.EVAL_ACCURACY: EVAL_ACCURACY_TARGET,
}


def default_config(scale: str) -> Config:
    """The benchmark's default configuration at one scale (what its rules fix; no run uses it)."""
    s = SCALES[scale]
    end_lr_factor = OPT_END_LEARNING_RATE / s.lr
    return pretraining_config(SUBMISSION_BENCHMARK, s, RULES, end_lr_factor=end_lr_factor)


def hyperparameter_events(cfg: Config) -> list[tuple[str, object]]:
    """The benchmark's MLLOG hyperparameter keys with the values a run of `cfg` would use."""
    return [
        *optimizer_events(RULES, cfg),
        (C.MAX_STEPS, cfg.train.max_steps),
        (C.MOE_AUX_LOSS_COEFF, MOE_AUX_LOSS_COEFF),
    ]


def required_hyperparameters(hyper: dict, gbs: int | None, full: bool) -> dict[str, object]:
    """What the closed rules require at this GBS (the LR scales with its square root; warmup,
    decay and the auxiliary loss weight are fixed); the decay schedule's name at every scale."""
    want: dict[str, object] = {C.OPT_LR_DECAY_SCHEDULE: OPT_LEARNING_RATE_DECAY_SCHEDULE}
    if full and gbs:
        want[C.OPT_BASE_LR] = base_learning_rate(gbs)
        want[C.OPT_LR_WARMUP_STEPS] = OPT_LEARNING_RATE_WARMUP_STEPS
        want[C.OPT_LR_DECAY_STEPS] = OPT_LEARNING_RATE_DECAY_STEPS
        want[C.MOE_AUX_LOSS_COEFF] = MOE_AUX_LOSS_COEFF
    return want


SPEC = BenchmarkSpec(
    name=SUBMISSION_BENCHMARK,
    summary="DeepSeek-V3 671B continued pretraining on C4 from the MLCommons checkpoint, to 3.6",
    family_name="deepseek_v3",  # no such folder under models/: UNTRAINABLE says why
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
        vocab_size=VOCAB_SIZE,
        checkpoint_note=CHECKPOINT_NOTE,
    ),
    task=CausalLMTask(reduction=LOSS_REDUCTION, metric="log perplexity"),
    default_config=default_config,
    hyperparameter_events=hyperparameter_events,
    required_hyperparameters=required_hyperparameters,
    rcp_points=RCP_HYPERPARAMETERS,
    untrainable=UNTRAINABLE,
)
