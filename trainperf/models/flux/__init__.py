"""The Flux family (the FLUX.1 transformer of MLPerf's flux1 text-to-image benchmark).

model.py (the model, its size registry, latent packing and FLOP count), hf.py (diffusers
FluxTransformer2DModel checkpoints), parallelize.py (blocks, float8 exceptions; no tensor
parallel yet). `FAMILY` is what the rest of trainperf sees.

Sizes of a run: ``model.flavor`` names an entry of `FLUX_CONFIGS`; ``model.n_layers`` makes a
proxy of it with n_layers double-stream and 2 x n_layers single-stream blocks (FLUX.1's ratio,
19 and 38; the peer baseline's flux-proxy is n_layers=6). A sample is the flavor's image +
text tokens (256 + 256 for 256 x 256 images), so ``train.seq_len`` must be their sum (512).
"""

from __future__ import annotations

import torch
from torch import nn

from trainperf.config import Config, ModelConfig
from trainperf.models.family import ModelFamily
from trainperf.models.flux.hf import (
    load_diffusers_checkpoint,
    save_diffusers_checkpoint,
    verify_checkpoint,
)
from trainperf.models.flux.model import (
    FLUX_CONFIGS,
    DoubleStreamBlock,
    Flux,
    FluxConfig,
    SingleStreamBlock,
    get_flux_config,
    num_params,
    training_flops_per_sample,
)
from trainperf.models.flux.parallelize import parallel_plan, tp_sizes
from trainperf.perf.memory import ModelShape


def model_config(cfg: Config) -> FluxConfig:
    """The FluxConfig a run of `cfg` builds: the flavor, with n_layers double-stream and
    2 x n_layers single-stream blocks when ``cfg.model.n_layers`` is set."""
    n = cfg.model.n_layers
    if n is None:
        return get_flux_config(cfg.model.flavor)
    return get_flux_config(cfg.model.flavor, depth=n, depth_single_blocks=2 * n)


def build(model_cfg: FluxConfig, m: ModelConfig) -> nn.Module:
    """A Flux on the current default device (meta for a run); every parameter is trained."""
    if m.lora_rank:
        raise ValueError(
            f"model.lora_rank({m.lora_rank}): the Flux family has no LoRA (MLPerf flux1 trains "
            "every parameter from scratch); set model.lora_rank=0"
        )
    return Flux(model_cfg)


def flops_per_sample(cfg: FluxConfig, seq_len: int) -> float:
    """Training FLOPs of one sample; `seq_len` must be its joint sequence (image + text)."""
    if seq_len != cfg.seq_len:
        raise ValueError(
            f"a Flux sample is image_tokens({cfg.image_tokens}) + text_tokens"
            f"({cfg.text_tokens}) = {cfg.seq_len} tokens, not seq_len({seq_len}); use a "
            f"sequence length of {cfg.seq_len} (train.seq_len={cfg.seq_len})"
        )
    return float(training_flops_per_sample(cfg))


def shape(cfg: FluxConfig) -> ModelShape:
    """Blocks = double + single (their average size); root = embedders + final layer."""
    with torch.device("meta"):
        double, single, model = DoubleStreamBlock(cfg), SingleStreamBlock(cfg), Flux(cfg)
    n_layers = cfg.depth + cfg.depth_single_blocks
    blocks = cfg.depth * num_params(double) + cfg.depth_single_blocks * num_params(single)
    return ModelShape(
        n_layers=n_layers,
        dim=cfg.hidden_size,
        block_params=round(blocks / n_layers),
        root_params=num_params(model) - blocks,
        vocab_size=0,  # the loss is an MSE on the output, no logits
    )


FAMILY = ModelFamily(
    name="flux",
    configs=FLUX_CONFIGS,
    model_config=model_config,
    build=build,
    parallel_plan=parallel_plan,
    tp_sizes=tp_sizes,
    init_weights=lambda model: model.init_weights(),
    init_adapters=lambda model: 0,  # no adapters
    load_checkpoint=load_diffusers_checkpoint,
    save_checkpoint=save_diffusers_checkpoint,
    verify_checkpoint=verify_checkpoint,
    flops_per_sample=flops_per_sample,
    shape=shape,
)
