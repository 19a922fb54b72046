"""Context parallel pieces on one process: chunk layout, chunked attention, loss targets, checks.

The all-gather itself runs in tests/distributed/test_parity.py (cp2 configurations on gloo).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainperf.config import Config, apply_overrides
from trainperf.models.llama import FAMILY
from trainperf.models.llama.model import get_llama_config
from trainperf.models.llama.parallelize import tp_sizes
from trainperf.parallel.cp import (
    _global_chunk_order,
    attend_chunks,
    causal_lower_right,
    cp_chunks,
    cp_positions,
)
from trainperf.parallel.dims import ParallelDims
from trainperf.perf.memory import estimate_memory
from trainperf.train.loss import IGNORE_INDEX, LossTargets, loss_terms, weighted_loss_terms

BASE = Config(benchmark="llama31_8b", scale="tiny")  # train.seq_len 8192 (TrainConfig default)


@pytest.mark.parametrize("cp", [1, 2, 3, 4])
def test_positions_split_every_sequence_evenly(cp: int) -> None:
    seq = 8 * cp
    parts = [cp_positions(seq, cp=cp, rank=r) for r in range(cp)]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(seq))
    # load balance: every rank's queries see the same number of keys under the causal mask
    work = {int((p + 1).sum()) for p in parts}
    assert len(work) == 1, work
    # the gathered rank order [rank 0's chunks, rank 1's, ...] maps back to the sequence
    slots = [c for r in range(cp) for c in cp_chunks(cp=cp, rank=r)]
    assert [slots[i] for i in _global_chunk_order(cp)] == list(range(2 * cp))


def test_positions_refuse_a_sequence_that_does_not_cut_into_2cp_chunks() -> None:
    with pytest.raises(ValueError, match=r"seq_len\(10\) divisible by 2 x cp = 4"):
        cp_positions(10, cp=2, rank=0)


def test_lower_right_causal_matches_the_rows_of_full_attention() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 12, 8, dtype=torch.float64) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = causal_lower_right(q[:, :, 9:], k[:, :, :12], v[:, :, :12])
    torch.testing.assert_close(out, full[:, :, 9:])
    out = causal_lower_right(q[:, :, 4:8], k[:, :, :8], v[:, :, :8])
    torch.testing.assert_close(out, full[:, :, 4:8])


@pytest.mark.parametrize("cp", [2, 3])
def test_each_ranks_chunks_attend_as_full_causal_attention(cp: int) -> None:
    """attend_chunks over the whole K/V (what the all-gather gives) = full attention's rows of
    that rank, values and gradients, with grouped K/V heads (8 query heads, 2 K/V heads)."""
    torch.manual_seed(0)
    seq = 12 * cp
    q = torch.randn(2, 8, seq, 16, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 2, seq, 16, dtype=torch.float64, requires_grad=True) for _ in "kv")
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    grad_out = torch.randn_like(full)
    ref = torch.autograd.grad(full, (q, k, v), grad_out)
    outs, grads = [], [torch.zeros_like(t) for t in (q, k, v)]
    for rank in range(cp):
        pos = cp_positions(seq, cp=cp, rank=rank)
        out = attend_chunks(q[:, :, pos], k, v, chunks=cp_chunks(cp=cp, rank=rank))
        torch.testing.assert_close(out, full[:, :, pos])
        for g, new in zip(grads, torch.autograd.grad(out, (q, k, v), grad_out[:, :, pos])):
            g += new  # K/V gradients add up over the ranks (the all-gather's reduce-scatter)
        outs.append(out)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_loss_targets_cut_along_the_sequence_add_up_to_the_batch_loss(reduction: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 16, 11)
    labels = torch.randint(0, 11, (3, 16))
    labels[0, :9] = IGNORE_INDEX  # a prompt: only the summary tokens are scored
    labels[2] = IGNORE_INDEX  # a sample with nothing scored
    s, c = loss_terms(logits, labels, reduction=reduction)
    targets = LossTargets.of(labels, reduction=reduction)
    torch.testing.assert_close(weighted_loss_terms(logits, targets), (s, c))
    total, count = torch.zeros(()), torch.zeros(())
    for rank in range(2):
        pos = cp_positions(16, cp=2, rank=rank)
        part = targets.select(pos, share=0.5)
        ps, pc = weighted_loss_terms(logits.index_select(1, pos), part)
        total, count = total + ps, count + pc
    torch.testing.assert_close((total, count), (s, c))


def test_dims_with_context_parallel() -> None:
    dims = ParallelDims(cp=2, tp=2, world_size=8)
    assert (dims.dp_shard, dims.cp, dims.tp) == (2, 2, 2)
    assert dims.dp_enabled and dims.cp_enabled
    assert ParallelDims(cp=2, world_size=2).dp_enabled  # FSDP over the cp ranks
    with pytest.raises(ValueError, match=r"cp\(2\) \* tp\(2\) = 4 must divide world_size\(6\)"):
        ParallelDims(cp=2, tp=2, world_size=6)
    with pytest.raises(ValueError, match=r"cp\(0\) must be >= 1"):
        ParallelDims(cp=0)
    cfg = get_llama_config("debug")
    with pytest.raises(ValueError, match=r"seq_len\(30\) cannot be"):
        ParallelDims(cp=2, world_size=2).validate_sizes(tp_sizes(cfg), seq_len=30)
    # sequence parallel splits each cp rank's share again: 8192 / cp 4 = 2048 tokens, / tp 8
    ParallelDims(cp=4, tp=2, world_size=8).validate_sizes(tp_sizes(cfg), seq_len=8192)


def test_config_refuses_a_seq_len_that_cp_cannot_cut() -> None:
    with pytest.raises(
        ValueError, match=r"parallel.cp=3 .* train.seq_len\(8192\) is not divisible"
    ):
        apply_overrides(BASE, ["parallel.cp=3"])
    with pytest.raises(ValueError, match=r"parallel.cp\(0\) must be >= 1"):
        apply_overrides(BASE, ["parallel.cp=0"])
    assert apply_overrides(BASE, ["parallel.cp=2"]).parallel.cp == 2


def test_memory_estimate_divides_the_activations_by_cp() -> None:
    cfg = FAMILY.shape(get_llama_config("llama2-70b"))
    kwargs = dict(world=8, seq_len=8192, micro_batch=1, ac="full", lora=True, float8="none")
    one, two = (estimate_memory(cfg, **kwargs, chunked_ce=True, cp=cp) for cp in (1, 2))
    assert two.activations_gib == pytest.approx(one.activations_gib / 2)
    assert two.weights_gib == one.weights_gib
