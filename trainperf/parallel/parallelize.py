"""Apply every parallelism and speed feature to a model, in the one order that composes:
float8 -> TP -> CP -> EP -> AC -> compile -> FSDP.

    with torch.device("meta"):
        model = family.build(model_cfg, cfg.model)
    plan = family.parallel_plan(model)
    dims = ParallelDims(cp=2, tp=2, world_size=dist.get_world_size())
    dims.validate_sizes(family.tp_sizes(model_cfg), seq_len=seq_len)
    mesh = dims.build_mesh("cuda")
    applied = parallelize_model(model, plan, dims, mesh, param_dtype=torch.bfloat16)
    model.to_empty(device="cuda")
    family.init_weights(model)  # or family.load_checkpoint(model, path): each rank its slices

Why this order (torchtitan's): float8 swaps Linear modules for Float8Linear, which the later
steps must see (TP shards them, FSDP all-gathers their weights in float8). TP rewrites the
Linear/Embedding parameters into DTensors and hooks their inputs and outputs, so it goes before
activation checkpointing and compile, which wrap each block's forward, TP hooks included; CP
swaps each block's attention kernel for one that all-gathers K/V over the cp group, before the
blocks are wrapped too, so its collective is recomputed and compiled with the block; EP shards
the experts and swaps each MoE layer's dispatch for its all-to-all likewise; FSDP
goes last so that its all-gather and reduce-scatter hooks stay outside the compiled and
checkpointed regions.

The model itself is the family's business: the plan (`parallel/plan.py`) names its blocks,
tensor-parallel styles and attention kernels, so nothing here knows a model class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from trainperf.models.lora import LoRALinear
from trainperf.parallel.ac import apply_ac
from trainperf.parallel.compile import apply_compile
from trainperf.parallel.cp import apply_cp
from trainperf.parallel.dims import MESH_DIM_NAMES, ParallelDims
from trainperf.parallel.ep import apply_ep
from trainperf.parallel.float8 import apply_float8, apply_float8_frozen_base
from trainperf.parallel.fsdp import apply_fsdp
from trainperf.parallel.plan import ParallelPlan
from trainperf.parallel.tp import apply_tp


@dataclass(frozen=True)
class Applied:
    """What `parallelize_model` really did: the facts a run's MLLOG header discloses."""

    float8_linears: int
    """Linear layers whose matmuls run in float8 (0: none)."""
    float8_all_gather: bool
    """FSDP all-gathers float8 weights (tensorwise float8 with FSDP)."""
    fsdp: bool
    """Parameters sharded (and gradients reduce-scattered) over dp_shard x cp ranks."""
    param_dtype: torch.dtype
    """dtype the FSDP all-gather and the TP collectives carry activations and weights in."""
    reduce_dtype: torch.dtype
    """dtype of the gradient reduce-scatter."""


def parallelize_model(
    model: nn.Module,
    plan: ParallelPlan,
    dims: ParallelDims,
    mesh: DeviceMesh | None,
    *,
    param_dtype: torch.dtype = torch.float32,
    reduce_dtype: torch.dtype = torch.float32,
    sequence_parallel: bool = True,
    reshard_after_forward: bool = True,
    activation_checkpointing: str = "none",
    compile: bool = False,
    compile_inside_checkpoint: bool = False,
    float8: str = "none",
    ep_mesh: DeviceMesh | None = None,
) -> Applied:
    """Apply the features to `model` in place by its family's `plan`; mesh None for one process.

    float8 ('none', 'tensorwise', 'rowwise': torchao Float8Linear for the block Linears; with
    LoRA adapters, 'rowwise' stores the frozen base in float8, see `apply_float8_frozen_base`).
    Tensor parallel when dims.tp > 1; context parallel when dims.cp > 1 (the caller feeds each
    rank its part of every sequence, see `parallel/cp.py`); FSDP over dp_shard x cp when that
    is more than one rank. With FSDP off (one data parallel rank), param_dtype and
    reduce_dtype have no effect: use autocast for mixed precision.
    activation_checkpointing: 'none', 'full' (every block recomputed in backward) or 'selective'
    (attention and every second matmul saved). compile: torch.compile per block (inside the
    full checkpoint's wrapper with compile_inside_checkpoint, see `apply_compile`).
    Expert parallel when dims.ep > 1 (`ep_mesh`: ``dims.build_ep_mesh``): the plan's MoE layers
    split their experts over "ep", which FSDP then shards over "edp".
    Call on the meta device, before `to_empty`. Returns what was applied.
    """
    if mesh is not None:
        assert tuple(mesh.mesh_dim_names or ()) == MESH_DIM_NAMES, mesh.mesh_dim_names
        assert mesh.size() == dims.world_size, (mesh.size(), dims.world_size)
    else:
        assert dims.world_size == 1, "a mesh is needed for more than one rank"
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        converted = apply_float8_frozen_base(model, recipe=float8, skip=plan.float8_skip)
    else:
        converted = apply_float8(model, recipe=float8, fsdp=dims.dp_enabled, skip=plan.float8_skip)
    if dims.tp_enabled:
        if plan.tensor_parallel is None:
            raise ValueError(f"{type(model).__name__} has no tensor-parallel plan; use tp=1")
        apply_tp(model, mesh["tp"], plan.tensor_parallel(sequence_parallel))
    if dims.cp_enabled:
        apply_cp(plan.attention_kernels, mesh["cp"])
    experts = []
    if dims.ep_enabled:
        if not plan.moe_layers:
            raise ValueError(f"{type(model).__name__} has no experts to split; use ep=1")
        assert ep_mesh is not None, "expert parallel needs dims.build_ep_mesh(...)"
        apply_ep(plan.moe_layers, ep_mesh["ep"])
        experts = [moe.experts for moe in plan.moe_layers]
    apply_ac(plan.blocks, mode=activation_checkpointing)
    if compile:  # expert parallel breaks the graph: the checkpoint then stays outside, eager
        inside = compile_inside_checkpoint or bool(experts)
        apply_compile(plan.blocks, inside_checkpoint=inside, fullgraph=not experts)
    blocks = [block for _, _, block in plan.block_items()]
    if dims.dp_enabled:
        apply_fsdp(
            model,
            blocks,
            dims.fsdp_mesh(mesh),
            param_dtype=param_dtype,
            reduce_dtype=reduce_dtype,
            reshard_after_forward=reshard_after_forward,
            experts=experts,
            experts_mesh=ep_mesh["edp"] if experts else None,
        )
    return Applied(
        float8_linears=converted,
        float8_all_gather=converted > 0 and float8 == "tensorwise" and dims.dp_enabled,
        fsdp=dims.dp_enabled,
        param_dtype=param_dtype,
        reduce_dtype=reduce_dtype,
    )
