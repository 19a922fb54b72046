"""Unit tests for trainperf.models.flux.model: CPU only, the `debug` flavor unless size is the
point."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from trainperf.models.flux.model import (
    FLUX_CONFIGS,
    DoubleStreamBlock,
    Flux,
    FluxConfig,
    SingleStreamBlock,
    apply_rope,
    get_flux_config,
    image_position_ids,
    num_params,
    pack_latents,
    rope_table,
    text_position_ids,
    timestep_embedding,
    training_flops_per_sample,
    unpack_latents,
)

DEBUG = FLUX_CONFIGS["debug"]


def build_debug(seed: int = 0, **overrides: object) -> Flux:
    model = Flux(get_flux_config("debug", **overrides))
    torch.manual_seed(seed)  # seed just before init_weights: the constructor's init is discarded
    model.init_weights()
    return model


def perturb_(model: Flux, *, seed: int = 1, std: float = 0.1) -> Flux:
    """Random values on top of every parameter, so that zero-initialised layers count too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    return model


def inputs(cfg: FluxConfig = DEBUG, batch: int = 2, *, seed: int = 2) -> tuple:
    """img, img_ids, txt, txt_ids, timesteps, y of a random batch (image tokens on a square)."""
    gen = torch.Generator().manual_seed(seed)
    side = 2 * math.isqrt(cfg.image_tokens)  # latent side: 2 x 2 patches per token
    return (
        torch.randn(batch, cfg.image_tokens, cfg.in_channels, generator=gen),
        image_position_ids(side, side),
        torch.randn(batch, cfg.text_tokens, cfg.context_in_dim, generator=gen),
        text_position_ids(cfg.text_tokens),
        torch.rand(batch, generator=gen),
        torch.randn(batch, cfg.vec_in_dim, generator=gen),
    )


# --- sizes and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("flux-schnell", 11_891_178_560),  # diffusers FluxTransformer2DModel(), research notes
        ("flux-proxy", 3_791_984_704),  # tools/peer_bench.py flux-proxy (6 + 12 blocks)
    ],
)
def test_param_count_on_meta(name: str, expected: int) -> None:
    with torch.device("meta"):
        model = Flux(get_flux_config(name))
    assert num_params(model) == expected
    assert all(p.is_meta for p in model.parameters())
    assert not list(model.buffers())  # nothing to recompute after to_empty


def test_block_and_root_param_counts_of_flux_schnell() -> None:
    cfg = get_flux_config("flux-schnell")
    with torch.device("meta"):
        double, single = DoubleStreamBlock(cfg), SingleStreamBlock(cfg)
    assert num_params(double) == 339_831_296  # the peer's proxy arithmetic (research notes §8)
    assert num_params(single) == 141_591_808
    assert 11_891_178_560 - 19 * 339_831_296 - 38 * 141_591_808 == 53_895_232


def test_flops_of_flux_schnell_equal_a_hand_count() -> None:
    h, m, n_img, n_txt = 3072, 12288, 256, 256
    n = n_img + n_txt
    per_stream = 3 * h * h + h * h + 2 * h * m  # qkv, proj, MLP: multiply-adds per token
    double = (n_img + n_txt) * per_stream + 2 * h * 6 * h  # + img_mod, txt_mod on one vector
    single = n * (h * (3 * h + m) + (h + m) * h) + h * 3 * h  # linear1, linear2 + modulation
    attention = 2 * n * n * h  # q k^T and the weighted values, every block
    root = n_img * 64 * h + n_txt * 4096 * h  # img_in, txt_in
    root += (256 * h + h * h) + (768 * h + h * h)  # time_in, vector_in
    root += h * 2 * h + n_img * h * 64  # final adaLN, final linear
    expected = 6 * (19 * (double + attention) + 38 * (single + attention) + root)
    assert training_flops_per_sample(get_flux_config("flux-schnell")) == expected
    assert expected == pytest.approx(20.4e12, rel=2e-3)  # the research notes' ~20.4 TFLOP


def test_flops_equal_torch_flop_counter_on_a_training_step() -> None:
    # An independent count: torch's FlopCounterMode over a real forward + backward of 3
    # samples. The inputs need gradients so that the first layers also count their input
    # gradients (the 6 FLOPs per multiply-add convention counts them for every Linear); the
    # math attention backend runs matmuls the counter sees (it skips CPU flash attention).
    model = perturb_(build_debug())
    img, img_ids, txt, txt_ids, t, y = inputs(batch=3)
    batch = (img, img_ids, txt, txt_ids, t, y)
    for x in (img, txt, t, y):
        x.requires_grad_(True)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(*batch).square().mean().backward()
    assert counter.get_total_flops() == 3 * training_flops_per_sample(DEBUG)


# --- config -------------------------------------------------------------------------------------


def test_get_flux_config_returns_fresh_copy() -> None:
    cfg = get_flux_config("debug", depth=3)
    assert cfg.depth == 3 and cfg.head_dim == 16 and cfg.mlp_hidden_dim == 256
    cfg.hidden_size = 1
    assert FLUX_CONFIGS["debug"].hidden_size == 64 and FLUX_CONFIGS["debug"].depth == 2


def test_get_flux_config_unknown_name_and_field() -> None:
    with pytest.raises(ValueError, match=r"unknown Flux config 'flux-dev'.*flux-schnell"):
        get_flux_config("flux-dev")
    with pytest.raises(ValueError, match=r"unknown FluxConfig field\(s\) layers;.*depth"):
        get_flux_config("debug", layers=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 66}, r"hidden_size\(66\) must be divisible by num_heads\(4\); try"),
        ({"axes_dim": (4, 6, 8)}, r"sum\(axes_dim\(4, 6, 8\)\) = 18 must equal head_dim = .* 16"),
        ({"axes_dim": (5, 5, 6)}, r"axes_dim\(5, 5, 6\) must be positive even numbers"),
        ({"depth": 0}, r"depth\(0\) must be positive"),
        ({"text_tokens": -1}, r"text_tokens\(-1\) must be positive"),
        ({"mlp_ratio": 0.0}, r"mlp_ratio\(0.0\) and theta\(10000.0\) must be positive"),
        ({"qk_norm_eps": 0.0}, r"qk_norm_eps\(0.0\) must be positive or None"),
    ],
)
def test_config_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_flux_config("debug", **overrides)


# --- latents, positions, embeddings -------------------------------------------------------------


def test_pack_latents_layout_and_round_trip() -> None:
    latents = torch.randn(2, 4, 6, 8)  # (B, C, H, W)
    tokens = pack_latents(latents)
    assert tokens.shape == (2, 3 * 4, 16)
    # token (row r, col c) channel ch * 4 + dy * 2 + dx = latents[b, ch, 2r + dy, 2c + dx]
    r, c, ch, dy, dx = 2, 1, 3, 1, 0
    assert tokens[1, r * 4 + c, ch * 4 + dy * 2 + dx] == latents[1, ch, 2 * r + dy, 2 * c + dx]
    assert torch.equal(unpack_latents(tokens, 6, 8), latents)
    with pytest.raises(ValueError, match=r"height\(5\) and width\(8\) must be even"):
        pack_latents(torch.zeros(1, 4, 5, 8))
    with pytest.raises(ValueError, match=r"not the 2 x 2 patches of a 8 x 8 latent"):
        unpack_latents(tokens, 8, 8)


def test_position_ids_follow_the_packed_order() -> None:
    ids = image_position_ids(4, 6)  # a 2 x 3 patch grid
    expected = [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 1, 2]]
    assert ids.tolist() == expected and ids.dtype == torch.float32
    assert torch.equal(text_position_ids(5), torch.zeros(5, 3))


def test_rope_table_per_axis_and_interleaved_rotation() -> None:
    ids = torch.tensor([[0.0, 2.0, 3.0]])
    table = rope_table(ids, (4, 6, 6), 10000.0)  # (1, 8, 2): 2 + 3 + 3 pairs
    assert table.shape == (1, 8, 2) and table.dtype == torch.float32
    pair_axis = [0, 0, 1, 1, 1, 2, 2, 2]
    pair_j = [0, 1, 0, 1, 2, 0, 1, 2]
    dims = (4, 6, 6)
    for p in range(8):
        a, j = pair_axis[p], pair_j[p]
        angle = ids[0, a].item() / 10000.0 ** (2 * j / dims[a])
        assert table[0, p, 0].item() == pytest.approx(math.cos(angle), abs=1e-7)
        assert table[0, p, 1].item() == pytest.approx(math.sin(angle), abs=1e-7)
    x = torch.randn(2, 1, 3, 16)  # (B, N, H, head_dim)
    out = apply_rope(x, table)
    as_complex = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # pairs (x0, x1), (x2, x3)
    turn = torch.polar(torch.ones(8), torch.atan2(table[0, :, 1], table[0, :, 0]))
    expected = torch.view_as_real(as_complex * turn).flatten(-2)
    torch.testing.assert_close(out, expected)
    assert apply_rope(x.bfloat16(), table).dtype == torch.bfloat16


def test_timestep_embedding_is_cos_then_sin_of_1000_t() -> None:
    t = torch.tensor([0.0, 0.5])
    emb = timestep_embedding(t)
    assert emb.shape == (2, 256)
    assert torch.equal(emb[0], torch.cat([torch.ones(128), torch.zeros(128)]))
    k = 5
    arg = 500.0 * math.exp(-math.log(10000.0) * k / 128)
    assert emb[1, k].item() == pytest.approx(math.cos(arg), abs=1e-5)
    assert emb[1, 128 + k].item() == pytest.approx(math.sin(arg), abs=1e-5)


# --- init and forward ---------------------------------------------------------------------------


def test_init_is_the_reference_scheme_and_the_output_starts_at_zero() -> None:
    model = build_debug()
    out = model(*inputs())
    assert out.shape == (2, DEBUG.image_tokens, DEBUG.out_channels)
    assert torch.equal(out, torch.zeros_like(out))
    for name, p in model.named_parameters():
        if name.endswith("bias") or ".lin." in name or name.startswith("final_layer."):
            assert torch.all(p == 0), name  # biases, modulations, final layer
        elif "_norm." in name:
            assert torch.all(p == 1), name  # QK norms
        elif name.startswith(("time_in", "vector_in")):
            assert 0.01 < p.std().item() < 0.03, name  # normal(0, 0.02)
        else:  # xavier_uniform: bound sqrt(6 / (fan_in + fan_out)), std bound / sqrt(3)
            bound = math.sqrt(6 / sum(p.shape))
            assert p.abs().max().item() <= bound, name
            assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2), name


def test_meta_build_to_empty_init_equals_eager_build() -> None:
    with torch.device("meta"):
        model = Flux(get_flux_config("debug"))
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    eager = build_debug(seed=0)
    for (name, p), q in zip(model.named_parameters(), eager.parameters(), strict=True):
        assert torch.equal(p, q), name
    batch = inputs()
    perturb_(model)
    perturb_(eager)
    torch.testing.assert_close(model(*batch), eager(*batch), rtol=0, atol=0)


def test_every_parameter_gets_a_gradient_and_ids_may_carry_the_batch() -> None:
    model = perturb_(build_debug())
    img, img_ids, txt, txt_ids, t, y = inputs()
    out = model(img, img_ids, txt, txt_ids, t, y)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    batched = model(img, img_ids.expand(2, -1, -1), txt, txt_ids.expand(2, -1, -1), t, y)
    torch.testing.assert_close(batched, out)


def test_the_image_attends_to_the_text_as_a_set() -> None:
    model = perturb_(build_debug())
    img, img_ids, txt, txt_ids, t, y = inputs()
    out = model(img, img_ids, txt, txt_ids, t, y)
    other = model(img, img_ids, txt.flip(1), txt_ids, t, y)  # the same tokens, reordered
    # text ids are all zero, so the text is a set: reordering it changes nothing
    torch.testing.assert_close(other, out)
    assert not torch.allclose(model(img, img_ids, txt * 2, txt_ids, t, y), out)


def test_forward_refuses_unpacked_latents() -> None:
    model = build_debug()
    img, img_ids, txt, txt_ids, t, y = inputs()
    with pytest.raises(ValueError, match=r"img and txt must be \(batch, tokens, channels\)"):
        model(unpack_latents(img, 8, 8), img_ids, txt, txt_ids, t, y)
