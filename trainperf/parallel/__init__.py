"""Parallelism for any model family: ParallelDims + mesh, the family's ParallelPlan, TP, CP,
FSDP2, activation checkpointing, compile, float8, and their fixed order (`parallelize_model`)."""

from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.fsdp import apply_fsdp
from trainperf.parallel.parallelize import Applied, parallelize_model
from trainperf.parallel.plan import ParallelPlan, TensorParallelPlan
from trainperf.parallel.tp import apply_tp

__all__ = [
    "Applied",
    "ParallelDims",
    "ParallelPlan",
    "TensorParallelPlan",
    "apply_fsdp",
    "apply_tp",
    "parallelize_model",
]
