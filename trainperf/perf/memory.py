"""The memory estimate of a training layout: peak GiB per GPU, before anything is built.

The estimate (bytes per GPU, N ranks sharding with FSDP, sequence T, micro-batch b):

- full training: fp32 master weights, fp32 gradients and two AdamW moments, all sharded:
  16 P / N; the root's bf16 gathered weights (embedding + output) stay: 2 P_root;
- LoRA: the frozen base in bf16 sharded, 2 P / N, or in float8 replicated, P_blocks (+ 2 P_root);
- activations per layer and token, from trainperf's measured peaks (bench/RESULTS.md): about 24 d
  bytes without checkpointing, 12 d with selective, 2 d (the block input) with full, plus one
  layer's full set while it is recomputed; LoRA adds its float32 input copies;
- the loss: the chunked cross entropy keeps T b V bf16 gradients (plain: T b V x 10 bytes);
- 2 unsharded blocks in flight (FSDP prefetch) and 3 GiB for the CUDA context and allocator.

It reproduces the measured peaks within about 15 % (tests/unit/perf/test_memory.py); a layout
fits when the estimate is at most 92 % of the GPU's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainperf.config import Config

GIB = 2**30
OVERHEAD_GIB = 3.0
HEADROOM = 0.92
"""A layout fits when its estimate is at most this fraction of the GPU's memory (the estimate's
error and the allocator's fragmentation)."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a model that the estimate needs, for any family (``family.shape``)."""

    n_layers: int
    """Repeated blocks (each one FSDP / checkpointing unit)."""
    dim: int
    """Hidden width: the activations kept per token and block scale with it."""
    block_params: int
    """Parameters of one block."""
    root_params: int
    """Parameters outside the blocks (embeddings, output layer, ...)."""
    vocab_size: int = 0
    """Logits per token of an output layer whose loss is computed on it (0: none)."""


@dataclass
class MemoryEstimate:
    weights_gib: float
    optimizer_gib: float
    activations_gib: float
    loss_gib: float
    other_gib: float

    @property
    def total_gib(self) -> float:
        return (
            self.weights_gib + self.optimizer_gib + self.activations_gib + self.loss_gib
            + self.other_gib
        )  # fmt: skip

    def describe(self) -> str:
        return f"~{self.total_gib:.0f} GiB/GPU ({self.parts()})"

    def parts(self) -> str:
        """The GiB of each part: 'weights 1.0, gradients + optimizer 3.0, ...'."""
        return (
            f"weights {self.weights_gib:.1f}, gradients + optimizer {self.optimizer_gib:.1f}, "
            f"activations {self.activations_gib:.1f}, loss {self.loss_gib:.1f}, other "
            f"{self.other_gib:.1f}"
        )


def estimate_memory(
    cfg: ModelShape,
    *,
    world: int,
    seq_len: int,
    micro_batch: int,
    ac: str,
    lora: bool,
    float8: str,
    chunked_ce: bool,
    cp: int = 1,
    master_bytes: int = 4,
) -> MemoryEstimate:
    """Peak bytes per GPU of one training step, in GiB (see the module docstring).

    cp: context-parallel degree; a rank holds the activations of seq_len / cp tokens of each
    sample (the all-gathered K/V of one layer at a time are small beside them). master_bytes:
    bytes of a trained weight, and of its gradient and each AdamW state (4: float32, 2: bf16)."""
    layer, root = cfg.block_params, cfg.root_params
    blocks = cfg.n_layers * layer
    tokens = seq_len * micro_batch // cp
    if lora and float8 != "none":
        weights, optim = blocks + 2 * root / world, 0.0  # float8 base, replicated
    elif lora:
        weights, optim = 2 * (blocks + root) / world, 0.0
    else:
        weights = master_bytes * (blocks + root) / world
        optim = 3 * master_bytes * (blocks + root) / world  # gradient, exp_avg, exp_avg_sq
    weights += 2 * root if world > 1 else 0  # the gathered root stays until backward
    per_token = {"none": 24, "selective": 12, "full": 2}[ac] * cfg.dim
    if lora:
        per_token += 8 * cfg.dim if ac == "none" else 0  # float32 copies of the adapters' input
    acts = cfg.n_layers * per_token * tokens
    if ac != "none":
        acts += 26 * cfg.dim * tokens  # the block being recomputed
    loss = tokens * cfg.vocab_size * (2 if chunked_ce else 10)
    in_flight = 2 * 2 * layer if world > 1 else 0
    return MemoryEstimate(
        weights_gib=weights / GIB,
        optimizer_gib=optim / GIB,
        activations_gib=acts / GIB,
        loss_gib=loss / GIB,
        other_gib=in_flight / GIB + OVERHEAD_GIB,
    )


def estimate_config_memory(cfg: Config, shape: ModelShape, *, world: int) -> MemoryEstimate:
    """`estimate_memory` for a run config (its sequence, micro-batch and parallel layout) and
    the shape of its model (``family.shape(family.model_config(cfg))``)."""
    par, t = cfg.parallel, cfg.train
    return estimate_memory(
        shape,
        world=world,
        seq_len=t.seq_len,
        micro_batch=t.micro_batch_size,
        ac=par.activation_checkpointing,
        lora=cfg.model.lora_rank > 0,
        float8=par.float8,
        chunked_ce=cfg.chunked_cross_entropy,
        cp=par.cp,
        master_bytes=2 if t.master_dtype == "bfloat16" else 4,
    )
