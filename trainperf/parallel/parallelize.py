"""Apply every parallelism to a model, in the one order that composes: TP -> AC -> compile -> FSDP.

    with torch.device("meta"):
        model = Llama(cfg)
    dims = ParallelDims(tp=2, world_size=dist.get_world_size())
    dims.validate_for_model(cfg, seq_len=seq_len)
    mesh = dims.build_mesh("cuda")
    parallelize_model(model, dims, mesh, param_dtype=torch.bfloat16)
    model.to_empty(device="cuda")
    model.init_weights()  # or load_hf_checkpoint(model, path): each rank reads its own slices

Why this order (torchtitan's): TP rewrites the Linear/Embedding parameters into DTensors and
hooks their inputs and outputs, so it goes first; activation checkpointing and compile wrap each
block's forward, including the TP hooks; FSDP goes last so that its all-gather and
reduce-scatter hooks stay outside the compiled and checkpointed regions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from trainperf.parallel.ac import apply_ac
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.fsdp import apply_fsdp
from trainperf.parallel.tp import apply_tp


def parallelize_model(
    model: nn.Module,
    dims: ParallelDims,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype = torch.float32,
    reduce_dtype: torch.dtype = torch.float32,
    sequence_parallel: bool = True,
    reshard_after_forward: bool = True,
    activation_checkpointing: str = "none",
) -> nn.Module:
    """Shard `model` in place over `mesh` (from `dims.build_mesh`) and return it.

    Tensor parallel when dims.tp > 1; FSDP when dims.dp_shard > 1. With FSDP off (one data
    parallel rank), param_dtype and reduce_dtype have no effect: use autocast for mixed precision.
    activation_checkpointing: 'none' or 'full' (every block recomputed in backward).
    Call on the meta device, before `to_empty`.
    """
    assert tuple(mesh.mesh_dim_names or ()) == ("dp_shard", "tp"), mesh.mesh_dim_names
    assert mesh.size() == dims.world_size, (mesh.size(), dims.world_size)
    if dims.tp_enabled:
        apply_tp(model, mesh["tp"], sequence_parallel=sequence_parallel)
    apply_ac(model, mode=activation_checkpointing)
    # TODO([speed]): torch.compile goes here, per TransformerBlock (compile.py).
    if dims.dp_enabled:
        apply_fsdp(
            model,
            mesh["dp_shard"],
            param_dtype=param_dtype,
            reduce_dtype=reduce_dtype,
            reshard_after_forward=reshard_after_forward,
        )
    return model
