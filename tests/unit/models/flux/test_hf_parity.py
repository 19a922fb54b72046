"""Numerical parity with diffusers' FluxTransformer2DModel (CPU, float64, no network).

A random debug Flux (every parameter perturbed, so that the zero-initialised modulations and
final layer count too) is saved in diffusers' layout and read by `from_pretrained`; a random
diffusers model is saved by `save_pretrained` (sharded) and loaded by trainperf. Outputs and
every gradient are compared in float64, relative to their norm (||ours - theirs|| / ||theirs||):

- outputs within 1e-12: both models compute the same operations; float64 matmuls in a different
  order (our fused qkv and linear1 against diffusers' separate projections) differ by ~1e-16
  per reduction (measured: 5e-16);
- gradients within 1e-6: RoPE runs in float32 in both models, as in the reference, and the two
  gradient terms of each rotated channel are added in float32 by us (one cast, like the
  reference) but in float64 by diffusers (it casts q twice), so every gradient upstream of q
  and k agrees to float32 rounding, ~6e-8 per element (measured: at most 3e-8).
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers  # noqa: F401  (test extra: a missing install must fail, not skip)
import torch
from diffusers import FluxTransformer2DModel

from trainperf.models.flux.hf import (
    INDEX_FILE,
    config_from_diffusers,
    config_to_diffusers,
    from_diffusers_state_dict,
    load_diffusers_checkpoint,
    save_diffusers_checkpoint,
)
from trainperf.models.flux.model import (
    Flux,
    get_flux_config,
    image_position_ids,
    text_position_ids,
)

OUT_TOL, GRAD_TOL = 1e-12, 1e-6
F64 = torch.float64


def perturb_(model: torch.nn.Module, *, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)


def ours_debug(seed: int = 0) -> Flux:
    """Our debug Flux in float64 with diffusers' QK-norm epsilon (1e-6)."""
    model = Flux(get_flux_config("debug", qk_norm_eps=1e-6))
    torch.manual_seed(seed)
    model.init_weights()
    perturb_(model, seed=seed + 1)
    return model.to(F64)


def batch(cfg, n: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {
        "img": torch.randn(n, cfg.image_tokens, cfg.in_channels, generator=gen, dtype=F64),
        "img_ids": image_position_ids(8, 8).to(F64),  # 4 x 4 tokens of an 8 x 8 latent
        "txt": torch.randn(n, cfg.text_tokens, cfg.context_in_dim, generator=gen, dtype=F64),
        "txt_ids": text_position_ids(cfg.text_tokens).to(F64),
        "timesteps": torch.rand(n, generator=gen, dtype=F64),
        "y": torch.randn(n, cfg.vec_in_dim, generator=gen, dtype=F64),
    }


def run_diffusers(model: FluxTransformer2DModel, b: dict[str, torch.Tensor]) -> torch.Tensor:
    # diffusers multiplies the timestep by 1000 inside, like ours: both take t in [0, 1]
    return model(
        hidden_states=b["img"],
        encoder_hidden_states=b["txt"],
        pooled_projections=b["y"],
        timestep=b["timesteps"],
        img_ids=b["img_ids"],
        txt_ids=b["txt_ids"],
    ).sample


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_our_checkpoint_in_diffusers_gives_our_outputs_and_gradients(tmp_path: Path) -> None:
    ours = ours_debug()
    theirs = FluxTransformer2DModel.from_pretrained(
        save_diffusers_checkpoint(ours, tmp_path / "ckpt"), torch_dtype=F64
    )
    b = batch(ours.cfg)
    our_out, their_out = ours(**b), run_diffusers(theirs, b)
    assert their_out.abs().max() > 1  # a real signal, not the zero-init output
    assert rel_err(our_out, their_out) < OUT_TOL
    our_out.square().mean().backward()
    their_out.square().mean().backward()
    their_grads = {n: p.grad for n, p in theirs.named_parameters()}
    expected = from_diffusers_state_dict(their_grads, ours.cfg)  # in our names and rows
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.norm() > 0, name
        assert rel_err(p.grad, expected[name]) < GRAD_TOL, name


def test_sharded_diffusers_checkpoint_loads_into_ours(tmp_path: Path) -> None:
    cfg = get_flux_config("debug")
    kwargs = {k: v for k, v in config_to_diffusers(cfg).items() if not k.startswith("_")}
    torch.manual_seed(4)
    theirs = FluxTransformer2DModel(**kwargs).to(F64)
    perturb_(theirs, seed=5)
    theirs.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / INDEX_FILE).is_file()
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 2
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    ours = Flux(config_from_diffusers(config)).to(F64)
    load_diffusers_checkpoint(ours, tmp_path / "hf")
    b = batch(cfg)
    with torch.no_grad():
        assert rel_err(ours(**b), run_diffusers(theirs, b)) < OUT_TOL
