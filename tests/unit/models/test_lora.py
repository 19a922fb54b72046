"""Unit tests for trainperf.models.lora: CPU only; the 70B counts are checked on the meta device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainperf.models.llama.model import Llama, LlamaConfig, get_llama_config
from trainperf.models.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    cast_lora_to,
    count_trainable,
    init_lora,
    lora_modules,
    lora_parameters,
    lora_state_dict,
    merged_state_dict,
)

UNFUSED_TARGETS = ("wq", "wk", "wv", "wo")

# MLPerf llama2_70b_lora: 80 layers x 16 x [(8192 + 10240) for qkv + (8192 + 8192) for o].
MLPERF_TRAINABLE = 80 * 16 * ((8192 + 10240) + (8192 + 8192))


def llama2_70b_config(*, fused: bool) -> LlamaConfig:
    """The registry's llama2-70b (fused_qkv=True there once it lands), else the same sizes."""
    extra = {"fused_qkv": fused}
    try:
        return get_llama_config("llama2-70b", **extra)
    except ValueError:  # registry entry not there: same sizes by hand
        sizes = dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=32000)
        return LlamaConfig(
            **sizes, ffn_dim=28672, rope_theta=1e4, rope_scaling=None, max_seq_len=8192, **extra
        )


def build_debug(*, seed: int = 0, fused: bool = False) -> Llama:
    extra = {"fused_qkv": True} if fused else {}
    model = Llama(get_llama_config("debug", **extra))
    torch.manual_seed(seed)
    model.init_weights()
    return model


def targets_for(fused: bool) -> tuple[str, ...]:
    return ("wqkv", "wo") if fused else UNFUSED_TARGETS


def random_tokens(batch: int = 2, seq_len: int = 16, *, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, seq_len), generator=gen)


@torch.no_grad()
def randomize_lora_b(model: nn.Module, *, seed: int = 2, std: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _, mod in lora_modules(model):
        w = mod.lora_b.weight
        w.copy_(torch.randn(w.shape, generator=gen) * std)


FUSED_PARAMS = [False, True]


# --- counts at 70B scale (meta device) ----------------------------------------------------------


def test_llama2_70b_fused_lora_has_mlperf_trainable_count() -> None:
    cfg = llama2_70b_config(fused=True)
    assert cfg.fused_qkv
    with torch.device("meta"):
        model = Llama(cfg)
    n = apply_lora(model, LoRAConfig())
    assert n == MLPERF_TRAINABLE == 44_564_480
    assert count_trainable(model) == 44_564_480
    assert sum(p.numel() for p in lora_parameters(model)) == 44_564_480
    assert len(list(lora_modules(model))) == 160
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"layers.{i}.attention.{t}.{ab}.weight"
        for i in range(80)
        for t in ("wqkv", "wo")
        for ab in ("lora_a", "lora_b")
    }
    assert all(p.is_meta for p in model.parameters())


def test_llama2_70b_unfused_lora_count() -> None:
    """Separate q/k/v adapters are a different (bigger) model than fused LoRA: 65,536,000."""
    with torch.device("meta"):
        model = Llama(llama2_70b_config(fused=False))
    n = apply_lora(model, LoRAConfig(targets=UNFUSED_TARGETS))
    per_layer = 16 * ((8192 + 8192) + 2 * (8192 + 1024) + (8192 + 8192))
    assert n == 80 * per_layer == 65_536_000


# --- LoRALinear -------------------------------------------------------------------------------


def test_lora_linear_is_the_peft_formula() -> None:
    torch.manual_seed(0)
    base = nn.Linear(12, 20, bias=False)
    lora = LoRALinear.from_linear(base, rank=4, alpha=8.0, dropout=0.0)
    assert lora.weight is base.weight and not lora.weight.requires_grad
    assert isinstance(lora, nn.Linear) and lora.scale == 2.0
    nn.init.normal_(lora.lora_b.weight)
    x = torch.randn(3, 5, 12)
    a, b = lora.lora_a.weight, lora.lora_b.weight
    expected = x @ base.weight.T + 2.0 * (x @ a.T @ b.T)
    torch.testing.assert_close(lora(x), expected)
    merged = lora.merged_weight()
    torch.testing.assert_close(F.linear(x, merged), expected)


def test_lora_linear_init_matches_peft_default() -> None:
    lora = LoRALinear(64, 32, rank=8, alpha=16.0)
    assert torch.count_nonzero(lora.lora_b.weight) == 0
    bound = 1 / 64**0.5  # kaiming_uniform_(a=sqrt(5)) on fan_in 64
    assert 0 < lora.lora_a.weight.abs().max() <= bound


def test_lora_linear_rejects_bias() -> None:
    with pytest.raises(ValueError, match="bias-free"):
        LoRALinear.from_linear(nn.Linear(4, 4, bias=True), rank=2, alpha=4.0)


# --- apply_lora on the debug model --------------------------------------------------------------


@pytest.mark.parametrize("fused", FUSED_PARAMS)
def test_only_lora_params_trainable_and_output_unchanged_at_init(fused: bool) -> None:
    model = build_debug(fused=fused)
    tokens = random_tokens()
    with torch.no_grad():
        before = model(tokens)
    base_params = dict(model.named_parameters())
    n = apply_lora(model, LoRAConfig(targets=targets_for(fused)))
    for name, p in model.named_parameters():
        is_lora = ".lora_a." in name or ".lora_b." in name
        assert p.requires_grad == is_lora, name
        if not is_lora:
            assert p is base_params[name], f"{name} was copied instead of kept"
    assert n == sum(p.numel() for p in lora_parameters(model))
    assert set(lora_state_dict(model)) == {
        name for name, p in model.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        after = model(tokens)
    assert torch.equal(before, after)  # lora_b = 0: exactly the base model


def test_dropout_only_in_training_mode() -> None:
    model = build_debug()
    apply_lora(model, LoRAConfig(targets=UNFUSED_TARGETS, dropout=0.1))
    randomize_lora_b(model)
    tokens = random_tokens()
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(tokens), model(tokens))
        model.train()
        assert not torch.equal(model(tokens), model(tokens))

    model_p0 = build_debug()
    apply_lora(model_p0, LoRAConfig(targets=UNFUSED_TARGETS, dropout=0.0))
    randomize_lora_b(model_p0)
    model_p0.train()
    with torch.no_grad():
        assert torch.equal(model_p0(tokens), model_p0(tokens))


def test_fused_target_on_unfused_model_says_how_to_fix() -> None:
    model = build_debug()
    with pytest.raises(ValueError, match=r"wqkv.*\"wq\", \"wk\", \"wv\", \"wo\".*fused_qkv=True"):
        apply_lora(model, LoRAConfig())
    with pytest.raises(ValueError, match="Linear names available: output, w1, w2, w3, wk, wo"):
        apply_lora(model, LoRAConfig(targets=("q_proj",)))
    assert not list(lora_modules(model))  # nothing was half-applied
    apply_lora(model, LoRAConfig(targets=UNFUSED_TARGETS))
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, LoRAConfig(targets=UNFUSED_TARGETS))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank"),
        ({"alpha": 0.0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"targets": ()}, "targets"),
        ({"targets": ("wo", "wo")}, "twice"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LoRAConfig(**kwargs)


def test_config_defaults_are_mlperf() -> None:
    cfg = LoRAConfig()
    assert (cfg.rank, cfg.alpha, cfg.dropout, cfg.targets, cfg.scale) == (
        16,
        32.0,
        0.1,
        ("wqkv", "wo"),
        2.0,
    )
    assert LoRAConfig(targets="wq, wk,wv,wo").targets == UNFUSED_TARGETS  # type: ignore[arg-type]


# --- meta build, materialise, init --------------------------------------------------------------


@pytest.mark.parametrize("fused", FUSED_PARAMS)
def test_meta_build_to_empty_then_init(fused: bool) -> None:
    extra = {"fused_qkv": True} if fused else {}
    with torch.device("meta"):
        model = Llama(get_llama_config("debug", **extra))
    apply_lora(model, LoRAConfig(targets=targets_for(fused)))
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    assert init_lora(model) == 2 * len(targets_for(fused))
    for _, mod in lora_modules(model):
        assert torch.count_nonzero(mod.lora_b.weight) == 0
        assert torch.isfinite(mod.lora_a.weight).all() and mod.lora_a.weight.abs().sum() > 0
    reference = build_debug(seed=0, fused=fused)  # same seed, same base init
    tokens = random_tokens()
    with torch.no_grad():
        assert torch.equal(model(tokens), reference(tokens))


def test_merged_state_dict_loads_into_plain_model() -> None:
    model = build_debug()
    apply_lora(model, LoRAConfig(targets=UNFUSED_TARGETS, dropout=0.0))
    randomize_lora_b(model)
    plain = Llama(get_llama_config("debug"))
    plain.load_state_dict(merged_state_dict(model), strict=True)
    tokens = random_tokens()
    with torch.no_grad():
        expected = model(tokens)
        assert not torch.allclose(expected, build_debug()(tokens))  # the adapters do something
        torch.testing.assert_close(plain(tokens), expected, rtol=1e-5, atol=1e-5)


# --- bf16 base, fp32 adapters -------------------------------------------------------------------


@pytest.mark.parametrize("fused", FUSED_PARAMS)
def test_bf16_base_with_fp32_adapters_trains_only_adapters(fused: bool) -> None:
    model = build_debug(fused=fused)
    apply_lora(model, LoRAConfig(targets=targets_for(fused)))
    model.to(torch.bfloat16)
    cast_lora_to(model, torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in params} == {id(p) for p in lora_parameters(model)}
    assert all(p.dtype == torch.float32 for p in params)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert all(p.dtype == torch.bfloat16 for p in frozen.values())  # no fp32 master copies
    opt = torch.optim.AdamW(params, lr=1e-2)
    lora_b_before = [mod.lora_b.weight.detach().clone() for _, mod in lora_modules(model)]

    tokens = random_tokens()
    logits = model(tokens[:, :-1])
    assert logits.dtype == torch.bfloat16
    loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    opt.step()

    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    for (_, mod), before in zip(lora_modules(model), lora_b_before, strict=True):
        assert mod.lora_b.weight.dtype == torch.float32
        assert not torch.equal(mod.lora_b.weight, before)  # B got a gradient at B = 0
