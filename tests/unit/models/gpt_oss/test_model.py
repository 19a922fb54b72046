"""The gpt-oss model's own pieces against definitions written out here (CPU, float32): the
routed experts (two grouped GEMMs over sorted tokens) against a loop over tokens and their k
experts, the attention kernel's windows and sinks against the softmax written out, the plain
variant of the MLPerf reference (no sinks, no biases, plain SwiGLU), and the FLOP count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainperf.models.gpt_oss.model import (
    GptOss,
    SinkAttention,
    attended_keys,
    get_gpt_oss_config,
    num_params,
    training_flops_per_token,
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("flavor", ["debug", "tiny"])
def test_moe_equals_a_loop_over_tokens_and_their_experts(flavor: str) -> None:
    cfg = get_gpt_oss_config(flavor)
    torch.manual_seed(0)
    model = GptOss(cfg)
    model.init_weights()
    moe = model.layers["0"].moe
    with torch.no_grad():  # nonzero biases where the flavor has them
        for p in moe.parameters():
            p.normal_(0, 0.05)
    x = torch.randn(2, 12, cfg.dim)
    out, logits = moe(x)
    tokens = x.reshape(-1, cfg.dim)
    top, chosen = logits.topk(cfg.top_k, dim=-1)
    weights = top.softmax(-1)
    e = moe.experts
    want = torch.zeros_like(tokens)
    for t in range(tokens.shape[0]):
        for j in range(cfg.top_k):
            i = int(chosen[t, j])
            h = tokens[t] @ e.gate_up[i] + (e.gate_up_bias[i] if e.gate_up_bias is not None else 0)
            gate, up = h[::2], h[1::2]
            if cfg.swiglu_limit is None:
                act = F.silu(gate) * up
            else:
                gate, up = gate.clamp(max=cfg.swiglu_limit), up.clamp(-7, 7)
                act = (up + 1) * gate * torch.sigmoid(cfg.swiglu_alpha * gate)
            y = act @ e.down[i] + (e.down_bias[i] if e.down_bias is not None else 0)
            want[t] += weights[t, j] * y
    assert rel_err(out.reshape(-1, cfg.dim), want) < 1e-5  # float32, sums of ~100 terms


@pytest.mark.parametrize("window", [None, 1, 5])
@pytest.mark.parametrize("sinks", [False, True])
def test_attention_window_and_sinks(window, sinks) -> None:
    torch.manual_seed(0)
    B, H, KV, T, D = 2, 4, 2, 16, 8
    q, k, v = torch.randn(B, H, T, D), torch.randn(B, KV, T, D), torch.randn(B, KV, T, D)
    sink = torch.randn(H) if sinks else None
    out = SinkAttention(window)(q, k, v, sink)
    want = torch.empty_like(out)
    for h in range(H):
        g = h // (H // KV)  # query head h reads K/V head h // n_rep
        for i in range(T):
            keys = [j for j in range(T) if j <= i and (window is None or i - j < window)]
            scores = torch.einsum("bd,bnd->bn", q[:, h, i], k[:, g, keys]) / math.sqrt(D)
            if sink is not None:
                scores = torch.cat([scores, sink[h].expand(B, 1)], dim=-1)
            probs = scores.softmax(-1)[:, : len(keys)]
            want[:, h, i] = (probs.unsqueeze(-1) * v[:, g, keys]).sum(1)
    assert rel_err(out, want) < 1e-6


def test_reference_variant_has_no_sinks_biases_or_clamp() -> None:
    cfg = get_gpt_oss_config("gpt-oss-20b-mlperf")
    assert not cfg.attention_sinks and not cfg.bias and cfg.swiglu_limit is None
    assert cfg.yarn is None and cfg.vocab_size == 128256 and cfg.sliding_window == 129
    with torch.device("meta"):
        model = GptOss(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if "bias" in n or "sinks" in n]
    # per layer: q/o (64 heads) and k/v (8) of head_dim 64, the router, 32 experts' gate_up
    # (2 x 2880 wide) and down, two norms and the q and k norms (head_dim each); then
    # embedding, output and the final norm
    assert cfg.qk_norm and {n for n in names if "q_norm" in n or "k_norm" in n} == {
        f"layers.{i}.attention.{x}_norm.weight" for i in range(24) for x in "qk"
    }
    layer = 2880 * 64 * 144 + 2880 * 32 + 32 * 3 * 2880 * 2880 + 2 * 2880 + 2 * 64
    assert num_params(cfg) == 24 * layer + 2 * 128256 * 2880 + 2880 == 20_488_418_112


def test_qk_norm_normalises_each_head_before_rope(monkeypatch) -> None:
    """qk_norm (Megatron's qk_layernorm): RoPE receives each query and key head divided by its
    own RMS over head_dim and times the norm's weight; without it, the raw projections."""
    from trainperf.models.gpt_oss import model as M

    torch.manual_seed(0)
    seen: list[torch.Tensor] = []

    def spy(x, cache):
        seen.append(x.detach().clone())
        return rope(x, cache)

    rope = M.apply_rope
    monkeypatch.setattr(M, "apply_rope", spy)
    for qk_norm in (True, False):
        cfg = get_gpt_oss_config("debug", qk_norm=qk_norm)
        attn = M.Attention(cfg, layer_id=1)
        for p in attn.parameters():
            torch.nn.init.normal_(p, std=0.5)
        x = torch.randn(2, 6, cfg.dim)
        seen.clear()
        attn(x, M.rope_cache(cfg)[:6])
        for got, proj, norm in ((seen[0], attn.wq, attn.q_norm), (seen[1], attn.wk, attn.k_norm)):
            raw = proj(x).view(2, 6, -1, cfg.head_dim)  # (B, T, heads, head_dim)
            want = raw
            if qk_norm:
                rms = raw.pow(2).mean(-1, keepdim=True).add(cfg.norm_eps).sqrt()
                want = raw / rms * norm.weight
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert qk_norm == any("q_norm" in n for n, _ in attn.named_parameters())


def test_flops_count_the_active_experts_and_the_window() -> None:
    cfg = get_gpt_oss_config("gpt-oss-20b-mlperf")
    T = 8192
    attn = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)  # wq, wo, wk, wv
    router = cfg.dim * cfg.n_experts
    experts = cfg.top_k * 3 * cfg.dim * cfg.moe_dim  # gate_up (2 moe_dim) + down, k of them
    keys = 12 * (129 + T)  # 12 sliding layers see 129 keys, 12 full layers T
    per_token = cfg.n_layers * (attn + router + experts) + cfg.vocab_size * cfg.dim
    want = 6 * (per_token + 2 * keys * cfg.n_heads * cfg.head_dim)
    assert training_flops_per_token(cfg, T) == want
    assert attended_keys(cfg, 0, T) == 129 and attended_keys(cfg, 1, T) == T
    assert num_params(cfg, active=True) < num_params(cfg) / 5  # top-4 of 32 experts


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="top_k"):
        get_gpt_oss_config("debug", top_k=9)
    with pytest.raises(ValueError, match="n_kv_heads"):
        get_gpt_oss_config("debug", n_kv_heads=3)
    with pytest.raises(ValueError, match="unknown gpt-oss config"):
        get_gpt_oss_config("gpt-oss-7b")
