"""Fully sharded data parallel with FSDP2 (`torch.distributed.fsdp.fully_shard`).

One FSDP unit per block of the family's plan (its parameters are all-gathered just before the
block runs and freed after), then the root, which takes the remaining parameters (a Llama's
tok_embeddings, norm, output). Applied last, after TP: on a 2-D mesh the parameters become
DTensors sharded over ("dp_shard", "tp") and FSDP all-gathers over dp_shard only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


def apply_fsdp(
    model: nn.Module,
    blocks: list[nn.Module],
    dp_mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype = torch.float32,
    reduce_dtype: torch.dtype = torch.float32,
    reshard_after_forward: bool = True,
    experts: list[nn.Module] | None = None,
    experts_mesh: DeviceMesh | None = None,
) -> None:
    """Shard `model` over the 1-D `dp_mesh`, in place: one unit per block of `blocks` (forward
    order), then the root with the remaining parameters.

    param_dtype: dtype of the all-gathered parameters the forward and backward compute with
    (the sharded master copy keeps its own dtype, float32). reduce_dtype: dtype of the gradient
    reduce-scatter. reshard_after_forward: free the gathered parameters after each block's
    forward (ZeRO-3; one more all-gather in backward) rather than keep them until its backward.
    Gradients are averaged over dp_mesh, so each rank's loss is the mean over its own samples.
    experts: expert parallel's expert modules (their parameters sharded over the "ep" ranks),
    each its own unit sharded over `experts_mesh` ("edp": the ranks holding the same experts)
    and averaged over it (``parallel/ep.py`` scales them by 1 / ep before).
    """
    assert dp_mesh.ndim == 1, f"apply_fsdp needs a 1-D mesh, got {dp_mesh.ndim}-D"
    mp_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for module in experts or []:
        assert experts_mesh is not None
        fully_shard(module, mesh=experts_mesh, mp_policy=mp_policy,
                    reshard_after_forward=reshard_after_forward)  # fmt: skip
    for i, block in enumerate(blocks):
        # The last block's backward starts right after the forward ends: keep it gathered
        # (torchtitan does the same).
        reshard = reshard_after_forward and i < len(blocks) - 1
        fully_shard(block, mesh=dp_mesh, mp_policy=mp_policy, reshard_after_forward=reshard)
    # The root's parameters (embedding, final norm, output) are needed again first in backward.
    fully_shard(model, mesh=dp_mesh, mp_policy=mp_policy, reshard_after_forward=False)
