"""Numerical parity with HF Transformers' GptOssForCausalLM (CPU, float32, no network).

A random tiny gpt-oss (sinks, a sliding window shorter than the sequence, YaRN RoPE with all
three frequency bands, 8 experts top-2, biases perturbed away from zero) is saved with
`save_pretrained` and loaded by trainperf: logits, the training loss with HF's load-balancing
term, and every gradient match HF to 1e-5 relative error (||ours - hf|| / ||hf||): float32
sums of a few hundred terms are off by ~1e-7 relatively, and the two models add the experts'
outputs in different orders. The checkpoint layout round-trips through HF's from_pretrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

from trainperf.models.gpt_oss.hf import (
    config_from_hf,
    from_hf_state_dict,
    load_hf_checkpoint,
    save_hf_checkpoint,
    verify_checkpoint,
)
from trainperf.models.gpt_oss.model import GptOss, get_gpt_oss_config, num_params, rope_freqs

TOL = 1e-5
VOCAB, SEQ = 256, 40
AUX = 0.01


def hf_config(**overrides) -> transformers.GptOssConfig:
    fields = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=8,
        num_experts_per_tok=2, sliding_window=8, max_position_embeddings=128,
        attn_implementation="eager", router_aux_loss_coef=AUX, output_router_logits=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 32},
    )  # fmt: skip
    fields.update(overrides)
    return transformers.GptOssConfig(**fields)


def build_hf(seed: int = 0) -> transformers.GptOssForCausalLM:
    torch.manual_seed(seed)
    model = transformers.GptOssForCausalLM(hf_config()).float()
    with torch.no_grad():  # exercise the norms and biases HF's init leaves at 1 and 0
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif "bias" in name:
                p.normal_(0.0, 0.02)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[transformers.GptOssForCausalLM, Path]:
    hf = build_hf()
    folder = tmp_path_factory.mktemp("gpt_oss") / "hf"
    hf.save_pretrained(folder)
    return hf, folder


def load_ours(folder: Path) -> GptOss:
    cfg = config_from_hf(json.loads((folder / "config.json").read_text()))
    cfg.router_aux_loss_coef = AUX
    model = GptOss(cfg)
    load_hf_checkpoint(model, folder)
    return model


def tokens(batch: int = 2, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(1))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_config_hits_every_feature(saved) -> None:
    _, folder = saved
    cfg = load_ours(folder).cfg
    assert cfg.sliding_window < SEQ and cfg.is_sliding(0) and not cfg.is_sliding(1)
    assert cfg.yarn is not None and cfg.attention_sinks and cfg.bias
    plain = 1.0 / cfg.rope_theta ** (torch.arange(0, 16, 2) / 16)
    ratio = rope_freqs(cfg) / plain  # 1: kept, 1 / factor: interpolated, between: the ramp
    assert (ratio == 1).any() and (ratio == 1 / cfg.yarn.factor).any()
    assert ((ratio > 1 / cfg.yarn.factor) & (ratio < 1)).any()


def test_rope_frequencies_match_hf() -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = hf_config()
    inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    cfg = config_from_hf(config.to_dict())
    torch.testing.assert_close(rope_freqs(cfg), inv_freq.float(), rtol=1e-6, atol=0)
    assert cfg.yarn.attention_factor == pytest.approx(factor)


def test_logits_match_hf(saved) -> None:
    hf, folder = saved
    ours = load_ours(folder)
    with torch.no_grad():
        assert rel_err(ours(tokens()), hf(tokens()).logits) < TOL


def _our_loss(model: GptOss, toks: torch.Tensor) -> torch.Tensor:
    def head(hidden, weight):  # the trainer's (loss sum, count) contract
        logits = hidden @ weight.T
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten(), reduction="sum")
        return loss, torch.tensor(float(toks[:, 1:].numel()))

    total, count = model(toks, head=head)
    return total / count


def test_training_loss_with_load_balancing_and_grads_match_hf(saved) -> None:
    hf, folder = saved
    ours = load_ours(folder)
    hf.train()
    ours.train()
    toks = tokens()
    out = hf(toks, labels=toks)  # cross entropy + router_aux_loss_coef x aux
    ours_loss = _our_loss(ours, toks)
    assert out.aux_loss.item() > 1.0  # the balancing term is really in the sum
    assert abs(ours_loss.item() - out.loss.item()) / out.loss.item() < TOL
    hf.zero_grad()
    out.loss.backward()
    ours_loss.backward()
    expected = from_hf_state_dict({n: p.grad for n, p in hf.named_parameters()}, ours.cfg)
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.norm() > 0, name
        assert rel_err(p.grad, expected[name]) < TOL, name


def test_save_round_trip_through_hf_from_pretrained(saved, tmp_path: Path) -> None:
    hf, folder = saved
    ours = load_ours(folder)
    out = save_hf_checkpoint(ours, tmp_path / "ours")
    back = transformers.GptOssForCausalLM.from_pretrained(
        out, attn_implementation="eager", dtype=torch.float32
    ).eval()
    with torch.no_grad():
        expected = hf.eval()(tokens()).logits
        torch.testing.assert_close(back(tokens()).logits, expected, rtol=0, atol=0)


def test_meta_built_model_loads(saved) -> None:
    _, folder = saved
    ours = load_ours(folder)
    with torch.device("meta"):
        fresh = GptOss(ours.cfg)
    with pytest.raises(ValueError, match="meta device"):
        load_hf_checkpoint(fresh, folder)
    fresh.to_empty(device="cpu")
    load_hf_checkpoint(fresh, folder)  # also recomputes the RoPE table
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens()), ours(tokens()), rtol=0, atol=0)


def test_bad_checkpoints_are_one_clear_error(saved, tmp_path: Path) -> None:
    _, folder = saved
    ours = load_ours(folder)
    before = {n: p.clone() for n, p in ours.named_parameters()}
    bad = tmp_path / "mxfp4"
    bad.mkdir()
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.0.mlp.experts.down_proj_blocks"] = tensors.pop(
        "model.layers.0.mlp.experts.down_proj"
    )
    save_file(tensors, str(bad / "model.safetensors"))
    (bad / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ValueError, match="MXFP4"):
        load_hf_checkpoint(ours, bad)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "num_local_experts": 16}))
    (wrong / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="n_experts: model 8 vs checkpoint 16"):
        load_hf_checkpoint(ours, wrong)
    with pytest.raises(ValueError, match="no config.json"):
        load_hf_checkpoint(ours, tmp_path)
    for name, p in ours.named_parameters():
        assert torch.equal(p, before[name]), name
    with pytest.raises(ValueError, match="does not match"):
        verify_checkpoint(folder, "gpt-oss-20b")


@pytest.mark.parametrize("flavor", ["gpt-oss-20b", "gpt-oss-120b"])
def test_registry_sizes_are_hf_models(flavor: str) -> None:
    """The flavors of OpenAI's models hold as many parameters as HF builds from their config."""
    cfg = get_gpt_oss_config(flavor)
    from trainperf.models.gpt_oss.hf import config_to_hf

    with torch.device("meta"):
        hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**config_to_hf(cfg)))
    assert num_params(cfg) == sum(p.numel() for p in hf.parameters())
    assert config_from_hf(hf.config.to_dict(), max_seq_len=cfg.max_seq_len) == cfg


def test_qk_norm_checkpoint_round_trips_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    """The MLPerf reference's variant (qk_norm, plain SwiGLU: swiglu_limit null, no sinks or
    biases) saves in the HF layout with its q and k norm weights (Qwen3's names) and config key,
    loads back bit for bit; a model without QK norm refuses that checkpoint, naming the field,
    and stays untouched."""
    cfg = get_gpt_oss_config("tiny", vocab_size=256)
    torch.manual_seed(3)
    ours = GptOss(cfg)
    ours.init_weights()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    folder = save_hf_checkpoint(ours, tmp_path / "qk")
    saved = load_file(folder / "model.safetensors")
    assert "model.layers.1.self_attn.k_norm.weight" in saved
    assert json.loads((folder / "config.json").read_text())["qk_norm"] is True
    back = GptOss(cfg)
    load_hf_checkpoint(back, folder)
    for (name, a), b in zip(ours.named_parameters(), back.parameters()):
        assert torch.equal(a, b), name
    plain = GptOss(get_gpt_oss_config("tiny", vocab_size=256, qk_norm=False))
    plain.init_weights()  # (torch.empty may hold NaN, which equals nothing)
    before = {n: p.clone() for n, p in plain.named_parameters()}
    with pytest.raises(ValueError, match="qk_norm: model False vs checkpoint True"):
        load_hf_checkpoint(plain, folder)
    assert all(torch.equal(p, before[n]) for n, p in plain.named_parameters())
