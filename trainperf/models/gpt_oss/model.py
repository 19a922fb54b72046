"""gpt-oss (OpenAI's mixture-of-experts decoder) in one file: RoPE, modules, FLOP count (its
config and size registry: ``config.py``).

The architecture of HF Transformers' ``GptOssForCausalLM`` (and OpenAI's gpt-oss-20b):
pre-norm blocks of grouped-query attention with learned per-head *sinks* (an extra logit in
every softmax row that takes probability mass and contributes no value), sliding-window (128
tokens) and full attention alternating (even layers slide), YaRN-scaled RoPE on half-split
channels, biases on every projection; the feed-forward is a mixture of experts: a linear router
(with bias) picks the top-k experts per token and weights them by a softmax over the k chosen
logits; each expert is a clamped SwiGLU (``(up + 1) * gate * sigmoid(1.702 gate)``, gate and
up clamped at 7) with biases.

The experts run as two grouped GEMMs over the tokens sorted by expert (`F.grouped_mm`, no loop
over experts); expert parallelism (``parallel/ep.py``) swaps the `Experts` module's
``dispatch`` for an all-to-all over the ranks that share the experts. Parameter names follow
torchtitan (``tok_embeddings``, ``layers.{i}.attention.wq``, ``layers.{i}.moe.experts``...);
HF's live only in ``hf.py``. The expert tensors keep HF's layout ((experts, in, out), gate and
up interleaved in the columns of ``gate_up``), so a checkpoint loads by name.

    with torch.device("meta"):
        model = GptOss(get_gpt_oss_config("gpt-oss-20b"))
    model.to_empty(device="cuda")
    model.init_weights()
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor

from trainperf.models.gpt_oss.config import GPT_OSS_CONFIGS as GPT_OSS_CONFIGS
from trainperf.models.gpt_oss.config import GptOssConfig
from trainperf.models.gpt_oss.config import Yarn as Yarn
from trainperf.models.gpt_oss.config import get_gpt_oss_config as get_gpt_oss_config

# --- RoPE ---------------------------------------------------------------------------------------


def rope_freqs(cfg: GptOssConfig) -> torch.Tensor:
    """Per-pair rotation frequencies (head_dim // 2,) float32: theta ** (-2i / head_dim), with
    YaRN blending interpolated (/ factor) and original frequencies along a linear ramp between
    the channels that turn beta_slow and beta_fast times over the original context."""
    d = cfg.head_dim
    freqs = 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    y = cfg.yarn
    if y is None:
        return freqs

    def channel(rotations: float) -> float:  # the channel turning `rotations` times
        span = y.original_max_position_embeddings / (rotations * 2 * math.pi)
        return d * math.log(span) / (2 * math.log(cfg.rope_theta))

    low, high = channel(y.beta_fast), channel(y.beta_slow)
    if y.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    high = high + 0.001 if low == high else high
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return freqs / y.factor * ramp + freqs * (1 - ramp)


def rope_cache(cfg: GptOssConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """(max_seq_len, head_dim // 2, 2) float32: cos and sin of position x freq, times YaRN's
    attention factor (as HF scales them)."""
    scale = cfg.yarn.attention_factor if cfg.yarn is not None else 1.0
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), rope_freqs(cfg))
    return (torch.stack([angles.cos(), angles.sin()], dim=-1) * scale).to(device or "cpu")


def apply_rope(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, heads, head_dim) by position, half-split pairs (x_i, x_{i + D/2})."""
    T = x.shape[1]
    cos, sin = cache[..., 0].view(1, T, 1, -1), cache[..., 1].view(1, T, 1, -1)
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).type_as(x)


# --- modules ------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight in float32, cast back to x's dtype."""

    def __init__(self, dim: int, *, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (
            (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))
            .mul(self.weight.float())
            .type_as(x)
        )


class SinkAttention(nn.Module):
    """softmax([q k^T / sqrt(D), sink]) v without the sink's column: causal, optionally within
    a sliding window. A module of its own so that parallelism can swap the kernel.

    On CUDA: FlexAttention (compiled) with a block mask, and the sink applied to its output
    through the log-sum-exp: out * sigmoid(lse - sink) (the softmax over the row plus the sink,
    exactly); full causal attention without sinks goes to SDPA (cuDNN's kernel on Hopper).
    Elsewhere (CPU: FlexAttention has no CPU backward): the explicit softmax.
    """

    def __init__(self, window: int | None) -> None:
        super().__init__()
        self.window = window

    def forward(self, q, k, v, sinks: torch.Tensor | None) -> torch.Tensor:
        # q (B, H, T, D); k, v (B, KV, T, D); sinks (H,) or None (a plain softmax)
        if q.is_cuda:
            return self._flex(q, k, v, sinks)
        return self._explicit(q, k, v, sinks)

    def _mask(self, T: int, device: torch.device) -> torch.Tensor:
        i = torch.arange(T, device=device)
        mask = i[:, None] >= i[None, :]
        if self.window is not None:
            mask &= i[:, None] - i[None, :] < self.window
        return mask

    def _explicit(self, q, k, v, sinks):
        B, H, T, D = q.shape
        rep = H // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)).float() * D**-0.5  # (B, H, T, T)
        scores = scores.masked_fill(~self._mask(T, q.device), float("-inf"))
        if sinks is None:
            return scores.softmax(dim=-1).type_as(v) @ v
        sink = sinks.float().view(1, H, 1, 1).expand(B, H, T, 1)
        probs = torch.cat([scores, sink], dim=-1).softmax(dim=-1)[..., :-1]
        return probs.type_as(v) @ v

    def _flex(self, q, k, v, sinks):
        if sinks is None and self.window is None:  # plain causal: SDPA's kernels (cuDNN on H100)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        out, lse = flex_attention_lse(q, k, v, self.window)
        if sinks is None:
            return out
        weight = torch.sigmoid(lse.float() - sinks.float().view(1, -1, 1)).unsqueeze(-1)
        return (out.float() * weight).type_as(q)


_BLOCK_MASKS: dict = {}
"""FlexAttention block masks by (seq_len, window, device): built by `prepare_block_masks` in
the model's forward, outside the compiled blocks, which only look them up (torchtitan's way)."""


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _sliding(window: int) -> Callable:
    """The causal mask within `window` keys (a closure per window: compiled kernels are cached
    by the mask's code and closure, so each window gets its own)."""

    def sliding(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

    return sliding


def prepare_block_masks(T: int, windows: set[int | None], device: torch.device) -> None:
    """Build (once) the causal block mask of each window for sequences of T tokens."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if not _FLEX:  # compiled once, here: never inside a compiled (or checkpointed) block
        _FLEX.append(torch.compile(flex_attention, dynamic=False))
    for window in windows:
        key = (T, window, device)
        if key not in _BLOCK_MASKS:
            mask = _causal if window is None else _sliding(window)
            _BLOCK_MASKS[key] = create_block_mask(mask, None, None, T, T, device=device)


def flex_attention_lse(q, k, v, window: int | None):
    """FlexAttention's output and log-sum-exp (natural log) for the causal (windowed) mask."""
    from torch.nn.attention.flex_attention import AuxRequest

    T = q.shape[2]
    key = (T, window, q.device)
    if key not in _BLOCK_MASKS:  # a kernel called outside the model's forward
        prepare_block_masks(T, {window}, q.device)
    gqa = q.shape[1] != k.shape[1]
    out, aux = _FLEX[0](
        q, k, v, block_mask=_BLOCK_MASKS[key], enable_gqa=gqa, return_aux=AuxRequest(lse=True)
    )
    return out, aux.lse


_FLEX: list = []
"""torch.compile(flex_attention), made by `prepare_block_masks`."""


class Attention(nn.Module):
    """Grouped-query attention with biases, half-split YaRN RoPE, per-head sinks and (with
    ``cfg.qk_norm``) RMSNorm on each query and key head before RoPE."""

    def __init__(self, cfg: GptOssConfig, layer_id: int) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.wq = nn.Linear(cfg.dim, q_dim, bias=cfg.bias)
        self.wk = nn.Linear(cfg.dim, kv_dim, bias=cfg.bias)
        self.wv = nn.Linear(cfg.dim, kv_dim, bias=cfg.bias)
        self.wo = nn.Linear(q_dim, cfg.dim, bias=cfg.bias)
        self.sinks = nn.Parameter(torch.empty(cfg.n_heads)) if cfg.attention_sinks else None
        self.sdpa = SinkAttention(cfg.sliding_window if cfg.is_sliding(layer_id) else None)
        if cfg.qk_norm:  # Megatron's qk_layernorm: per head, before RoPE
            self.q_norm = RMSNorm(cfg.head_dim, eps=cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, eps=cfg.norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, -1, self.head_dim)
        k = self.wk(x).view(B, T, -1, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cache), apply_rope(k, cache)
        v = self.wv(x).view(B, T, -1, self.head_dim)
        out = self.sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.sinks)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Rows [offs[e-1], offs[e]) of x times w[e], for every expert e, in one kernel.

    CUDA's grouped GEMM (and its compiled form everywhere) takes bf16 only: other dtypes there
    (float32 checks) multiply each row by its own expert's gathered weight instead.
    """
    if x.dtype != torch.bfloat16 and (x.is_cuda or torch.compiler.is_compiling()):
        rows = torch.arange(x.shape[0], device=x.device)
        expert = torch.searchsorted(offs, rows, right=True).clamp(max=w.shape[0] - 1)
        return torch.bmm(x.unsqueeze(1), w[expert]).squeeze(1)
    return F.grouped_mm(x, w, offs=offs)


class Experts(nn.Module):
    """n_experts clamped-SwiGLU MLPs, applied to tokens already sorted by expert.

    gate_up (E, dim, 2 moe_dim): gate and up interleaved in the columns (gate = even), with
    gate_up_bias (E, 2 moe_dim); down (E, moe_dim, dim) with down_bias (E, dim): HF's layout
    (the biases only with ``cfg.bias``).
    """

    autocast_params = ("gate_up", "down", "gate_up_bias", "down_bias")
    """Used only in autocast's dtype (`_compute`): train.master_weights=optimizer may hold
    them as bf16 copies."""

    def __init__(self, cfg: GptOssConfig) -> None:
        super().__init__()
        E, h, f = cfg.n_experts, cfg.dim, cfg.moe_dim
        self.alpha, self.limit = cfg.swiglu_alpha, cfg.swiglu_limit
        self.gate_up = nn.Parameter(torch.empty(E, h, 2 * f))
        self.down = nn.Parameter(torch.empty(E, f, h))
        self.gate_up_bias = nn.Parameter(torch.empty(E, 2 * f)) if cfg.bias else None
        self.down_bias = nn.Parameter(torch.empty(E, h)) if cfg.bias else None
        self.grad_scale = 1.0
        """Factor on the experts' gradients: expert parallel sets 1 / ep (each rank's experts
        sum the tokens of all ep ranks, and data parallel then averages over the others)."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """gpt-oss's clamped SwiGLU of the interleaved (gate, up) columns, or the plain one."""
        gate, up = h[:, ::2], h[:, 1::2]
        if self.limit is None:
            return F.silu(gate) * up
        gate, up = gate.clamp(max=self.limit), up.clamp(-self.limit, self.limit)
        return (up + 1) * gate * torch.sigmoid(gate * self.alpha)

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x (n, dim): tokens grouped by expert, counts (E,) int32 of each group -> (n, dim)."""
        offs = counts.cumsum(0, dtype=torch.int32)
        expert = None
        if self.gate_up_bias is not None:  # each row's expert, to add its biases
            expert = torch.repeat_interleave(
                torch.arange(len(counts), device=x.device), counts, output_size=x.shape[0]
            )
        scale = self.grad_scale
        gate_up, down = _compute(self.gate_up, x, scale), _compute(self.down, x, scale)
        h = grouped_mm(x.type_as(gate_up), gate_up, offs)
        if self.gate_up_bias is not None:
            h = h + _compute(self.gate_up_bias, x, scale)[expert]
        out = grouped_mm(self.activation(h).type_as(down), down, offs)
        if self.down_bias is not None:
            out = out + _compute(self.down_bias, x, scale)[expert]
        return out


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `scale`."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def _compute(w: torch.Tensor, x: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """This rank's experts of `w` (expert parallel shards them: a DTensor's local part) in the
    dtype the matmul runs in: autocast's (bf16 under the trainer) when enabled; its gradient
    times `grad_scale`."""
    w = w.to_local() if isinstance(w, DTensor) else w
    if grad_scale != 1.0:
        w = _ScaleGrad.apply(w, grad_scale)
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return w.to(torch.get_autocast_dtype(device))
    return w


class MoE(nn.Module):
    """Top-k routing and the experts; ``dispatch`` runs the experts on the routed copies of the
    tokens (here: sort by expert, grouped GEMMs; expert parallelism swaps it for all-to-all)."""

    def __init__(self, cfg: GptOssConfig) -> None:
        super().__init__()
        self.top_k, self.n_experts = cfg.top_k, cfg.n_experts
        self.router = nn.Linear(cfg.dim, cfg.n_experts, bias=cfg.bias)
        self.experts = Experts(cfg)
        self.dispatch: Callable = local_dispatch

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, dim) -> (output, router logits (B T, E) for the load-balancing loss)."""
        B, T, D = x.shape
        tokens = x.reshape(-1, D)
        logits = self.router(tokens)  # (N, E)
        top, chosen = logits.topk(self.top_k, dim=-1)  # (N, k)
        weights = top.softmax(dim=-1)
        routed = self.dispatch(self.experts, tokens, chosen.flatten(), self.n_experts)  # (N k, D)
        out = (routed.view(-1, self.top_k, D) * weights.unsqueeze(-1).type_as(routed)).sum(1)
        return out.view(B, T, D).type_as(x), logits


def local_dispatch(experts: Experts, tokens: torch.Tensor, chosen: torch.Tensor, n_experts: int):
    """Every (token, choice) pair through its expert on this rank: tokens (N, D), chosen (N k,)
    -> (N k, D) in the order of `chosen`."""
    order = chosen.argsort(stable=True)
    counts = torch.zeros(n_experts, dtype=torch.int32, device=chosen.device)
    counts.scatter_add_(0, chosen, torch.ones_like(chosen, dtype=torch.int32))
    k = chosen.shape[0] // tokens.shape[0]
    out = experts(tokens[order // k], counts)
    return torch.empty_like(out).index_copy_(0, order, out)


class TransformerBlock(nn.Module):
    """x + attention(norm(x)), then h + moe(norm(h)); returns the router logits too."""

    def __init__(self, layer_id: int, cfg: GptOssConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.attention = Attention(cfg, layer_id)
        self.ffn_norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.moe = MoE(cfg)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x + self.attention(self.attention_norm(x), cache)
        out, logits = self.moe(self.ffn_norm(h))
        return h + out, logits


def load_balancing_loss(logits: list[torch.Tensor], top_k: int) -> torch.Tensor:
    """HF's ``load_balancing_loss_func`` (Switch Transformer): E x sum_e f_e P_e, with f_e the
    share of top-k assignments and P_e the mean router probability of expert e, both over every
    token of every layer."""
    probs = torch.cat(logits).float().softmax(dim=-1)  # (L N, E)
    E = probs.shape[-1]
    chosen = probs.topk(top_k, dim=-1).indices.flatten()
    share = torch.zeros(E, device=probs.device).index_add_(
        0, chosen, torch.ones_like(chosen, dtype=torch.float32)
    )
    return E * (share / probs.shape[0] * probs.mean(0)).sum()


class GptOss(nn.Module):
    """Decoder-only gpt-oss: tokens (B, T) -> logits (B, T, vocab_size); untied output."""

    def __init__(self, cfg: GptOssConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleDict({str(i): TransformerBlock(i, cfg) for i in range(cfg.n_layers)})
        self.norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cache = rope_cache(cfg, device=self.output.weight.device)
        self.register_buffer("rope_cache", cache, persistent=False)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        head: Callable | None = None,
    ) -> object:
        """Logits (B, T, vocab_size) of `tokens` (B, T); or ``head(hidden, output.weight)``'s
        (loss sum, count) (the trainer's chunked cross entropy), to which a training forward
        adds router_aux_loss_coef x the load-balancing loss x count."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, seq_len), got shape {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if positions is None and T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {T} exceeds max_seq_len({self.cfg.max_seq_len}); shorten the "
                "input or raise max_seq_len in the model config"
            )
        cache = self.rope_cache[:T] if positions is None else self.rope_cache[positions]
        if tokens.is_cuda:
            c = self.cfg
            windows = {c.sliding_window if c.is_sliding(i) else None for i in range(c.n_layers)}
            prepare_block_masks(T, windows, tokens.device)
        h = self.tok_embeddings(tokens)
        router_logits = []
        for layer in self.layers.values():
            h, logits = layer(h, cache)
            router_logits.append(logits)
        if head is None:
            return self.output(self.norm(h))
        total, count = head(self.norm(h), self.output.weight)
        if self.training and self.cfg.router_aux_loss_coef > 0:
            aux = load_balancing_loss(router_logits, self.cfg.top_k)
            total = total + self.cfg.router_aux_loss_coef * aux * count
        return total, count

    @torch.no_grad()
    def init_weights(self) -> None:
        """Megatron's init (the MLPerf reference trains from scratch with it): every weight,
        expert, router, sink and the embedding ~ normal(0, init_std), the projections into the
        residual stream (wo, the experts' down) ~ normal(0, init_std / sqrt(2 n_layers)); biases
        zero, norms one. Recomputes the RoPE table."""
        self.rope_cache.copy_(rope_cache(self.cfg, device=self.rope_cache.device))
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif leaf in ("bias", "gate_up_bias", "down_bias"):
                nn.init.zeros_(p)
            elif name.endswith(("attention.wo.weight", "experts.down")):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, mean=0.0, std=std)


# --- counts -------------------------------------------------------------------------------------


def num_params(cfg: GptOssConfig, *, active: bool = False) -> int:
    """Parameters of the model (active: only top_k of the n_experts experts of each layer)."""
    with torch.device("meta"):
        model = GptOss(dataclasses.replace(cfg, max_seq_len=1))
    total = sum(p.numel() for p in model.parameters())
    if active:
        experts = sum(p.numel() for p in model.layers["0"].moe.experts.parameters())
        total -= cfg.n_layers * experts * (cfg.n_experts - cfg.top_k) // cfg.n_experts
    return total


def attended_keys(cfg: GptOssConfig, layer: int, seq_len: int) -> int:
    """Keys a query is scored against in the FLOP count: the window on sliding layers, the
    whole sequence on full ones (causality not discounted, as MLPerf and NVIDIA count)."""
    return min(cfg.sliding_window, seq_len) if cfg.is_sliding(layer) else seq_len


def training_flops_per_token(cfg: GptOssConfig, seq_len: int) -> int:
    """Exact matmul FLOPs of one training token (forward + backward = 6 per multiply-add),
    counted on the model: every Linear, the router, the top_k experts a token really runs
    (two grouped GEMMs each), the output layer, and attention's scores and weighted values
    (2 x keys x n_heads x head_dim per layer). Norms, RoPE, softmax and the SwiGLU are left out."""
    with torch.device("meta"):
        model = GptOss(dataclasses.replace(cfg, max_seq_len=1))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    linear = sum(m.in_features * m.out_features for m in linears)
    experts = cfg.n_layers * cfg.top_k * 3 * cfg.dim * cfg.moe_dim
    keys = sum(attended_keys(cfg, i, seq_len) for i in range(cfg.n_layers))
    attention = 2 * keys * cfg.n_heads * cfg.head_dim
    return 6 * (linear + experts + attention)
