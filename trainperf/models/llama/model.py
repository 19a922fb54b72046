"""Llama 2 / 3.1 decoder in one file: config, size registry, modules, parameter and FLOP counts.

Parameter names follow torchtitan (`tok_embeddings`, `layers.{i}.attention.wq`, ...); HF names live
only in `hf_adapter.py`. Build on the meta device, parallelize, then materialize:

    with torch.device("meta"):
        model = Llama(get_llama_config("llama3.1-8b"))
    model.to_empty(device="cuda")
    model.init_weights()
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainperf.models.registry import from_registry


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 RoPE frequency scaling ("rope_type": "llama3" in the HF config)."""

    factor: float = 8.0
    """Divisor of the low frequencies (wavelengths above old_context / low_freq_factor)."""
    low_freq_factor: float = 1.0
    """Sets the long-wavelength cut-off old_context / low_freq_factor (tokens)."""
    high_freq_factor: float = 4.0
    """Sets the short-wavelength cut-off old_context / high_freq_factor; shorter ones are kept."""
    original_max_position_embeddings: int = 8192
    """old_context: the context length (tokens) the model was pre-trained at before scaling."""

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.original_max_position_embeddings <= 0:
            raise ValueError(
                f"RopeScaling factor({self.factor}) and original_max_position_embeddings"
                f"({self.original_max_position_embeddings}) must be positive"
            )
        if not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError(
                f"RopeScaling needs 0 < low_freq_factor({self.low_freq_factor}) < "
                f"high_freq_factor({self.high_freq_factor}); Llama 3.1 uses 1.0 and 4.0"
            )


@dataclass
class LlamaConfig:
    """Sizes and numerics of a Llama decoder. Get one with `get_llama_config(name)`."""

    dim: int
    """Hidden size h (model width)."""
    n_layers: int
    """Number of transformer blocks L."""
    n_heads: int
    """Number of query heads."""
    n_kv_heads: int
    """Number of key/value heads (grouped-query attention); must divide n_heads."""
    vocab_size: int
    """Rows of the token embedding and of the output projection."""
    ffn_dim: int
    """Hidden size of the SwiGLU feed-forward (width of w1 and w3)."""
    norm_eps: float = 1e-5
    """Epsilon inside RMSNorm."""
    rope_theta: float = 500000.0
    """RoPE base: frequency i is rope_theta ** (-2i / head_dim) before any scaling."""
    rope_scaling: RopeScaling | None = None
    """Llama 3.1 frequency scaling; None for plain RoPE (Llama 2)."""
    max_seq_len: int = 8192
    """Longest input in tokens; the size of the precomputed RoPE table."""
    init_std: float = 0.02
    """Standard deviation of the weight init (see `Llama.init_weights`)."""
    fused_qkv: bool = False
    """One `wqkv` projection instead of wq, wk, wv, like the MLPerf llama2_70b_lora checkpoint
    `regisss/llama2-70b-fused-qkv-mlperf`. Its output rows are grouped per K/V head: for each
    group g, the n_heads / n_kv_heads query heads of g, then K head g, then V head g (so tensor
    parallelism can shard it by whole groups). Same parameter count as the unfused layout."""

    def __post_init__(self) -> None:
        sizes = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "ffn_dim", "max_seq_len")
        for name in sizes:
            if getattr(self, name) <= 0:
                raise ValueError(f"LlamaConfig.{name}({getattr(self, name)}) must be positive")
        if self.norm_eps <= 0 or self.rope_theta <= 0 or self.init_std <= 0:
            raise ValueError(
                f"LlamaConfig norm_eps({self.norm_eps}), rope_theta({self.rope_theta}) and "
                f"init_std({self.init_std}) must be positive"
            )
        if self.n_heads % self.n_kv_heads != 0:
            divisors = [d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]
            raise ValueError(
                f"n_heads({self.n_heads}) must be divisible by n_kv_heads({self.n_kv_heads}); "
                f"try n_kv_heads in {{{', '.join(map(str, divisors))}}}"
            )
        if self.dim % self.n_heads != 0:
            raise ValueError(
                f"dim({self.dim}) must be divisible by n_heads({self.n_heads}); "
                f"try dim={self.n_heads * max(1, round(self.dim / self.n_heads))}"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(
                f"head_dim = dim({self.dim}) / n_heads({self.n_heads}) = {self.head_dim} must be "
                "even for RoPE, which rotates pairs of channels; change dim or n_heads"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


LLAMA31_ROPE_SCALING = RopeScaling(
    factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
)

LLAMA_CONFIGS: dict[str, LlamaConfig] = {
    # Tiny flavor for tests; rope scaling on so that all three frequency bands are exercised
    # (head_dim 16, theta 5e5: wavelengths span ~6 to ~6e5 tokens around the 2048/8192 cut-offs).
    "debug": LlamaConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=256,
        ffn_dim=128,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=128,
    ),
    # Tiny Llama-2-style flavor for tests: plain RoPE (theta 1e4), GQA, fused QKV as llama2-70b.
    "debug-llama2": LlamaConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=256,
        ffn_dim=128,
        rope_theta=10000.0,
        rope_scaling=None,
        max_seq_len=128,
        fused_qkv=True,
    ),
    # trainperf's tiny scale (CPU, about a minute): Llama 3.1 architecture at toy size, vocab
    # sized to the built-in corpus tokenizer (the trainer sets it from data.vocab_size).
    "tiny": LlamaConfig(
        dim=128,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=2048,
        ffn_dim=384,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=512,
    ),
    # trainperf's llama2_70b_lora tiny scale: the base model that LoRA fine-tunes, pretrained once
    # on the built-in corpus (cached). Llama-2 architecture as llama2-70b (plain RoPE theta 1e4,
    # GQA, fused QKV) at toy size; vocab sized to the built-in tokenizer.
    "tiny-llama2": LlamaConfig(
        dim=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=2048,
        ffn_dim=384,
        rope_theta=10000.0,
        rope_scaling=None,
        max_seq_len=512,
        fused_qkv=True,
    ),
    # trainperf's small scale (one GPU, minutes): ~25M non-embedding parameters, sized to the
    # ~10M tokens of the built-in corpus (a few epochs in a run).
    "small": LlamaConfig(
        dim=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=4,
        vocab_size=8192,
        ffn_dim=1536,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=2048,
    ),
    # meta-llama/Llama-2-70b-hf config.json (max_position_embeddings 4096); the table is sized for
    # the 8192-token GovReport samples of MLPerf's llama2_70b_lora benchmark. Fused QKV as in
    # MLPerf's checkpoint regisss/llama2-70b-fused-qkv-mlperf (one qkv_proj per layer).
    "llama2-70b": LlamaConfig(
        dim=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        vocab_size=32000,
        ffn_dim=28672,
        rope_theta=10000.0,
        rope_scaling=None,
        max_seq_len=8192,
        fused_qkv=True,
    ),
    # meta-llama/Llama-3.1-8B config.json / NeMo Llama31Config8B; 8192 = MLPerf llama31_8b seq len.
    "llama3.1-8b": LlamaConfig(
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        vocab_size=128256,
        ffn_dim=14336,
        rope_theta=500000.0,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=8192,
    ),
    # meta-llama/Llama-3.1-70B config.json (70,553,706,496 parameters).
    "llama3.1-70b": LlamaConfig(
        dim=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        vocab_size=128256,
        ffn_dim=28672,
        rope_theta=500000.0,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=8192,
    ),
    # meta-llama/Llama-3.1-405B config.json / NeMo Llama31Config405B; 8192 = MLPerf llama31_405b.
    "llama3.1-405b": LlamaConfig(
        dim=16384,
        n_layers=126,
        n_heads=128,
        n_kv_heads=8,
        vocab_size=128256,
        ffn_dim=53248,
        rope_theta=500000.0,
        rope_scaling=LLAMA31_ROPE_SCALING,
        max_seq_len=8192,
    ),
}


def get_llama_config(name: str, **overrides: object) -> LlamaConfig:
    """A fresh copy of the registry entry `name`, with `overrides` applied and validated."""
    return from_registry(LLAMA_CONFIGS, name, "Llama", **overrides)


def precompute_rope_freqs(cfg: LlamaConfig) -> torch.Tensor:
    """Per-pair rotation frequencies in radians/token: (head_dim // 2,) float32 on CPU.

    Plain RoPE: freq_i = theta ** (-2i / head_dim). With Llama 3.1 scaling (Meta's
    `apply_scaling` in llama-models): long wavelengths are divided by `factor`, short ones kept,
    and the band in between interpolated smoothly.
    """
    # float64 on CPU whatever the default device, so every rank gets bit-identical tables.
    exponents = torch.arange(0, cfg.head_dim, 2, dtype=torch.float64, device="cpu") / cfg.head_dim
    freqs = cfg.rope_theta**-exponents  # (head_dim // 2,)
    s = cfg.rope_scaling
    if s is not None:
        old_context = s.original_max_position_embeddings
        wavelen = 2 * math.pi / freqs
        smooth = (old_context / wavelen - s.low_freq_factor) / (
            s.high_freq_factor - s.low_freq_factor
        )
        blended = (1 - smooth) * freqs / s.factor + smooth * freqs
        scaled = torch.where(wavelen > old_context / s.low_freq_factor, freqs / s.factor, blended)
        freqs = torch.where(wavelen < old_context / s.high_freq_factor, freqs, scaled)
    return freqs.float()


def precompute_rope_cache(
    cfg: LlamaConfig, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """cos and sin of position * freq: (max_seq_len, head_dim // 2, 2) float32, [..., 0] = cos.

    Computed on CPU, then moved to `device` (default: CPU).
    """
    freqs = precompute_rope_freqs(cfg)
    positions = torch.arange(cfg.max_seq_len, dtype=torch.float32, device="cpu")
    angles = torch.outer(positions, freqs)  # (max_seq_len, head_dim // 2)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).to(device or "cpu")


def apply_rope(x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, n_heads, head_dim) by position; rope_cache is (T, head_dim // 2, 2).

    Interleaved-pairs convention of Meta and torchtitan: channels (x0, x1), (x2, x3), ... form
    the complex numbers that get rotated. HF checkpoints use the half-split convention
    (x_i, x_{i + head_dim/2}); `hf_adapter.py` permutes the q/k rows on load, not this function.
    """
    B, T, H, D = x.shape
    pairs = x.float().reshape(B, T, H, D // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]  # (B, T, H, D // 2)
    cos = rope_cache[:, :, 0].float().view(1, T, 1, D // 2)
    sin = rope_cache[:, :, 1].float().view(1, T, 1, D // 2)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 and cast back to x's dtype."""

    def __init__(self, dim: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).type_as(x)

    def init_weights(self) -> None:
        nn.init.ones_(self.weight)


def _init_linear(linear: nn.Module, std: float) -> None:
    w = linear.weight
    if w.dtype.itemsize >= 2:
        nn.init.trunc_normal_(w, mean=0.0, std=std, a=-3 * std, b=3 * std)
        return
    # a quantized frozen weight (parallel.float8 with LoRA): drawn in bf16, stored by the layer
    hp = torch.empty(w.shape, dtype=torch.bfloat16, device=w.device)
    nn.init.trunc_normal_(hp, mean=0.0, std=std, a=-3 * std, b=3 * std)
    linear.load_weight_(hp)


class CausalAttention(nn.Module):
    """The attention kernel: softmax(q k^T / sqrt(head_dim), causal) v over the local sequence.

    A module of its own so that parallelism can swap it without touching the model: context
    parallel (`parallel/cp.py`) replaces it with one that attends over the whole sequence.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q (B, n_heads, T, head_dim); k, v (B, n_kv_heads, T, head_dim)
        # enable_gqa (torch >= 2.5) shares each K/V head across n_rep query heads without copying.
        gqa = q.shape[1] != k.shape[1]
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)


class Attention(nn.Module):
    """Causal multi-head attention with grouped-query K/V and RoPE; no biases.

    Projections wq, wk, wv, or with `cfg.fused_qkv` one wqkv whose rows are grouped per K/V
    head: [n_rep query heads of group 0, K head 0, V head 0, n_rep query heads of group 1, ...].
    """

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.n_rep = cfg.n_heads // cfg.n_kv_heads  # query heads per K/V head
        self.fused_qkv = cfg.fused_qkv
        if cfg.fused_qkv:
            qkv_rows = (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim
            self.wqkv = nn.Linear(cfg.dim, qkv_rows, bias=False)
        else:
            self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
            self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
            self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.sdpa = CausalAttention()

    def _project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        # -1 heads, not n_heads: under tensor parallelism each rank holds a slice of the heads.
        if not self.fused_qkv:
            q = self.wq(x).view(B, T, -1, self.head_dim)  # (B, T, n_heads, head_dim)
            k = self.wk(x).view(B, T, -1, self.head_dim)  # (B, T, n_kv_heads, head_dim)
            v = self.wv(x).view(B, T, -1, self.head_dim)  # (B, T, n_kv_heads, head_dim)
            return q, k, v
        qkv = self.wqkv(x).view(B, T, -1, self.n_rep + 2, self.head_dim)  # (B, T, kv, n_rep+2, D)
        # Query head g * n_rep + r uses K/V head g: the same pairing as the unfused layout.
        q = qkv[:, :, :, : self.n_rep].reshape(B, T, -1, self.head_dim)  # (B, T, n_heads, D)
        return q, qkv[:, :, :, self.n_rep], qkv[:, :, :, self.n_rep + 1]  # k, v: (B, T, kv, D)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self._project_qkv(x)
        q, k = apply_rope(q, rope_cache), apply_rope(k, rope_cache)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, head_dim)
        out = self.sdpa(q, k, v)  # (B, n_heads, T, head_dim)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, dim)

    def init_weights(self, *, std: float, out_std: float) -> None:
        inputs = (self.wqkv,) if self.fused_qkv else (self.wq, self.wk, self.wv)
        for linear in inputs:
            _init_linear(linear, std)
        _init_linear(self.wo, out_std)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, ffn_dim, bias=False)
        self.w2 = nn.Linear(ffn_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, ffn_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, ffn_dim) -> (B, T, dim)

    def init_weights(self, *, std: float, out_std: float) -> None:
        _init_linear(self.w1, std)
        _init_linear(self.w3, std)
        _init_linear(self.w2, out_std)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then h + feed_forward(norm(h))."""

    def __init__(self, layer_id: int, cfg: LlamaConfig) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope_cache)
        return h + self.feed_forward(self.ffn_norm(h))

    def init_weights(self, init_std: float) -> None:
        # torchtitan's depth_init: projections into the residual stream shrink with depth.
        out_std = init_std / (2 * (self.layer_id + 1)) ** 0.5
        self.attention_norm.init_weights()
        self.ffn_norm.init_weights()
        self.attention.init_weights(std=init_std, out_std=out_std)
        self.feed_forward.init_weights(std=init_std, out_std=out_std)


class Llama(nn.Module):
    """Decoder-only Llama: tokens (B, T) -> logits (B, T, vocab_size); untied output layer."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        # ModuleDict keyed "0".."L-1" (torchtitan): names stay stable when layers are wrapped
        # or dropped per pipeline stage.
        self.layers = nn.ModuleDict({str(i): TransformerBlock(i, cfg) for i in range(cfg.n_layers)})
        self.norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Derived from cfg, so not saved in checkpoints; recomputed by init_weights after to_empty.
        # float32; `model.to(torch.bfloat16)` casts it too (bf16 cos/sin, as HF does at inference),
        # FSDP2 mixed precision casts parameters only and leaves it in float32.
        rope_cache = precompute_rope_cache(cfg, device=self.output.weight.device)
        self.register_buffer("rope_cache", rope_cache, persistent=False)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        head: Callable | None = None,
    ) -> object:
        """Logits (B, T, vocab_size) of `tokens` (B, T).

        positions: (T,) int64 positions of the tokens in their sequences (RoPE), for a part of
        each sequence (context parallel); None means 0 .. T-1.

        head: called as ``head(hidden, output.weight)`` on the final normed hidden states
        (B, T, dim) instead of the output layer, and its result returned: the trainer's chunked
        cross entropy, which never materialises the logits. Called inside this forward, so
        FSDP's gathered output weight and autograd hooks apply as for the output layer.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, seq_len), got shape {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if positions is None and T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {T} exceeds max_seq_len({self.cfg.max_seq_len}); shorten the "
                "input or raise max_seq_len in the model config"
            )
        # (T, head_dim // 2, 2)
        rope_cache = self.rope_cache[:T] if positions is None else self.rope_cache[positions]
        h = self.tok_embeddings(tokens)  # (B, T, dim)
        for layer in self.layers.values():
            h = layer(h, rope_cache)
        if head is not None:
            return head(self.norm(h), self.output.weight)
        return self.output(self.norm(h))  # (B, T, vocab_size)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialize every parameter and recompute the RoPE table (e.g. after `to_empty`).

        Scheme (torchtitan llama3 with depth_init, plus Megatron's embedding init):
        - tok_embeddings: normal(0, init_std), as Megatron / NeMo (torchtitan uses std 1.0);
        - wq, wk, wv (or wqkv), w1, w3: normal(0, init_std) truncated at 3 std;
        - wo, w2 of layer i: normal(0, init_std / sqrt(2 (i + 1))) truncated at 3 std;
        - RMSNorm weights: ones;
        - output: normal(0, dim ** -0.5) truncated at 3 std, as torchtitan.
        Deterministic for a given `torch.manual_seed` on a single device.
        """
        self.rope_cache.copy_(precompute_rope_cache(self.cfg, device=self.rope_cache.device))
        nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=self.cfg.init_std)
        for layer in self.layers.values():
            layer.init_weights(self.cfg.init_std)
        self.norm.init_weights()
        _init_linear(self.output, self.cfg.dim**-0.5)


def num_params(model: nn.Module, *, exclude_embedding: bool = False) -> int:
    """Number of parameters (works on meta); exclude_embedding drops `tok_embeddings` only."""
    total = sum(p.numel() for p in model.parameters())
    if exclude_embedding:
        total -= sum(p.numel() for p in model.tok_embeddings.parameters())
    return total


def num_params_from_config(cfg: LlamaConfig, *, exclude_embedding: bool = False) -> int:
    """Same count as `num_params(Llama(cfg))`, without building the model."""
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    attention = 2 * cfg.dim * cfg.dim + 2 * cfg.dim * kv_dim  # wq, wo + wk, wv (or wqkv, wo)
    block = attention + 3 * cfg.dim * cfg.ffn_dim + 2 * cfg.dim  # + w1, w2, w3 + two norms
    embedding = cfg.vocab_size * cfg.dim
    total = cfg.n_layers * block + cfg.dim + 2 * embedding  # + final norm, embedding, output
    return total - embedding if exclude_embedding else total


def training_flops_per_token(cfg: LlamaConfig, seq_len: int) -> int:
    """Exact matmul FLOPs of one training token at `seq_len` (forward + backward), counted on
    the model itself.

    Every Linear of a meta-built model does in x out multiply-adds per token, the attention
    scores and weighted values 2 x seq_len x (n_heads x head_dim) per layer; a multiply-add is 2
    FLOPs and backward costs twice the forward (input and weight gradients): 6 FLOPs per
    multiply-add. The causal mask is not discounted (full T x T attention), as MLPerf and
    NVIDIA count it; norms, RoPE and the softmax are left out. This equals NVIDIA's Llama 3
    formula (`model_flops_per_token_nvidia`).
    """
    with torch.device("meta"):
        model = Llama(dataclasses.replace(cfg, max_seq_len=max(seq_len, 1)))
    linear = sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)
    )
    attention = cfg.n_layers * 2 * seq_len * cfg.n_heads * cfg.head_dim
    return 6 * (linear + attention)


def model_flops_per_token_nvidia(cfg: LlamaConfig, seq_len: int) -> float:
    """Training FLOPs per token by NVIDIA's Llama 3 formula (NeMo `flops_formulas.llama3`).

    attention 12 L h^2 (1 + n_kv_heads / n_heads + T / h), MLP 18 L ffn_dim h, and
    embedding/output 6 V h; h = dim, T = seq_len. About 57.9e9 for llama3.1-8b at T = 8192.
    """
    L, h = cfg.n_layers, cfg.dim
    attention = 12 * L * h * h * (1 + cfg.n_kv_heads / cfg.n_heads + seq_len / h)
    mlp = 18 * L * cfg.ffn_dim * h
    embedding = 6 * cfg.vocab_size * h
    return attention + mlp + embedding
