"""The Llama family's parallel plan: its blocks, tensor-parallel styles and attention kernels.

The tensor-parallel plan is torchtitan's (`models/llama3/infra/parallelize.py`):

- attention: wq, wk, wv (or the fused wqkv) column-parallel, so each rank computes whole heads;
  wo row-parallel, its partial sums reduced. SwiGLU likewise: w1, w3 column, w2 row.
- tok_embeddings row-parallel (vocabulary rows split; out-of-shard tokens give zeros that the
  reduction fills in); output column-parallel (vocabulary rows split), logits gathered.
- sequence parallel: the norms and residual adds between the matmul regions work on 1/tp of
  the tokens of every sequence.

The model's forward runs unchanged: Attention reshapes to `-1` heads, so on each rank it sees
n_heads / tp query heads and n_kv_heads / tp K/V heads, which keep their grouping because
ColwiseParallel splits the rows of wq and wk/wv into contiguous equal blocks (rank r holds query
heads [r * n_heads / tp, ...) and exactly the K/V heads those query heads use). A fused wqkv
therefore lays out its rows per K/V group ([n_rep q heads, k, v] for each group), so that a
contiguous block of rows is a set of whole groups.

Logits come back replicated as a plain (B, T, vocab_size) tensor on every rank, so the loss
code needs no change. TODO([speed]): loss parallel (output Shard(-1) + `loss_parallel()`)
saves the all-gather of the logits and (tp - 1) / tp of their memory.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
)

from trainperf.models.llama.model import Llama, LlamaConfig
from trainperf.parallel.plan import ParallelPlan, TensorParallelPlan
from trainperf.parallel.tp import between_blocks, colwise, norm_style, rowwise

# Attention input projections that any version of the model may have (fused_qkv -> wqkv).
_QKV_NAMES = ("wq", "wk", "wv", "wqkv")


def tp_sizes(cfg: LlamaConfig) -> dict[str, int]:
    """What a tensor-parallel degree must divide: each rank takes whole query and K/V heads and
    an equal share of the SwiGLU width, the model width and the vocabulary."""
    return {
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_kv_heads,
        "ffn_dim": cfg.ffn_dim,
        "dim": cfg.dim,
        "vocab_size": cfg.vocab_size,
    }


def parallel_plan(model: Llama) -> ParallelPlan:
    """The plan of a (meta-built) Llama for `parallelize_model`."""
    return ParallelPlan(
        blocks=[model.layers],
        tensor_parallel=lambda sequence_parallel: _tp_plan(model, sequence_parallel),
        attention_kernels=[(block.attention, "sdpa") for block in model.layers.values()],
        float8_skip=("output",),  # its logits feed the softmax (NVIDIA and torchtitan too)
    )


def _tp_plan(model: Llama, sequence_parallel: bool) -> TensorParallelPlan:
    between = between_blocks(sequence_parallel=sequence_parallel)
    root: dict[str, ParallelStyle] = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=between),
        "output": ColwiseParallel(
            input_layouts=between, output_layouts=Replicate(), use_local_output=True
        ),
        "norm": norm_style(sequence_parallel=sequence_parallel),
    }
    blocks = [(b, _block_plan(b, sequence_parallel)) for b in model.layers.values()]
    layers = model.layers.values()
    norms = [model.norm] + [m for b in layers for m in (b.attention_norm, b.ffn_norm)]
    return TensorParallelPlan(
        root=root, blocks=blocks, sequence_parallel_norms=norms if sequence_parallel else []
    )


def _block_plan(block: nn.Module, sequence_parallel: bool) -> dict[str, ParallelStyle]:
    names = [n for n in _QKV_NAMES if isinstance(getattr(block.attention, n, None), nn.Module)]
    assert names, f"no attention input projection among {_QKV_NAMES} in {type(block.attention)}"
    between = between_blocks(sequence_parallel=sequence_parallel)
    return {
        "attention_norm": norm_style(sequence_parallel=sequence_parallel),
        # Turn the block's (B, T / tp, dim) or (B, T, dim) input into a replicated (B, T, dim)
        # DTensor once (an all-gather with SP). It stays a DTensor (x.shape is the global shape),
        # so in backward the partial gradients of wq, wk, wv (w1, w3) add up first and take one
        # reduce-scatter (all-reduce without SP), instead of one all-reduce per projection. The
        # projections return plain local tensors, so RoPE and SDPA never see a DTensor.
        # Attention's second input, the RoPE table, is left alone (None).
        "attention": PrepareModuleInput(
            input_layouts=(between, None), desired_input_layouts=(Replicate(), None)
        ),
        **{f"attention.{name}": colwise(block.attention, name) for name in names},
        "attention.wo": rowwise(block.attention, "wo", output_layout=between),
        "ffn_norm": norm_style(sequence_parallel=sequence_parallel),
        "feed_forward": PrepareModuleInput(
            input_layouts=(between,), desired_input_layouts=(Replicate(),)
        ),
        "feed_forward.w1": colwise(block.feed_forward, "w1"),
        "feed_forward.w3": colwise(block.feed_forward, "w3"),
        "feed_forward.w2": rowwise(block.feed_forward, "w2", output_layout=between),
    }
