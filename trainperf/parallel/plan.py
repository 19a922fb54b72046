"""What a model family tells `parallelize_model`: its units and where each feature applies.

A family builds one `ParallelPlan` for a built model (``family.parallel_plan(model)``, in the
family's ``parallelize.py``); the modules of this package apply it and name no model class:

- ``blocks``: the repeated blocks, in forward order, each one unit of activation checkpointing,
  torch.compile and FSDP (the rest of the model is FSDP's root unit);
- ``tensor_parallel``: the tensor-parallel styles of the root and of every block, and the norms
  that sequence parallel splits (None: the family cannot be tensor-parallel);
- ``attention_kernels``: the causal-attention kernel modules, by owner and attribute, that
  context parallel swaps for its all-gather kernel (empty: no context parallel);
- ``float8_skip``: Linear names (last segments: ``output``, ``adaLN_modulation.1``) kept in high
  precision under float8 (an output layer whose logits feed the softmax, ...);
- ``moe_layers``: the mixture-of-experts layers, each with an ``experts`` module (its parameters
  have the experts on dim 0) and a ``dispatch`` function, that expert parallel shards and swaps
  (empty: no expert parallel).

What a tensor-parallel degree must divide is the family's ``tp_sizes`` (checked before any
model is built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn
from torch.distributed.tensor.parallel import ParallelStyle


@dataclass
class TensorParallelPlan:
    """torch's ``parallelize_module`` plans: one for the root, one per block."""

    root: dict[str, ParallelStyle]
    blocks: list[tuple[nn.Module, dict[str, ParallelStyle]]]
    sequence_parallel_norms: list[nn.Module] = field(default_factory=list)
    """Norms whose weights see 1/tp of the tokens under sequence parallel: their gradients are
    reduced over the tp ranks."""


@dataclass
class ParallelPlan:
    blocks: list[nn.ModuleDict]
    """Containers of the repeated blocks (forward order); each block is one AC, compile and FSDP
    unit, wrapped in place (``container[name] = wrapper``)."""
    tensor_parallel: Callable[[bool], TensorParallelPlan] | None = None
    """sequence_parallel -> the plan; None when the family has no tensor-parallel plan."""
    attention_kernels: list[tuple[nn.Module, str]] = field(default_factory=list)
    """(owner, attribute) of each causal-attention kernel module (context parallel)."""
    float8_skip: tuple[str, ...] = ()
    """Linear layers float8 leaves in high precision, by the last segments of their names
    ('output' matches 'output' and 'x.output'; dotted entries match as many segments)."""
    moe_layers: list[nn.Module] = field(default_factory=list)
    """Mixture-of-experts layers (``.experts``, ``.dispatch``) for expert parallel."""

    def block_items(self) -> list[tuple[nn.ModuleDict, str, nn.Module]]:
        """(container, name, block) for every block, in forward order."""
        return [(c, name, block) for c in self.blocks for name, block in c.items()]
