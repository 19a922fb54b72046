"""gpt_oss_20b: MLPerf Training small-LLM mixture-of-experts pretraining (gpt-oss-20b on C4 from
random init; new in v6.0).

Rule constants are named after the MLLOG key they satisfy; each cites the closed-division
compliance file of mlperf_logging (``training_6.0.0/closed_gpt_oss_20b.yaml``, identical in
6.1.0) or the training rules (``training_rules.adoc``). ``tests/unit/benchmarks`` checks them
against the YAML shipped in the installed mlperf_logging. No training logic lives here.

The reference (mlcommons/training ``small_llm_moe_pretraining/primus``, AMD Primus on
Megatron-LM) trains gpt-oss-20b's shapes with the Llama 3.1 tokenizer and the llama31_8b C4
data: the model flavor ``gpt-oss-20b-mlperf`` (see ``models/gpt_oss/model.py`` for what it
changes from OpenAI's gpt-oss; ``model.flavor=gpt-oss-20b-nvidia`` is NVIDIA's v6.0 variant).
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

SUBMISSION_BENCHMARK = "gpt_oss_20b"  # mllog constants have none; the reference's "gpt-oss-20b"
# (hyphens) fails closed_common.yaml's benchmark list
RULESETS = ("6.0.0", "6.1.0")  # mlperf_logging rulesets that know this benchmark

# --- closed_gpt_oss_20b.yaml ------------------------------------------------------------------
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
EVAL_ACCURACY_TARGET = 3.34  # ATLEAST_ONE_CHECK v['value'] <= 3.34 (log perplexity)
# --- training rules (training_rules.adoc v6.0) ------------------------------------------------
OPT_END_LEARNING_RATE_FACTOR = 0.1  # opt_end_learning_rate = opt_base_learning_rate * 0.1
EVALUATION_FREQUENCY = 12288  # samples, rounded up to a multiple of the GBS; no evaluation skipped
SUBMISSION_RUNS = 10  # mlperf_logging benchmark_meta result-file count
LOSS_REDUCTION = "token"  # log perplexity: mean cross entropy over every token of the eval set

# --- data: the reference README (the llama31_8b preprocessed C4, Llama 3.1 tokenizer) ----------
DATASET_URI = (
    "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri"
)
TOKENIZER_URI = "https://training.mlcommons-storage.org/metadata/llama-3-1-8b-tokenizer.uri"
TRAIN_PREFIXES = ("c4-train.en_6_text_document",)  # train_data_path "10 /data/c4-train.en_6..."

# RCPs (rcp_checker/training_6.0.0/rcps_gpt_oss_20b.json, 1x MI355X, BF16): GBS -> (LR, warmup
# samples); warmup steps = warmup samples / GBS.
RCP_HYPERPARAMETERS: dict[int, tuple[float, int]] = {
    16: (4e-4, 2048),
    32: (8e-4, 4096),
    64: (1e-3, 12288),
}

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
        description="the MLPerf rules: gpt-oss-20b (MoE 32x top-4), C4, seq 8192, GBS 16, "
        "target 3.34",
        flavor="gpt-oss-20b-mlperf",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=16,  # the reference's default (8 GPUs, micro-batch 2)
        micro_batch_size=1,
        lr=RCP_HYPERPARAMETERS[16][0],
        warmup_steps=RCP_HYPERPARAMETERS[16][1] // 16,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=128256,
    ),
    # Throughput on few GPUs: the full layer shapes with 4 of the 24 layers.
    "proxy": Scale(
        name="proxy",
        description="throughput proxy: gpt-oss-20b's layers, 4 of 24, GBS 16 (trainperf perf)",
        flavor="gpt-oss-20b-mlperf",
        seq_len=MAX_SEQUENCE_LENGTH,
        global_batch_size=16,
        micro_batch_size=1,
        lr=RCP_HYPERPARAMETERS[16][0],
        warmup_steps=RCP_HYPERPARAMETERS[16][1] // 16,
        max_steps=MAX_STEPS,
        eval_every_samples=EVALUATION_FREQUENCY,
        eval_samples=EVAL_SAMPLES,
        target=EVAL_ACCURACY_TARGET,
        data_source="c4",
        vocab_size=128256,
        n_layers=4,
    ),
    "small": Scale(
        name="small",
        description="one GPU, minutes: an 8-layer, 16-expert MoE on the built-in corpus",
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
        description="CPU, minutes: a 2-layer, 8-expert MoE on the built-in corpus",
        flavor="tiny",
        seq_len=128,
        global_batch_size=16,
        micro_batch_size=16,
        lr=3e-3,
        warmup_steps=20,
        max_steps=1200,
        eval_every_samples=512,
        eval_samples=256,
        target=3.9,
        data_source="builtin",
        vocab_size=2048,
        max_bytes=8_000_000,
    ),
}

PERF_PRESETS: dict[str, PerfPreset] = {
    "1gpu": PerfPreset(
        "gpt-oss-20b's layer shapes with 4 of its 24 layers, GBS 4 (accumulated): one GPU of "
        "141 GB",
        scale="proxy",
        overrides=("train.global_batch_size=4",),
    ),
    "8gpu": PerfPreset(
        "the full gpt-oss-20b at the reference's GBS 16 on 8 GPUs",
        scale="full",
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
    the logged warmup and base LR; v6.0 also accepts the RCPs' end LR 4e-5, which report's
    conformance does not know); the decay schedule's name at every scale."""
    return max_steps_requirements(
        hyper,
        full,
        max_steps=MAX_STEPS,
        end_lr_factor=OPT_END_LEARNING_RATE_FACTOR,
        schedule=OPT_LEARNING_RATE_DECAY_SCHEDULE,
    )


SPEC = BenchmarkSpec(
    name=SUBMISSION_BENCHMARK,
    summary="gpt-oss-20b (mixture of experts) pretraining on C4 from random init, to 3.34",
    family_name="gpt_oss",
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
        train_prefixes=TRAIN_PREFIXES,
        vocab_size=SCALES["full"].vocab_size,  # the Llama 3.1 tokenizer's 128,256
    ),
    task=CausalLMTask(reduction=LOSS_REDUCTION, metric="log perplexity"),
    default_config=default_config,
    hyperparameter_events=hyperparameter_events,
    scale_dependent_keys=SCALE_DEPENDENT_KEYS,
    perf_presets=PERF_PRESETS,
    required_hyperparameters=required_hyperparameters,
    rcp_points=RCP_HYPERPARAMETERS,
)
