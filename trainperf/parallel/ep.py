"""Expert parallelism: each mixture-of-experts layer's experts split over the ep ranks of the
data-parallel group, the tokens sent to the rank of their expert and back (all-to-all).

    mesh = dims.build_ep_mesh("cuda")       # ("edp", "ep"): ep consecutive ranks share experts
    apply_ep(plan.moe_layers, mesh["ep"])   # on the meta-built model, before FSDP

Each rank holds n_experts / ep experts (rank r: experts [r E/ep, (r+1) E/ep)), as DTensors
sharded on dim 0 over the ep mesh, so checkpoints load and save each rank's own experts and the
gradient-norm clip sees the whole expert tensor. A MoE layer's ``dispatch`` becomes
`ep_dispatch`: the (token, choice) pairs sorted by expert are already grouped by destination
rank; their counts go out first (one small all-to-all, then a host sync for the split sizes),
the token rows follow (an all-to-all whose backward is the reverse all-to-all), each rank runs
its experts as grouped GEMMs on what it received, and the results travel back the same way.

FSDP (``parallel/fsdp.py``) then shards the experts over the "edp" ranks (those holding the same
experts) and every other parameter over all data-parallel ranks, averaging each gradient over
its group. An expert's gradient sums the tokens of all ep ranks before that, so the experts
scale theirs by 1 / ep (``Experts.grad_scale``; FSDP's own divide factor would need a premultiplied
sum, which gloo lacks): every gradient is then the mean over the data-parallel world.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard, distribute_tensor


def apply_ep(moe_layers: list[nn.Module], ep_mesh: DeviceMesh) -> None:
    """Shard the experts of every layer over `ep_mesh` and route through `ep_dispatch`."""
    ep = ep_mesh.size()
    for moe in moe_layers:
        experts = moe.experts
        for name, param in list(experts.named_parameters(recurse=False)):
            if param.shape[0] % ep:
                raise ValueError(
                    f"expert parallel ep({ep}) must divide the experts ({param.shape[0]}); "
                    "pick ep among the divisors of the model's n_experts"
                )
            sharded = distribute_tensor(param.data, ep_mesh, [Shard(0)])
            experts.register_parameter(name, nn.Parameter(sharded, param.requires_grad))
        experts.grad_scale = 1.0 / ep
        moe.dispatch = partial(ep_dispatch, group=ep_mesh.get_group(), ep=ep)


def _exchange(x: torch.Tensor, recv: list[int], send: list[int], group) -> torch.Tensor:
    out = funcol.all_to_all_single_autograd(x, recv, send, group)
    return funcol.wait_tensor(out)


def ep_dispatch(
    experts: nn.Module,
    tokens: torch.Tensor,
    chosen: torch.Tensor,
    n_experts: int,
    *,
    group: dist.ProcessGroup,
    ep: int,
) -> torch.Tensor:
    """`local_dispatch` over the ep ranks: tokens (N, D), chosen (N k,) global expert ids ->
    (N k, D), each pair's expert output in the order of `chosen`."""
    n_local = n_experts // ep
    order = chosen.argsort(stable=True)  # by expert, hence by destination rank
    counts = torch.zeros(n_experts, dtype=torch.int64, device=chosen.device)
    counts.scatter_add_(0, chosen, torch.ones_like(chosen))
    received = torch.empty_like(counts)  # (source rank, local expert) counts
    dist.all_to_all_single(received, counts, group=group)
    sizes = torch.stack([counts.view(ep, n_local).sum(1), received.view(ep, n_local).sum(1)])
    send, recv = sizes.tolist()  # the one host sync: split sizes of the all-to-all
    k = chosen.shape[0] // tokens.shape[0]
    rows = _exchange(tokens[order // k], recv, send, group)  # grouped by (source, expert)
    # regroup by local expert (sources in rank order inside each): a stable sort of the keys
    key = torch.arange(ep * n_local, device=rows.device).view(n_local, ep).t().reshape(-1)
    keys = torch.repeat_interleave(key, received, output_size=rows.shape[0])  # (s, e): e ep + s
    regroup = keys.argsort(stable=True)
    out = experts(rows[regroup], received.view(ep, n_local).sum(0).to(torch.int32))
    out = torch.empty_like(out).index_copy_(0, regroup, out)  # back to (source, expert) order
    back = _exchange(out, send, recv, group)  # each source gets its rows in the order it sent
    return torch.empty_like(back).index_copy_(0, order, back)
