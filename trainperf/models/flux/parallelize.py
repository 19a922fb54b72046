"""The Flux family's parallel plan: its blocks and the Linears float8 leaves alone.

- blocks: the double-stream then the single-stream blocks, each one unit of activation
  checkpointing, torch.compile and FSDP (the embedders and the final layer are the root's).
- tensor parallel: none yet (``tensor_parallel=None``: `parallelize_model` refuses tp > 1 with
  that reason). A plan needs colwise splits of the fused projections that give each rank whole
  heads of q, k and v (and its share of the MLP inside a single block's linear1 = [qkv | mlp]),
  a rowwise linear2 whose input columns are [attention | MLP] packed per rank, replicated
  modulation vectors, and sequence parallel over the joint text + image sequence. At MLPerf's
  256 x 256 images (512 tokens per sample) FSDP alone shards the 11.9 B model's weights and
  AdamW state to ~24 GiB per GPU over 8 GPUs, so TP waits until a layout needs it.
- attention kernels: none (no context parallel yet; each block's ``sdpa`` is the kernel a CP
  plan would swap). 512 tokens per sample leave little to split.
- float8_skip: the Linears that multiply one vector per sample (the modulations ``lin`` of
  every block, the final ``adaLN_modulation.1``, the timestep and text embedders ``in_layer``
  and ``out_layer``): matmuls with as many rows as the micro-batch are bound by reading the
  weight, so float8 saves no time, while its cast reads the whole weight every step (the
  modulations hold about 27 % of flux-schnell's parameters) and quantizes the shift, scale and
  gate that multiply every residual branch. ``img_in`` (64 input channels: too narrow to gain,
  and it would quantize the noisy latent itself) and the final ``linear``, whose output is the
  velocity the MSE loss reads directly (as a Llama's output layer feeding the softmax). What
  is left in float8 (qkv, proj, the MLPs, linear1, linear2, txt_in) does 99.9 % of the Linear
  FLOPs of flux-schnell (the skipped ones 0.1 %).
"""

from __future__ import annotations

from trainperf.models.flux.model import Flux, FluxConfig
from trainperf.parallel.plan import ParallelPlan

FLOAT8_SKIP = ("lin", "adaLN_modulation.1", "in_layer", "out_layer", "img_in", "linear")


def tp_sizes(cfg: FluxConfig) -> dict[str, int]:
    """What a tensor-parallel degree would have to divide (whole heads and an equal share of
    the widths per rank); checked before anything is built, though tp > 1 is refused for now."""
    return {
        "num_heads": cfg.num_heads,
        "hidden_size": cfg.hidden_size,
        "mlp_hidden_dim": cfg.mlp_hidden_dim,
    }


def parallel_plan(model: Flux) -> ParallelPlan:
    """The plan of a (meta-built) Flux for `parallelize_model`."""
    return ParallelPlan(
        blocks=[model.double_blocks, model.single_blocks],
        tensor_parallel=None,
        attention_kernels=[],
        float8_skip=FLOAT8_SKIP,
    )
