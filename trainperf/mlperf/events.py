"""The MLLOG run header: everything logged between init_start and init_stop that describes a run.

Every value comes from the resolved config or from the run as it was built (`RunFacts`, which
the trainer fills from the live model: the parallel layout, the micro-batch, and the lowest
precision its linear layers, attention and collectives really compute or carry in), never a
constant. The 6.1.0 rulesets make the disclosure keys mandatory (``training_6.1.0/common.yaml``:
``lowest_numerical_precision_in_linear|attn|comm``, ``tensor|pipeline|context|expert_parallelism``,
``micro_batch_size``, ``config_filename``); a submission that misreports them is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlperf_logging.mllog import constants as C

from trainperf.config import Config
from trainperf.mlperf.logger import MLPerfLogger

if TYPE_CHECKING:
    import torch

    from trainperf.benchmarks.spec import BenchmarkSpec

# The checker's names (common.yaml's allowed values), lowest first.
PRECISIONS = ("fp8", "fp16", "bfloat16", "tf32", "fp32", "fp64")


def precision_name(dtype: torch.dtype) -> str:
    """The MLLOG name of a torch dtype ('bfloat16', 'fp32', 'fp8', ...)."""
    name = str(dtype).removeprefix("torch.")
    if name.startswith("float8"):
        return "fp8"
    names = {"bfloat16": "bfloat16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}
    if name not in names:
        raise ValueError(f"no MLLOG precision name for {dtype}")
    return names[name]


def lowest_precision(names: list[str]) -> str:
    """The lowest of MLLOG precision names (fp8 < fp16 < bfloat16 < tf32 < fp32 < fp64)."""
    return min(names, key=PRECISIONS.index)


@dataclass(frozen=True)
class RunFacts:
    """What a built run is, for its header (the trainer's ``facts()``)."""

    train_samples: int
    """Samples in one pass over the training data."""
    grad_accumulation: int
    """Micro-batches per optimizer step on one rank."""
    micro_batch_size: int
    platform: str
    """MLLOG submission_platform when the config leaves it empty: the devices used."""
    tensor_parallelism: int
    context_parallelism: int
    precision_linear: str
    """Lowest precision of the Linear layers' matmuls ('fp8' with float8 training)."""
    precision_attn: str
    """Precision of the attention kernel (the compute dtype)."""
    precision_comm: str
    """Lowest precision a collective of the training step carries (FSDP's all-gather and
    reduce-scatter, TP's and CP's activations); one process has no collectives and logs its
    compute dtype."""
    pipeline_parallelism: int = 1
    expert_parallelism: int = 1


def log_run_header(
    ml: MLPerfLogger,
    cfg: Config,
    spec: BenchmarkSpec,
    facts: RunFacts,
    *,
    config_filename: str,
) -> None:
    """The submission, batch, seed and hyperparameter keys of a run, then the disclosure keys."""
    lg, t = cfg.log, cfg.train
    ml.event(C.SUBMISSION_BENCHMARK, cfg.benchmark)
    ml.event(C.SUBMISSION_ORG, lg.submission_org)
    ml.event(C.SUBMISSION_DIVISION, lg.submission_division)
    ml.event(C.SUBMISSION_STATUS, lg.submission_status)
    ml.event(C.SUBMISSION_PLATFORM, lg.submission_platform or facts.platform)
    ml.event(C.GLOBAL_BATCH_SIZE, t.global_batch_size)
    ml.event(C.TRAIN_SAMPLES, facts.train_samples)
    ml.event(C.EVAL_SAMPLES, t.eval_samples)
    ml.event(C.SEED, t.seed)
    ml.event(C.GRADIENT_ACCUMULATION_STEPS, facts.grad_accumulation)
    for key, value in spec.hyperparameter_events(cfg):
        ml.event(key, value)
    for key, value in disclosure_events(facts, config_filename=config_filename):
        ml.event(key, value)


def disclosure_events(facts: RunFacts, *, config_filename: str) -> list[tuple[str, object]]:
    """The precision, parallelism and run-config keys of the 6.1 rulesets, in that order."""
    return [
        (C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR, facts.precision_linear),
        (C.LOWEST_NUMERICAL_PRECISION_IN_ATTN, facts.precision_attn),
        (C.LOWEST_NUMERICAL_PRECISION_IN_COMM, facts.precision_comm),
        (C.TENSOR_PARALLELISM, facts.tensor_parallelism),
        (C.PIPELINE_PARALLELISM, facts.pipeline_parallelism),
        (C.CONTEXT_PARALLELISM, facts.context_parallelism),
        (C.EXPERT_PARALLELISM, facts.expert_parallelism),
        (C.MICRO_BATCH_SIZE, facts.micro_batch_size),
        (C.CONFIG_FILENAME, config_filename),
    ]
