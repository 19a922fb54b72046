"""Activation checkpointing: recompute each TransformerBlock's activations in backward.

Full checkpointing per block keeps only each block's input (B, T, dim) alive between forward and
backward; at Llama-2-70B and 8192 tokens that is 80 x 128 MiB instead of the tens of GiB the
attention and SwiGLU intermediates would take. The cost is one more forward per block.
The RNG state is saved and restored around the recomputation, so LoRA's dropout masks in the
recomputed forward equal the original ones (the gradients are exact, not approximations).

Selective (op-level, torchtitan's policy): inside each checkpointed block the outputs of the
attention kernel and of every second matmul are saved, everything else (norms, RoPE, SwiGLU's
activation, the other matmuls) is recomputed. It keeps most of full checkpointing's memory saving
at a fraction of its recompute cost: the attention forward, the most expensive op to redo at
8192 tokens, is never recomputed.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    checkpoint_wrapper,
)
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

AC_MODES = ("none", "full", "selective")

_aten = torch.ops.aten
# Ops whose outputs selective checkpointing keeps (the matmuls: every second one only).
_SAVE_ALWAYS = {
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    # float8's scale (an abs-max) is cheap to keep and saves a reduction in the recompute
    _aten.max.default,
}
# A Linear with a bias (Flux's) runs addmm on a contiguous input, mm then add otherwise.
_MATMULS = {_aten.mm.default, _aten.addmm.default, _aten._scaled_mm.default}


def _selective_policy(counts: dict[str, int], ctx, op, *args, **kwargs) -> CheckpointPolicy:
    if op in _MATMULS:
        mode = "recompute" if ctx.is_recompute else "forward"
        counts[mode] += 1
        # save the 1st, 3rd, ... matmul of the block; recompute the 2nd, 4th, ...
        if counts[mode] % 2 == 1:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE
    if op in _SAVE_ALWAYS:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _selective_contexts():
    return create_selective_checkpoint_contexts(partial(_selective_policy, defaultdict(int)))


def apply_ac(blocks: list[nn.ModuleDict], *, mode: str = "full") -> int:
    """Wrap every block of the containers `blocks` for activation checkpointing, in place.

    Returns the number of wrapped blocks. Parameter names gain a ``_checkpoint_wrapped_module``
    segment, which checkpoint loading and saving strip (``hf_adapter.canonical_name``).
    """
    if mode not in AC_MODES:
        raise ValueError(f"activation checkpointing mode {mode!r} must be one of {AC_MODES}")
    if mode == "none":
        return 0
    extra = {"context_fn": _selective_contexts} if mode == "selective" else {}
    count = 0
    for container in blocks:
        for name, block in list(container.items()):
            container[name] = checkpoint_wrapper(
                block, checkpoint_impl=CheckpointImpl.NO_REENTRANT, preserve_rng_state=True, **extra
            )
            count += 1
    return count
