"""Tensor parallel (Megatron-style) with optional sequence parallel, for `trainperf.models.llama`.

The plan is torchtitan's (`models/llama3/infra/parallelize.py`):

- attention: wq, wk, wv (or the fused wqkv) column-parallel, so each rank computes whole heads;
  wo row-parallel, its partial sums reduced. SwiGLU likewise: w1, w3 column, w2 row.
- tok_embeddings row-parallel (vocabulary rows split; out-of-shard tokens give zeros that the
  reduction fills in); output column-parallel (vocabulary rows split), logits gathered.
- sequence parallel: between the matmul regions the activations are split along the sequence
  (dim 1) instead of replicated, so the norms and residual adds do 1/tp of the work and memory;
  the all-reduce of each row-parallel layer becomes a reduce-scatter + all-gather pair.

The model's forward runs unchanged: Attention reshapes to `-1` heads, so on each rank it sees
n_heads / tp query heads and n_kv_heads / tp K/V heads, which keep their grouping because
ColwiseParallel splits the rows of wq and wk/wv into contiguous equal blocks (rank r holds query
heads [r * n_heads / tp, ...) and exactly the K/V heads those query heads use). A fused wqkv
must therefore lay out its rows per K/V group ([n_rep q heads, k, v] for each group), so that a
contiguous block of rows is a set of whole groups.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

# Attention input projections that any version of the model may have (fused_qkv -> wqkv).
_QKV_NAMES = ("wq", "wk", "wv", "wqkv")


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, *, sequence_parallel: bool = True) -> None:
    """Shard `model` (a `Llama`, on meta or materialized) over the 1-D `tp_mesh`, in place.

    Logits come back replicated as a plain (B, T, vocab_size) tensor on every rank, so the loss
    code needs no change. TODO([speed]): loss parallel (output Shard(-1) + `loss_parallel()`)
    saves the all-gather of the logits and (tp - 1) / tp of their memory.
    """
    assert tp_mesh.ndim == 1, f"apply_tp needs a 1-D mesh, got {tp_mesh.ndim}-D; use mesh['tp']"
    root_plan = _root_plan(sequence_parallel=sequence_parallel)
    block_plans = [
        (block, _block_plan(block, sequence_parallel=sequence_parallel))
        for block in model.layers.values()
    ]
    _check_plain_linears(model, root_plan, "")
    for block, plan in block_plans:
        _check_plain_linears(block, plan, f"layers.{block.layer_id}.")
    parallelize_module(model, tp_mesh, root_plan)
    for block, plan in block_plans:
        parallelize_module(block, tp_mesh, plan)
    if sequence_parallel:
        norms = [model.norm] + [
            m for b in model.layers.values() for m in (b.attention_norm, b.ffn_norm)
        ]
        for norm in norms:
            norm.register_forward_pre_hook(_hook_grad_reduction)


def _hook_grad_reduction(module: nn.Module, args: tuple) -> None:
    # Registered at forward time, not at apply_tp time: `to_empty` / loading may replace the
    # parameter objects after parallelization, and hooks live on the objects.
    for param in module.parameters():
        if param.requires_grad and not getattr(param, "_trainperf_reduces_grad", False):
            param.register_post_accumulate_grad_hook(_reduce_grad_to_param_placements)
            param._trainperf_reduces_grad = True


def _reduce_grad_to_param_placements(param: nn.Parameter) -> None:
    # Under sequence parallel a norm weight is Replicate but each rank only sees its slice of the
    # sequence, so its gradient can come out Partial (a per-rank partial sum: torch 2.11 leaves it
    # so, and then the optimizer steps each rank with its own partial gradient). Reduce it here,
    # once, to the parameter's own placement; a no-op where torch already did.
    grad = param.grad
    if isinstance(grad, DTensor) and grad.placements != param.placements:
        param.grad = grad.redistribute(grad.device_mesh, param.placements)


def _check_plain_linears(module: nn.Module, plan: dict[str, ParallelStyle], prefix: str) -> None:
    # ColwiseParallel / RowwiseParallel shard every parameter under the module they are given,
    # so a wrapped Linear (LoRALinear: lora_a, lora_b) would be split wrongly or fail deep inside
    # torch. Refuse it here, before anything is changed.
    for name, style in plan.items():
        if isinstance(style, (ColwiseParallel, RowwiseParallel)):
            sub = module.get_submodule(name)
            if any(True for _ in sub.children()):
                raise ValueError(
                    f"tensor parallel cannot shard {prefix}{name} ({type(sub).__name__}): it has "
                    "submodules (LoRA adapters?); TP + LoRA is not supported yet, use tp=1"
                )


def _root_plan(*, sequence_parallel: bool) -> dict[str, ParallelStyle]:
    # Between blocks the activations are (B, T / tp, dim) with SP, (B, T, dim) without.
    between = Shard(1) if sequence_parallel else Replicate()
    plan: dict[str, ParallelStyle] = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=between),
        "output": ColwiseParallel(
            input_layouts=between, output_layouts=Replicate(), use_local_output=True
        ),
    }
    plan["norm"] = SequenceParallel() if sequence_parallel else _ReplicateParallel()
    return plan


def _block_plan(block: nn.Module, *, sequence_parallel: bool) -> dict[str, ParallelStyle]:
    names = [n for n in _QKV_NAMES if isinstance(getattr(block.attention, n, None), nn.Module)]
    assert names, f"no attention input projection among {_QKV_NAMES} in {type(block.attention)}"
    between = Shard(1) if sequence_parallel else Replicate()
    norm_style = SequenceParallel if sequence_parallel else _ReplicateParallel
    plan: dict[str, ParallelStyle] = {
        "attention_norm": norm_style(),
        # Turn the block's (B, T / tp, dim) or (B, T, dim) input into a replicated (B, T, dim)
        # DTensor once (an all-gather with SP). It stays a DTensor (x.shape is the global shape),
        # so in backward the partial gradients of wq, wk, wv (w1, w3) add up first and take one
        # reduce-scatter (all-reduce without SP), instead of one all-reduce per projection. The
        # projections return plain local tensors, so RoPE and SDPA never see a DTensor.
        # Attention's second input, the RoPE table, is left alone (None).
        "attention": PrepareModuleInput(
            input_layouts=(between, None), desired_input_layouts=(Replicate(), None)
        ),
        **{f"attention.{name}": ColwiseParallel() for name in names},
        "attention.wo": RowwiseParallel(output_layouts=between),
        "ffn_norm": norm_style(),
        "feed_forward": PrepareModuleInput(
            input_layouts=(between,), desired_input_layouts=(Replicate(),)
        ),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=between),
    }
    return plan


class _ReplicateParallel(ParallelStyle):
    """Replicated parameters, replicated plain-tensor input and output (norms without SP).

    The norm computes the same thing on every TP rank; its weight becomes a Replicate DTensor
    only so that all parameters are DTensors on the same mesh, which `clip_grad_norm_` and the
    foreach optimizers require (they refuse a mix of DTensor and torch.Tensor).
    """

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(
            module,
            device_mesh,
            partition_fn=None,  # replicate every parameter
            input_fn=self._prepare_input_fn,
            output_fn=self._prepare_output_fn,
        )

    @staticmethod
    def _prepare_input_fn(mod: nn.Module, inputs: tuple, device_mesh: DeviceMesh) -> tuple:
        x = inputs[0]
        if isinstance(x, DTensor):
            x = x.redistribute(device_mesh, (Replicate(),))
        else:
            x = DTensor.from_local(x, device_mesh, (Replicate(),), run_check=False)
        return (x, *inputs[1:])

    @staticmethod
    def _prepare_output_fn(mod: nn.Module, outputs: DTensor, device_mesh: DeviceMesh):
        return outputs.to_local()
