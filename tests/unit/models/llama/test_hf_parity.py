"""Numerical parity with HF Transformers' LlamaForCausalLM (CPU, float32, no network).

Random tiny Llama-2-style (plain RoPE) and Llama-3.1-style (llama3 RoPE scaling, all three
frequency bands hit) models are saved with `save_pretrained` and loaded by trainperf; logits,
loss and every gradient must match HF to 1e-5 relative error (||ours - hf|| / ||hf||).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers  # noqa: E402  (test extra: a missing install must fail, not skip)
from safetensors.torch import load_file, save_file

from trainperf.models.llama.hf import (
    config_from_hf,
    from_hf_state_dict,
    load_hf_checkpoint,
    save_hf_checkpoint,
)
from trainperf.models.llama.model import Llama, precompute_rope_freqs

TOL = 1e-5
VOCAB, SEQ = 256, 48
# original_max_position_embeddings 64 with head_dim 16, theta 5e5: wavelengths 6.3 (< 16: kept),
# 32 (between 16 and 64: interpolated) and >= 167 tokens (> 64: divided by 8).
LLAMA31_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
STYLES = {
    "llama2": {"rope_theta": 10000.0, "rope_scaling": None},
    "llama31": {"rope_theta": 500000.0, "rope_scaling": LLAMA31_SCALING},
}


def build_hf(style: str, *, seed: int = 0):
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attn_implementation="eager",
        **STYLES[style],
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).float().eval()
    # HF's init leaves norms at 1 and small weights; perturb the norms so they are exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def save_hf(model, folder: Path, **kwargs) -> Path:
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    return folder


def load_ours(folder: Path, **overrides: object) -> Llama:
    hf_config = json.loads((folder / "config.json").read_text())
    cfg = config_from_hf(hf_config, **overrides)
    model = Llama(cfg)
    load_hf_checkpoint(model, folder)
    return model


def tokens(batch: int = 2, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(1))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def lm_loss(logits: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten())


def fuse_hf_checkpoint(src: Path, dst: Path) -> Path:
    """The MLPerf layout: q/k/v_proj of each layer renamed into one qkv_proj = [q; k; v]."""
    tensors = {}
    for file in sorted(src.glob("*.safetensors")):
        tensors.update(load_file(file))
    for name in [n for n in tensors if ".self_attn.q_proj." in n]:
        parts = [tensors.pop(name.replace("q_proj", x)) for x in ("q_proj", "k_proj", "v_proj")]
        tensors[name.replace("q_proj", "qkv_proj")] = torch.cat(parts)
    dst.mkdir()
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def test_llama31_style_hits_all_three_rope_bands() -> None:
    cfg = config_from_hf(build_hf("llama31").config.to_dict())
    freqs = precompute_rope_freqs(cfg)
    plain = cfg.rope_theta ** -(torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    wavelen = 2 * math.pi / plain
    assert (wavelen < 16).any() and ((wavelen > 16) & (wavelen < 64)).any()
    assert (wavelen > 64).any()
    assert not torch.allclose(freqs.double(), plain.float().double())


@pytest.mark.parametrize("style", sorted(STYLES))
def test_logits_match_hf(style: str, tmp_path: Path) -> None:
    hf = build_hf(style)
    ours = load_ours(save_hf(hf, tmp_path / "hf"))
    assert ours.cfg.rope_scaling is None if style == "llama2" else ours.cfg.rope_scaling
    toks = tokens()
    with torch.no_grad():
        assert rel_err(ours(toks), hf(toks).logits) < TOL


@pytest.mark.parametrize("style", sorted(STYLES))
def test_training_step_loss_and_grads_match_hf(style: str, tmp_path: Path) -> None:
    hf = build_hf(style)
    ours = load_ours(save_hf(hf, tmp_path / "hf"))
    toks = tokens()
    hf_loss, our_loss = lm_loss(hf(toks).logits, toks), lm_loss(ours(toks), toks)
    hf_loss.backward()
    our_loss.backward()
    assert abs(our_loss.item() - hf_loss.item()) / hf_loss.item() < TOL
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    expected = from_hf_state_dict(hf_grads, ours.cfg)  # HF grads in our names and row order
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.norm() > 0, name
        assert rel_err(p.grad, expected[name]) < TOL, name


@pytest.mark.parametrize("style", sorted(STYLES))
def test_fused_qkv_checkpoint_matches_hf(style: str, tmp_path: Path) -> None:
    hf = build_hf(style)
    standard = save_hf(hf, tmp_path / "hf")
    fused = fuse_hf_checkpoint(standard, tmp_path / "fused")
    toks = tokens()
    with torch.no_grad():
        expected = hf(toks).logits
        # fused -> fused (MLPerf), fused -> unfused, standard -> fused
        for folder, fused_model in ((fused, True), (fused, False), (standard, True)):
            ours = load_ours(folder, fused_qkv=fused_model)
            assert ours.cfg.fused_qkv == fused_model
            assert rel_err(ours(toks), expected) < TOL, (folder.name, fused_model)


def test_multi_file_checkpoint_with_index(tmp_path: Path) -> None:
    hf = build_hf("llama31")
    folder = save_hf(hf, tmp_path / "hf", max_shard_size="40KB")
    assert len(list(folder.glob("*.safetensors"))) > 2
    assert (folder / "model.safetensors.index.json").exists()
    ours = load_ours(folder)
    toks = tokens()
    with torch.no_grad():
        assert rel_err(ours(toks), hf(toks).logits) < TOL


@pytest.mark.parametrize(("style", "fused"), [("llama2", True), ("llama31", False)])
def test_save_round_trip_through_hf_from_pretrained(
    style: str, fused: bool, tmp_path: Path
) -> None:
    hf = build_hf(style)
    ours = load_ours(save_hf(hf, tmp_path / "hf"), fused_qkv=fused)
    # fused=False: HF's LlamaForCausalLM cannot read the fused layout.
    out = save_hf_checkpoint(ours, tmp_path / "ours", fused=False)
    assert out == tmp_path / "ours"
    back = transformers.LlamaForCausalLM.from_pretrained(
        out, attn_implementation="eager", torch_dtype=torch.float32
    ).eval()
    toks = tokens()
    with torch.no_grad():
        expected = ours(toks)
        assert rel_err(back(toks).logits, expected) < TOL
        torch.testing.assert_close(back(toks).logits, hf(toks).logits, rtol=0, atol=0)


def test_meta_built_model_saves_and_loads(tmp_path: Path) -> None:
    hf = build_hf("llama31")
    ours = load_ours(save_hf(hf, tmp_path / "hf"), fused_qkv=True)
    save_hf_checkpoint(ours, tmp_path / "fused")  # the model's own (fused) layout
    assert any("qkv_proj" in k for k in load_file(tmp_path / "fused" / "model.safetensors"))
    with torch.device("meta"):
        fresh = Llama(ours.cfg)
    fresh.to_empty(device="cpu")
    load_hf_checkpoint(fresh, tmp_path / "fused")  # also recomputes the RoPE table
    toks = tokens()
    with torch.no_grad():
        torch.testing.assert_close(fresh(toks), ours(toks), rtol=0, atol=0)
        assert rel_err(fresh(toks), hf(toks).logits) < TOL
