"""Tensor parallel (Megatron-style) with optional sequence parallel, for `trainperf.models.llama`.

The plan is torchtitan's (`models/llama3/infra/parallelize.py`):

- attention: wq, wk, wv (or the fused wqkv) column-parallel, so each rank computes whole heads;
  wo row-parallel, its partial sums reduced. SwiGLU likewise: w1, w3 column, w2 row.
- tok_embeddings row-parallel (vocabulary rows split; out-of-shard tokens give zeros that the
  reduction fills in); output column-parallel (vocabulary rows split), logits gathered.
- sequence parallel: between the matmul regions the activations are split along the sequence
  (dim 1) instead of replicated, so the norms and residual adds do 1/tp of the work and memory;
  the all-reduce of each row-parallel layer becomes a reduce-scatter + all-gather pair.

LoRA (`LoRALinear`, Megatron/NeMo's layout): a column-parallel base keeps its adapter's A
replicated and splits B's rows like the base's, so the adapter's output has the base's shards;
a row-parallel base splits A's columns like the base's and keeps B replicated, so the adapter's
output is a partial sum that the base's own reduction (reduce-scatter with SP) sums with it.
The replicated adapter matrix gets partial gradients, reduced like the norms' (below).

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
from torch.distributed.tensor import (
    DTensor,
    Placement,
    Replicate,
    Shard,
    distribute_module,
    distribute_tensor,
)
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from trainperf.models.lora import LoRALinear

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
    # torch's styles wrap the parameters they distribute in new nn.Parameters that require
    # gradients; a frozen one (a LoRA base, its norms and embeddings) must stay frozen
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    parallelize_module(model, tp_mesh, root_plan)
    for block, plan in block_plans:
        parallelize_module(block, tp_mesh, plan)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    if sequence_parallel:
        norms = [model.norm] + [
            m for b in model.layers.values() for m in (b.attention_norm, b.ffn_norm)
        ]
        for norm in norms:
            norm.register_forward_pre_hook(_hook_grad_reduction)
    for module in model.modules():
        if isinstance(module, LoRALinear):  # its replicated adapter matrix
            module.register_forward_pre_hook(_hook_grad_reduction)


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
    # so a Linear wrapped in anything but LoRALinear (which gets _LoRAParallel) would be split
    # wrongly or fail deep inside torch. Refuse it here, before anything is changed.
    for name, style in plan.items():
        if isinstance(style, (ColwiseParallel, RowwiseParallel)):
            sub = module.get_submodule(name)
            if any(True for _ in sub.children()):
                raise ValueError(
                    f"tensor parallel cannot shard {prefix}{name} ({type(sub).__name__}): it has "
                    "submodules that no tensor-parallel plan knows; use tp=1"
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
        **{f"attention.{name}": _colwise(block.attention, name) for name in names},
        "attention.wo": _rowwise(block.attention, "wo", output_layout=between),
        "ffn_norm": norm_style(),
        "feed_forward": PrepareModuleInput(
            input_layouts=(between,), desired_input_layouts=(Replicate(),)
        ),
        "feed_forward.w1": _colwise(block.feed_forward, "w1"),
        "feed_forward.w3": _colwise(block.feed_forward, "w3"),
        "feed_forward.w2": _rowwise(block.feed_forward, "w2", output_layout=between),
    }
    return plan


def _colwise(parent: nn.Module, name: str) -> ParallelStyle:
    if isinstance(getattr(parent, name), LoRALinear):
        return _LoRAParallel(colwise=True)
    return ColwiseParallel()


def _rowwise(parent: nn.Module, name: str, *, output_layout: Placement) -> ParallelStyle:
    if isinstance(getattr(parent, name), LoRALinear):
        return _LoRAParallel(colwise=False, output_layout=output_layout)
    return RowwiseParallel(output_layouts=output_layout)


class _LoRAParallel(ParallelStyle):
    """Column- or row-parallel for a `LoRALinear`: base and adapter matrices placed so that the
    adapter's output has the base output's layout (see the module docstring).

    Column: input Replicate (a DTensor from the block's PrepareModuleInput), base W and B
    Shard(0), A Replicate; output the local Shard(-1) tensor, as ColwiseParallel. Row: input the
    local Shard(-1) tensor, base W and A Shard(1), B Replicate; base and adapter outputs are
    partial sums, redistributed together to `output_layout` (Shard(1) with SP), then local.
    """

    def __init__(self, *, colwise: bool, output_layout: Placement | None = None) -> None:
        super().__init__()
        self.colwise = colwise
        self.output_layout = output_layout or Replicate()
        if colwise:
            self.placements = {"weight": Shard(0), "lora_a.weight": Replicate()}
            self.placements["lora_b.weight"] = Shard(0)
        else:
            self.placements = {"weight": Shard(1), "lora_a.weight": Shard(1)}
            self.placements["lora_b.weight"] = Replicate()

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        assert isinstance(module, LoRALinear), type(module)
        return distribute_module(
            module,
            device_mesh,
            partition_fn=self._partition,
            input_fn=self._prepare_input,
            output_fn=self._prepare_output,
        )

    def _partition(self, name: str, module: nn.Module, mesh: DeviceMesh) -> None:
        for pname, param in list(module.named_parameters(recurse=False)):
            placement = self.placements[f"{name}.{pname}" if name else pname]
            dist = distribute_tensor(param, mesh, [placement])
            module.register_parameter(pname, nn.Parameter(dist, requires_grad=param.requires_grad))

    def _prepare_input(self, mod: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
        x = inputs[0]
        layout = Replicate() if self.colwise else Shard(-1)
        if isinstance(x, DTensor):
            x = x.redistribute(mesh, (layout,))
        else:
            x = DTensor.from_local(x, mesh, (layout,), run_check=False)
        return (x, *inputs[1:])

    def _prepare_output(self, mod: nn.Module, out: DTensor, mesh: DeviceMesh):
        if not self.colwise:
            out = out.redistribute(mesh, (self.output_layout,))
        return out.to_local()


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
