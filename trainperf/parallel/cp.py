"""Context parallelism: each rank of a cp group holds 1/cp of the tokens of every sequence.

The method is the all-gather one that trained Llama 3 (Llama 3 paper, section 3.3.2): the
sequence is cut into 2 x cp equal chunks and rank r keeps chunks r and 2cp-1-r, so that every
rank has the same causal-attention work (one early, one late chunk). Everything but attention
is per token and runs on the local chunks unchanged; attention all-gathers K and V over the cp
group (with grouped-query attention they are n_heads / n_kv_heads times smaller than Q; at
Llama 3.1 8B's 8 K/V heads, 8192 tokens, 32 MiB per layer and sample in bf16) and each local
query chunk attends to the keys up to its own end with a lower-right causal mask. In backward
the all-gather's gradient is a reduce-scatter: each rank gets the K/V gradients of its chunks
summed over the group. Unlike ring attention this needs no online-softmax merge, so it runs
on every SDPA backend (flash on CUDA, the math kernel on CPU, gloo included) and under
torch.compile (funcol collectives are traceable).

    positions = cp_positions(seq_len, cp=cp, rank=cp_rank)   # (seq_len // cp,) token positions
    model(tokens[:, positions], positions=positions)          # RoPE of the global positions

The loss of a rank is its chunks' part of the sequence's loss; the trainer weighs the tokens
from the whole labels before cutting them (``LossTargets``), so the parts add up to the loss.
"""

from __future__ import annotations

import torch
import torch.distributed._functional_collectives as funcol
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

# torch >= 2.13 names it all_gather_single_autograd; 2.11 and 2.12 all_gather_tensor_autograd
_all_gather = (
    getattr(funcol, "all_gather_single_autograd", None) or funcol.all_gather_tensor_autograd
)


def cp_chunks(*, cp: int, rank: int) -> tuple[int, int]:
    """The two chunks (of 2 x cp) of every sequence that cp rank `rank` holds."""
    assert 0 <= rank < cp, (rank, cp)
    return rank, 2 * cp - 1 - rank


def cp_positions(seq_len: int, *, cp: int, rank: int, device: torch.device | str = "cpu"):
    """Token positions (seq_len // cp,) int64 of cp rank `rank`: its two chunks, in order."""
    if seq_len % (2 * cp):
        raise ValueError(
            f"context parallel cp({cp}) needs seq_len({seq_len}) divisible by 2 x cp = {2 * cp}"
        )
    c = seq_len // (2 * cp)
    first, second = cp_chunks(cp=cp, rank=rank)
    return torch.cat(
        [torch.arange(first * c, (first + 1) * c), torch.arange(second * c, (second + 1) * c)]
    ).to(device)


def causal_lower_right(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of the last q.shape[2] positions of a sequence over its first
    k.shape[2] keys: query i sees keys 0 .. k_len - q_len + i (a lower-right causal mask).

    q (B, n_heads, Tq, D); k, v (B, n_kv_heads, Tk, D) with Tk >= Tq. On CUDA FlashAttention,
    whose causal mask is lower-right when Tq < Tk (and takes grouped K/V heads as they are);
    elsewhere SDPA with the mask written out (torch's CausalBias does the same, but as a tensor
    subclass it cannot be created inside activation checkpointing or torch.compile).
    """
    tq, tk = q.shape[2], k.shape[2]
    if tq == tk:
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=q.shape[1] != k.shape[1]
        )
    if q.is_cuda:
        return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, is_causal=True)[0]
    mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1]
    )


def _global_chunk_order(cp: int) -> list[int]:
    """For each chunk g of the sequence, its slot in the all-gathered rank order
    [rank 0's two chunks, rank 1's two chunks, ...]."""
    slot = {}
    for rank in range(cp):
        first, second = cp_chunks(cp=cp, rank=rank)
        slot[first], slot[second] = 2 * rank, 2 * rank + 1
    return [slot[g] for g in range(2 * cp)]


class ContextParallelAttention(nn.Module):
    """Causal attention of this rank's query chunks over the all-gathered keys and values."""

    def __init__(self, cp_mesh: DeviceMesh) -> None:
        super().__init__()
        assert cp_mesh.ndim == 1, cp_mesh
        self.cp_mesh = cp_mesh
        self.cp = cp_mesh.size()
        self.chunks = cp_chunks(cp=self.cp, rank=cp_mesh.get_local_rank())
        self.order = _global_chunk_order(self.cp)

    def gather_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(..., T_local, D) on every rank -> (..., seq_len, D) in sequence order."""
        *lead, t, d = x.shape
        c = t // 2
        parts = _all_gather(x.contiguous(), 0, self.cp_mesh)  # (cp * lead0, ..., T_local, D)
        parts = parts.view(self.cp, *lead, 2, c, d).movedim(0, -4)  # (..., cp, 2, c, D)
        parts = parts.flatten(-4, -3)  # (..., 2cp, c, D): slots in rank order
        return parts[..., self.order, :, :].flatten(-3, -2)  # (..., seq_len, D)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q (B, n_heads, T_local, D); k, v (B, n_kv_heads, T_local, D); T_local = 2 chunks
        kv = self.gather_sequence(torch.stack([k, v]))  # (2, B, n_kv_heads, seq_len, D)
        return attend_chunks(q, kv[0], kv[1], chunks=self.chunks)


def attend_chunks(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, chunks: tuple[int, int]
) -> torch.Tensor:
    """Causal attention of the query chunks `chunks` (q (B, n_heads, 2c, D), in that order)
    over the whole sequence's keys and values k, v (B, n_kv_heads, seq_len, D)."""
    c = q.shape[2] // 2
    outs = []
    for chunk, q_part in zip(chunks, q.split(c, dim=2)):
        end = (chunk + 1) * c  # keys 0 .. end-1; query i of the chunk sees up to end-c+i
        outs.append(causal_lower_right(q_part, k[:, :, :end], v[:, :, :end]))
    return torch.cat(outs, dim=2)  # (B, n_heads, 2c, D)


def apply_cp(kernels: list[tuple[nn.Module, str]], cp_mesh: DeviceMesh) -> int:
    """Swap each causal-attention kernel (owner, attribute) of a family's plan for the
    context-parallel one, in place; returns how many."""
    if not kernels:
        raise ValueError("this model has no attention kernel context parallel can swap; use cp=1")
    for owner, name in kernels:
        setattr(owner, name, ContextParallelAttention(cp_mesh))
    return len(kernels)
