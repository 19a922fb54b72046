"""Unit tests for trainperf.models.llama: CPU only, the `debug` flavor unless size is the point."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainperf.models.llama.model import (
    LLAMA_CONFIGS,
    Attention,
    Llama,
    LlamaConfig,
    RMSNorm,
    RopeScaling,
    apply_rope,
    get_llama_config,
    model_flops_per_token_nvidia,
    num_params,
    num_params_from_config,
    precompute_rope_cache,
    precompute_rope_freqs,
    training_flops_per_token,
)


def build_debug(seed: int = 0, **overrides: object) -> Llama:
    model = Llama(get_llama_config("debug", **overrides))
    torch.manual_seed(seed)  # seed just before init_weights: the constructor's init is discarded
    model.init_weights()
    return model


def random_tokens(batch: int, seq_len: int, *, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, LLAMA_CONFIGS["debug"].vocab_size, (batch, seq_len), generator=gen)


# --- sizes and counts ---------------------------------------------------------------------------


def test_llama31_8b_on_meta_has_exact_param_count() -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config("llama3.1-8b"))
    assert num_params(model) == 8_030_261_248
    assert num_params(model, exclude_embedding=True) == 8_030_261_248 - 128256 * 4096
    assert model.rope_cache.is_meta


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama3.1-8b", 8_030_261_248),
        ("llama3.1-405b", 405_853_388_800),  # HF meta-llama/Llama-3.1-405B
        ("llama2-70b", 68_976_648_192),  # HF meta-llama/Llama-2-70b-hf
        ("llama3.1-70b", 70_553_706_496),  # HF meta-llama/Llama-3.1-70B
    ],
)
def test_param_count_from_config(name: str, expected: int) -> None:
    assert num_params_from_config(LLAMA_CONFIGS[name]) == expected


def test_param_count_from_config_matches_model() -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    for exclude in (False, True):
        assert num_params_from_config(model.cfg, exclude_embedding=exclude) == num_params(
            model, exclude_embedding=exclude
        )


def test_flops_per_token_llama31_8b() -> None:
    cfg = get_llama_config("llama3.1-8b")
    # the matmul weights: every parameter but the embedding and the 65 norms
    matmuls = 8_030_261_248 - 128256 * 4096 - (32 * 2 + 1) * 4096
    assert training_flops_per_token(cfg, 8192) == 6 * matmuls + 12 * 32 * 4096 * 8192
    nvidia = model_flops_per_token_nvidia(cfg, 8192)
    assert nvidia == pytest.approx(57.9e9, rel=1e-3)
    assert nvidia == 57_912_852_480  # 12*32*4096^2*3.25 + 18*32*14336*4096 + 6*128256*4096


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
def test_counted_flops_equal_the_nvidia_formula(name: str) -> None:
    # counted on the meta-built model; NVIDIA's closed form, for every flavor and two lengths
    cfg = LLAMA_CONFIGS[name]
    for seq in (128, 8192):
        assert training_flops_per_token(cfg, seq) == model_flops_per_token_nvidia(cfg, seq)


# --- config -------------------------------------------------------------------------------------


def test_get_llama_config_returns_fresh_copy() -> None:
    cfg = get_llama_config("debug", n_layers=3)
    assert cfg.n_layers == 3 and cfg.head_dim == 16
    cfg.dim = 1
    assert LLAMA_CONFIGS["debug"].dim == 64 and LLAMA_CONFIGS["debug"].n_layers == 2


def test_get_llama_config_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown Llama config 'llama9'.*llama3\.1-8b"):
        get_llama_config("llama9")


def test_get_llama_config_unknown_field_lists_valid() -> None:
    with pytest.raises(ValueError, match=r"unknown LlamaConfig field\(s\) n_head;.*n_heads"):
        get_llama_config("debug", n_head=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"dim": 4096, "n_heads": 32, "n_kv_heads": 5},
            r"n_heads\(32\) must be divisible by n_kv_heads\(5\); "
            r"try n_kv_heads in \{1, 2, 4, 8, 16, 32\}",
        ),
        ({"dim": 66}, r"dim\(66\) must be divisible by n_heads\(4\)"),
        ({"dim": 60, "n_heads": 4, "n_kv_heads": 4}, r"head_dim .* = 15 must be even"),
        ({"ffn_dim": 0}, r"ffn_dim\(0\) must be positive"),
        ({"n_layers": -1}, r"n_layers\(-1\) must be positive"),
        ({"norm_eps": 0.0}, r"norm_eps\(0.0\).* must be positive"),
    ],
)
def test_config_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_llama_config("debug", **overrides)


def test_rope_scaling_validation() -> None:
    with pytest.raises(ValueError, match=r"low_freq_factor\(4.0\) < high_freq_factor\(1.0\)"):
        RopeScaling(low_freq_factor=4.0, high_freq_factor=1.0)


# --- RMSNorm and RoPE ---------------------------------------------------------------------------


def test_rmsnorm_matches_formula_and_keeps_dtype() -> None:
    norm = RMSNorm(8, eps=1e-5)
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x = torch.randn(3, 5, 8)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)


def test_rope_scaling_matches_hand_computation() -> None:
    cfg = get_llama_config("llama3.1-8b")  # head_dim 128, theta 5e5, factor 8, cut-offs 2048/8192
    freqs = precompute_rope_freqs(cfg)
    assert freqs.shape == (64,)

    def plain(i: int) -> float:
        return 500000.0 ** (-2 * i / 128)

    # i=10: wavelength ~7.5 tokens < 2048 -> unchanged.
    assert 2 * math.pi / plain(10) < 2048
    assert freqs[10].item() == pytest.approx(plain(10), rel=1e-6)
    # i=40: wavelength ~2.2e4 > 8192 -> divided by 8.
    assert 2 * math.pi / plain(40) > 8192
    assert freqs[40].item() == pytest.approx(plain(40) / 8, rel=1e-6)
    # i=33: wavelength ~5.9e3, between the cut-offs -> smooth interpolation.
    wavelen = 2 * math.pi / plain(33)
    assert 2048 < wavelen < 8192
    smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
    expected = (1 - smooth) * plain(33) / 8 + smooth * plain(33)
    assert freqs[33].item() == pytest.approx(expected, rel=1e-6)


def test_rope_without_scaling_is_theta_power() -> None:
    cfg = get_llama_config("debug", rope_scaling=None, rope_theta=10000.0)
    expected = torch.tensor([10000.0 ** (-2 * i / 16) for i in range(8)])
    torch.testing.assert_close(precompute_rope_freqs(cfg), expected)


def test_rope_rotates_adjacent_pairs() -> None:
    cfg = get_llama_config("debug")
    cache = precompute_rope_cache(cfg)
    assert cache.shape == (128, 8, 2)
    freqs = precompute_rope_freqs(cfg)
    x = torch.zeros(1, 4, 1, 16)
    x[..., 0] = 1.0  # pair 0 = (1, 0): rotates to (cos, sin) of position * freq_0
    x[..., 3] = 1.0  # pair 1 = (0, 1): rotates to (-sin, cos) of position * freq_1
    out = apply_rope(x, cache[:4])
    pos = torch.arange(4.0)
    torch.testing.assert_close(out[0, :, 0, 0], torch.cos(pos * freqs[0]))
    torch.testing.assert_close(out[0, :, 0, 1], torch.sin(pos * freqs[0]))
    torch.testing.assert_close(out[0, :, 0, 2], -torch.sin(pos * freqs[1]))
    torch.testing.assert_close(out[0, :, 0, 3], torch.cos(pos * freqs[1]))
    torch.testing.assert_close(out[..., 4:], x[..., 4:])
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep the norm


# --- attention ----------------------------------------------------------------------------------


def test_gqa_attention_matches_explicit_repeat_kv() -> None:
    cfg = get_llama_config("debug")  # 4 query heads share 2 K/V heads
    torch.manual_seed(0)
    attn = Attention(cfg)
    attn.init_weights(std=0.2, out_std=0.2)
    B, T, H, KV, D = 2, 10, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    x = torch.randn(B, T, cfg.dim)
    cache = precompute_rope_cache(cfg)[:T]

    q = apply_rope(attn.wq(x).view(B, T, H, D), cache).transpose(1, 2)  # (B, H, T, D)
    k = apply_rope(attn.wk(x).view(B, T, KV, D), cache).transpose(1, 2)  # (B, KV, T, D)
    v = attn.wv(x).view(B, T, KV, D).transpose(1, 2)
    k = k.repeat_interleave(H // KV, dim=1)  # query head h uses K/V head h // n_rep
    v = v.repeat_interleave(H // KV, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, T, T)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(mask, float("-inf")).softmax(-1)
    expected = attn.wo((probs @ v).transpose(1, 2).reshape(B, T, H * D))

    torch.testing.assert_close(attn(x, cache), expected, atol=1e-5, rtol=1e-5)


# --- the whole model ----------------------------------------------------------------------------


def test_forward_shape_and_dtype() -> None:
    model = build_debug()
    logits = model(random_tokens(3, 17))
    assert logits.shape == (3, 17, 256)
    assert logits.dtype == torch.float32
    assert [name for name, _ in model.named_children()] == [
        "tok_embeddings",
        "layers",
        "norm",
        "output",
    ]
    assert list(model.layers.keys()) == ["0", "1"]
    assert "layers.1.feed_forward.w3.weight" in model.state_dict()
    assert "rope_cache" not in model.state_dict()


def test_causal_masking() -> None:
    model = build_debug()
    tokens = random_tokens(2, 16)
    t = 7
    changed = tokens.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_too_long_input_raises() -> None:
    model = build_debug()
    with pytest.raises(ValueError, match=r"sequence length 129 exceeds max_seq_len\(128\)"):
        model(random_tokens(1, 129))


def test_meta_build_to_empty_init_weights() -> None:
    cfg = get_llama_config("debug")
    with torch.device("meta"):
        model = Llama(cfg)
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    torch.testing.assert_close(model.rope_cache, precompute_rope_cache(cfg))
    logits = model(random_tokens(2, 32))
    assert torch.isfinite(logits).all()
    # Same weights and outputs as a model built directly on CPU with the same seed.
    reference = build_debug(seed=0)
    torch.testing.assert_close(logits, reference(random_tokens(2, 32)))


def test_init_is_deterministic_per_seed_and_documented_stds() -> None:
    a, b, c = build_debug(seed=3), build_debug(seed=3), build_debug(seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.layers["0"].attention.wq.weight, c.layers["0"].attention.wq.weight)
    assert torch.equal(a.norm.weight, torch.ones(64))
    # wo of layer 1 is drawn with std 0.02 / sqrt(4); output with std 64 ** -0.5, cut at 3 std.
    assert a.layers["1"].attention.wo.weight.abs().max() <= 3 * 0.01 + 1e-6
    assert a.output.weight.abs().max() <= 3 * 64**-0.5 + 1e-6
    assert a.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_debug_model_overfits_one_batch() -> None:
    model = build_debug(seed=0)
    tokens = random_tokens(4, 33, seed=2)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # Logits have std ~1 at init (output std dim ** -0.5 on unit-RMS features): ~ln(256) + 0.5.
    assert losses[0] == pytest.approx(math.log(256), abs=1.0)
    assert losses[-1] < 0.1 * losses[0], losses


def test_bf16_forward_is_finite() -> None:
    model = build_debug().to(torch.bfloat16)
    logits = model(random_tokens(2, 16))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_llama_config_is_a_dataclass_with_head_dim() -> None:
    cfg = LlamaConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=10, ffn_dim=16)
    assert cfg.head_dim == 16 and cfg.rope_scaling is None and cfg.max_seq_len == 8192


# --- fused QKV ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [("llama2-70b", 68_976_648_192), ("llama3.1-70b", 70_553_706_496)]
)
def test_70b_on_meta_has_exact_param_count(name: str, expected: int) -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config(name))
    assert num_params(model) == expected


def test_llama2_70b_is_fused_like_the_mlperf_checkpoint() -> None:
    cfg = get_llama_config("llama2-70b")
    assert cfg.fused_qkv and cfg.rope_scaling is None and cfg.rope_theta == 10000.0
    with torch.device("meta"):
        attn = Attention(cfg)
    assert attn.wqkv.weight.shape == (64 * 128 + 2 * 8 * 128, 8192)
    assert not hasattr(attn, "wq")
    assert not get_llama_config("llama3.1-70b").fused_qkv


def test_debug_llama2_flavor() -> None:
    cfg = get_llama_config("debug-llama2")
    assert cfg.rope_theta == 10000.0 and cfg.rope_scaling is None and cfg.fused_qkv
    assert cfg.n_kv_heads < cfg.n_heads
    model = Llama(cfg)
    torch.manual_seed(0)
    model.init_weights()
    assert model(random_tokens(2, 9)).shape == (2, 9, 256)
    assert "layers.0.attention.wqkv.weight" in model.state_dict()


def fuse_weights(unfused: Llama, fused: Llama) -> None:
    """Copy unfused's weights into fused; wqkv rows per K/V group g: [q heads of g, k_g, v_g]."""
    cfg = unfused.cfg
    d, n_rep = cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
    state = {}
    for name, t in unfused.state_dict().items():
        if ".attention.wq." in name:
            prefix = name.removesuffix("wq.weight")
            wq, wk, wv = (unfused.state_dict()[f"{prefix}{x}.weight"] for x in ("wq", "wk", "wv"))
            groups = [
                torch.cat([wq[g * n_rep * d : (g + 1) * n_rep * d], wk[g * d : (g + 1) * d],
                           wv[g * d : (g + 1) * d]])
                for g in range(cfg.n_kv_heads)
            ]  # fmt: skip
            state[f"{prefix}wqkv.weight"] = torch.cat(groups)
        elif ".attention.wk." not in name and ".attention.wv." not in name:
            state[name] = t
    fused.load_state_dict(state)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_fused_qkv_equals_unfused_with_rearranged_weights(n_kv_heads: int) -> None:
    unfused = build_debug(seed=0, n_kv_heads=n_kv_heads)
    fused = Llama(get_llama_config("debug", n_kv_heads=n_kv_heads, fused_qkv=True))
    fuse_weights(unfused, fused)
    tokens = random_tokens(2, 20)
    a, b = fused(tokens), unfused(tokens)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.square().mean().backward()
    b.square().mean().backward()
    torch.testing.assert_close(
        fused.layers["1"].attention.wo.weight.grad, unfused.layers["1"].attention.wo.weight.grad
    )


def test_fused_qkv_init_is_like_unfused() -> None:
    model = build_debug(seed=0, fused_qkv=True)
    wqkv = model.layers["0"].attention.wqkv.weight
    assert wqkv.shape == ((4 + 2 * 2) * 16, 64)
    assert wqkv.abs().max() <= 3 * 0.02 + 1e-6
    assert wqkv.std().item() == pytest.approx(0.02, rel=0.15)
