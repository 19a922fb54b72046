"""Tensor parallel (Megatron-style) with optional sequence parallel: applies a family's plan.

A family's ``parallelize.py`` builds a `TensorParallelPlan` (torch's ``parallelize_module``
styles for its root and for every block) from the pieces here: `colwise` / `rowwise` for its
Linears, `norm_style` for the norms between matmul regions, `between_blocks` for the layout of
the activations there. With sequence parallel the activations between the matmul regions are
split along the sequence (dim 1) instead of replicated, so the norms and residual adds do 1/tp
of the work and memory; the all-reduce of each row-parallel layer becomes a reduce-scatter +
all-gather pair.

LoRA (`LoRALinear`, Megatron/NeMo's layout): a column-parallel base keeps its adapter's A
replicated and splits B's rows like the base's, so the adapter's output has the base's shards;
a row-parallel base splits A's columns like the base's and keeps B replicated, so the adapter's
output is a partial sum that the base's own reduction (reduce-scatter with SP) sums with it.
The replicated adapter matrix gets partial gradients, reduced like the norms' (below).
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
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from trainperf.models.lora import LoRALinear
from trainperf.parallel.plan import TensorParallelPlan


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, plan: TensorParallelPlan) -> None:
    """Shard `model` (on meta or materialized) over the 1-D `tp_mesh` by its family's `plan`,
    in place. Frozen parameters stay frozen; sequence-parallel norms and LoRA's replicated
    adapter matrices get their gradients reduced over the tp ranks.
    """
    assert tp_mesh.ndim == 1, f"apply_tp needs a 1-D mesh, got {tp_mesh.ndim}-D; use mesh['tp']"
    _check_plain_linears(model, plan.root, "")
    for block, block_plan in plan.blocks:
        _check_plain_linears(block, block_plan, f"{_name_of(model, block)}.")
    # torch's styles wrap the parameters they distribute in new nn.Parameters that require
    # gradients; a frozen one (a LoRA base, its norms and embeddings) must stay frozen
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    parallelize_module(model, tp_mesh, plan.root)
    for block, block_plan in plan.blocks:
        parallelize_module(block, tp_mesh, block_plan)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    for norm in plan.sequence_parallel_norms:
        norm.register_forward_pre_hook(_hook_grad_reduction)
    for module in model.modules():
        if isinstance(module, LoRALinear):  # its replicated adapter matrix
            module.register_forward_pre_hook(_hook_grad_reduction)


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


def between_blocks(*, sequence_parallel: bool) -> Placement:
    """Layout of the activations between the matmul regions: split along the sequence (dim 1)
    with sequence parallel, replicated without."""
    return Shard(1) if sequence_parallel else Replicate()


def norm_style(*, sequence_parallel: bool) -> ParallelStyle:
    """A norm between matmul regions: sequence-parallel, or replicated on every tp rank."""
    return SequenceParallel() if sequence_parallel else ReplicateParallel()


def colwise(parent: nn.Module, name: str) -> ParallelStyle:
    """Column-parallel style for the Linear `parent.name` (LoRA-aware)."""
    if isinstance(getattr(parent, name), LoRALinear):
        return _LoRAParallel(colwise=True)
    return ColwiseParallel()


def rowwise(parent: nn.Module, name: str, *, output_layout: Placement) -> ParallelStyle:
    """Row-parallel style for the Linear `parent.name` (LoRA-aware), its output reduced to
    `output_layout`."""
    if isinstance(getattr(parent, name), LoRALinear):
        return _LoRAParallel(colwise=False, output_layout=output_layout)
    return RowwiseParallel(output_layouts=output_layout)


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


class ReplicateParallel(ParallelStyle):
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
