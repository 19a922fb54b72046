"""Parallelism for trainperf models: ParallelDims + mesh, TP, FSDP2, and their fixed order."""

from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.fsdp import apply_fsdp
from trainperf.parallel.parallelize import parallelize_model
from trainperf.parallel.tp import apply_tp

__all__ = ["ParallelDims", "apply_fsdp", "apply_tp", "parallelize_model"]
