"""FLUX.1 transformer (the MLPerf flux1 model): modules, latent packing, position ids, parameter
and FLOP counts; its config and size registry are in `config.py`.

A rectified-flow transformer over packed VAE latents: 19 double-stream blocks (separate weights
for the image and the text tokens, one joint attention) then 38 single-stream blocks (one
sequence, attention and MLP in parallel), all modulated by a vector made of the timestep and the
pooled CLIP text embedding. Parameter names follow torchtitan's flux (= Black Forest Labs'
layout: `double_blocks.{i}.img_attn.qkv`, ...); diffusers' names live only in `hf.py`. Build on
the meta device, parallelize, then materialize:

    with torch.device("meta"):
        model = Flux(get_flux_config("flux-schnell"))
    model.to_empty(device="cuda")
    model.init_weights()

The model has no buffers: the RoPE table depends on the position ids passed to `forward` and is
computed there (a few thousand cos/sin).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainperf.models.flux.config import FLUX_CONFIGS as FLUX_CONFIGS
from trainperf.models.flux.config import TIME_EMBED_DIM, TIME_FACTOR, FluxConfig
from trainperf.models.flux.config import get_flux_config as get_flux_config

# --- latents and positions ----------------------------------------------------------------------


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """VAE latents (B, C, H, W) -> tokens (B, H/2 * W/2, C * 4): each 2 x 2 patch is one token,
    row-major over the patch grid, channels (c, dy, dx) ("b c (h 2) (w 2) -> b (h w) (c 2 2)")."""
    B, C, H, W = latents.shape
    if H % 2 or W % 2:
        raise ValueError(f"latent height({H}) and width({W}) must be even to pack 2 x 2 patches")
    x = latents.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5)  # b h w c 2 2
    return x.reshape(B, (H // 2) * (W // 2), C * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pack_latents`: tokens (B, H/2 * W/2, C * 4) -> latents (B, C, H, W)."""
    B, N, D = tokens.shape
    if height % 2 or width % 2 or N != (height // 2) * (width // 2) or D % 4:
        raise ValueError(
            f"tokens of shape {tuple(tokens.shape)} are not the 2 x 2 patches of a "
            f"{height} x {width} latent (need {(height // 2) * (width // 2)} tokens, channels x 4)"
        )
    x = tokens.reshape(B, height // 2, width // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, D // 4, height, width)  # b c (h 2) (w 2)


def image_position_ids(
    height: int, width: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Position ids (H/2 * W/2, 3) of the packed tokens of an H x W latent: (0, row, col) on the
    patch grid, in `pack_latents` order. float32, as the reference builds them."""
    if height % 2 or width % 2:
        raise ValueError(f"latent height({height}) and width({width}) must be even (2 x 2 patches)")
    rows, cols = height // 2, width // 2
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.reshape(rows * cols, 3)


def text_position_ids(n_tokens: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Position ids (n_tokens, 3) of the text tokens: all zeros (no position in RoPE)."""
    return torch.zeros(n_tokens, 3, device=device)


# --- embeddings ---------------------------------------------------------------------------------


def rope_table(ids: torch.Tensor, axes_dim: tuple[int, ...], theta: float) -> torch.Tensor:
    """cos and sin of the RoPE angles of position ids (..., N, n_axes): (..., N, head_dim / 2, 2)
    float32, [..., 0] = cos, pairs of axis 0 first.

    Axis i of d_i channels turns pair j by pos_i x omega_j, omega_j = 1 / theta ** (2j / d_i);
    the angles are formed in float64 (positions reach thousands at high resolution), as BFL and
    diffusers do, then rounded to float32.
    """
    tables = []
    for i, d in enumerate(axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=ids.device) / d)
        angles = ids[..., i].to(torch.float64)[..., None] * omega  # (..., N, d / 2)
        tables.append(torch.stack([angles.cos(), angles.sin()], dim=-1))
    return torch.cat(tables, dim=-2).float()


def apply_rope(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, N, H, head_dim) by the table pe (N or B x N, head_dim / 2, 2).

    Interleaved pairs (x0, x1), (x2, x3), ... are rotated, in float32 whatever x's dtype (the
    reference's and diffusers' precision), then cast back.
    """
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, N, H, head_dim / 2)
    cos, sin = pe[..., 0].unsqueeze(-2), pe[..., 1].unsqueeze(-2)  # (.., N, 1, head_dim / 2)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


class EmbedND(nn.Module):
    """Position ids (..., N, n_axes) -> the RoPE table of every axis, concatenated."""

    def __init__(self, axes_dim: tuple[int, ...], theta: float) -> None:
        super().__init__()
        self.axes_dim, self.theta = axes_dim, theta

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return rope_table(ids, self.axes_dim, self.theta)  # (..., N, head_dim / 2, 2)


def timestep_embedding(t: torch.Tensor, dim: int = TIME_EMBED_DIM) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of timesteps t (B,) in [0, 1]: [cos(a), sin(a)] with
    a_k = 1000 t exp(-ln(10000) k / (dim / 2)), k < dim / 2 (BFL; diffusers' Timesteps with
    flip_sin_to_cos). 1000 t is formed in t's dtype, the rest in float32, as the reference."""
    t = TIME_FACTOR * t
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb.to(t.dtype) if torch.is_floating_point(t) else emb


class MLPEmbedder(nn.Module):
    """out_layer(silu(in_layer(x))): the timestep and pooled-text embedders."""

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim)
        self.out_layer = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))

    def init_weights(self) -> None:
        for layer in (self.in_layer, self.out_layer):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)


def _init_xavier(*layers: nn.Linear) -> None:
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


# --- attention ----------------------------------------------------------------------------------


class QKNorm(nn.Module):
    """RMSNorm of every query and key head (learnable scale, no bias)."""

    def __init__(self, head_dim: int, eps: float | None) -> None:
        super().__init__()
        self.query_norm = nn.RMSNorm(head_dim, eps=eps)
        self.key_norm = nn.RMSNorm(head_dim, eps=eps)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the scale in q's dtype (as FSDP2's bf16 parameters give it): under autocast with
        # float32 weights, a mixed-dtype RMSNorm falls off the fused kernel (~10% of a step)
        return self._norm(self.query_norm, q), self._norm(self.key_norm, k)

    @staticmethod
    def _norm(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, norm.normalized_shape, norm.weight.to(x.dtype), norm.eps)

    def init_weights(self) -> None:
        nn.init.ones_(self.query_norm.weight)
        nn.init.ones_(self.key_norm.weight)


class FullAttention(nn.Module):
    """The attention kernel: softmax(q k^T / sqrt(head_dim)) v over the whole joint sequence,
    no mask.

    A module of its own, like Llama's CausalAttention, so that parallelism can swap it without
    touching the model (context parallel, once the plan has it).
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)  # (B, H, N, head_dim)


def split_heads(qkv: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, ...]:
    """A fused projection (B, N, 3 x H x head_dim), rows laid out (K H D), -> q, k, v, each
    (B, N, H, head_dim)."""
    return qkv.unflatten(-1, (3, -1, head_dim)).unbind(2)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor, kernel: nn.Module
) -> torch.Tensor:
    """RoPE on q and k (B, N, H, head_dim), then `kernel`: (B, N, H x head_dim)."""
    q, k = apply_rope(q, pe), apply_rope(k, pe)
    out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, H, N, D)
    return out.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """The projections of one stream of a double-stream block: qkv, per-head QK norm, proj.
    (Its attention is joint with the other stream's, computed by the block.)"""

    def __init__(self, cfg: FluxConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.norm = QKNorm(cfg.head_dim, cfg.qk_norm_eps)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normed q, k and v (B, N, H, head_dim) of x (B, N, hidden_size)."""
        q, k, v = split_heads(self.qkv(x), self.head_dim)
        q, k = self.norm(q, k)
        return q, k, v

    def init_weights(self) -> None:
        _init_xavier(self.qkv, self.proj)
        self.norm.init_weights()


# --- blocks -------------------------------------------------------------------------------------


class Modulation(nn.Module):
    """lin(silu(vec)) split into (shift, scale, gate) chunks: two triples for a double-stream
    stream (attention, MLP), one for a single-stream block. Each chunk is (B, 1, hidden_size)."""

    def __init__(self, dim: int, *, double: bool) -> None:
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim)

    def forward(self, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1)

    def init_weights(self) -> None:
        nn.init.zeros_(self.lin.weight)  # every block starts as the identity (adaLN-Zero, DiT)
        nn.init.zeros_(self.lin.bias)


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def _mlp(cfg: FluxConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cfg.hidden_size, cfg.mlp_hidden_dim),
        nn.GELU(approximate="tanh"),
        nn.Linear(cfg.mlp_hidden_dim, cfg.hidden_size),
    )


class DoubleStreamBlock(nn.Module):
    """Image and text streams with their own weights, one joint attention over txt + img:
    x + gate1 * proj(attn((1 + scale1) LN(x) + shift1)), then + gate2 * mlp(...) per stream."""

    def __init__(self, cfg: FluxConfig) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.img_mod = Modulation(dim, double=True)
        self.img_norm1 = _layer_norm(dim)
        self.img_attn = SelfAttention(cfg)
        self.img_norm2 = _layer_norm(dim)
        self.img_mlp = _mlp(cfg)
        self.txt_mod = Modulation(dim, double=True)
        self.txt_norm1 = _layer_norm(dim)
        self.txt_attn = SelfAttention(cfg)
        self.txt_norm2 = _layer_norm(dim)
        self.txt_mlp = _mlp(cfg)
        self.sdpa = FullAttention()

    def forward(
        self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img_shift1, img_scale1, img_gate1, img_shift2, img_scale2, img_gate2 = self.img_mod(vec)
        txt_shift1, txt_scale1, txt_gate1, txt_shift2, txt_scale2, txt_gate2 = self.txt_mod(vec)
        img_q, img_k, img_v = self.img_attn.project(
            (1 + img_scale1) * self.img_norm1(img) + img_shift1
        )
        txt_q, txt_k, txt_v = self.txt_attn.project(
            (1 + txt_scale1) * self.txt_norm1(txt) + txt_shift1
        )
        q = torch.cat((txt_q, img_q), dim=1)  # (B, N_txt + N_img, H, head_dim)
        k = torch.cat((txt_k, img_k), dim=1)
        v = torch.cat((txt_v, img_v), dim=1)
        attn = attention(q, k, v, pe, self.sdpa)  # (B, N_txt + N_img, hidden_size)
        txt_attn, img_attn = attn[:, : txt.shape[1]], attn[:, txt.shape[1] :]

        img = img + img_gate1 * self.img_attn.proj(img_attn)
        img = img + img_gate2 * self.img_mlp((1 + img_scale2) * self.img_norm2(img) + img_shift2)
        txt = txt + txt_gate1 * self.txt_attn.proj(txt_attn)
        txt = txt + txt_gate2 * self.txt_mlp((1 + txt_scale2) * self.txt_norm2(txt) + txt_shift2)
        return img, txt

    def init_weights(self) -> None:
        # the reference's order (one RNG stream): MLPs, then attention, then modulations
        _init_xavier(self.img_mlp[0], self.img_mlp[2], self.txt_mlp[0], self.txt_mlp[2])
        self.img_attn.init_weights()
        self.img_mod.init_weights()
        self.txt_attn.init_weights()
        self.txt_mod.init_weights()


class SingleStreamBlock(nn.Module):
    """One sequence (txt + img), attention and MLP side by side (ViT-22B's parallel block):
    linear1 = [qkv | mlp_in], linear2 = [proj | mlp_out], x + gate * linear2(...)."""

    def __init__(self, cfg: FluxConfig) -> None:
        super().__init__()
        dim, self.head_dim = cfg.hidden_size, cfg.head_dim
        self.mlp_hidden_dim = cfg.mlp_hidden_dim
        self.linear1 = nn.Linear(dim, 3 * dim + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(dim + self.mlp_hidden_dim, dim)
        self.norm = QKNorm(cfg.head_dim, cfg.qk_norm_eps)
        self.pre_norm = _layer_norm(dim)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(dim, double=False)
        self.sdpa = FullAttention()

    def forward(self, x: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(vec)
        x_mod = (1 + scale) * self.pre_norm(x) + shift
        qkv, mlp = self.linear1(x_mod).split([x.shape[-1] * 3, self.mlp_hidden_dim], dim=-1)
        q, k, v = split_heads(qkv, self.head_dim)
        q, k = self.norm(q, k)
        attn = attention(q, k, v, pe, self.sdpa)  # (B, N, hidden_size)
        return x + gate * self.linear2(torch.cat((attn, self.mlp_act(mlp)), dim=2))

    def init_weights(self) -> None:
        _init_xavier(self.linear1, self.linear2)
        self.norm.init_weights()
        self.modulation.init_weights()


class LastLayer(nn.Module):
    """(1 + scale) LN(x) + shift from adaLN_modulation(vec) = (shift, scale), then linear."""

    def __init__(self, cfg: FluxConfig) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.norm_final = _layer_norm(dim)
        self.linear = nn.Linear(dim, cfg.out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)  # (B, hidden_size) each
        return self.linear((1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :])

    def init_weights(self) -> None:
        for layer in (self.adaLN_modulation[1], self.linear):
            nn.init.zeros_(layer.weight)  # the model predicts exactly 0 at step 0
            nn.init.zeros_(layer.bias)


# --- the model ----------------------------------------------------------------------------------


class Flux(nn.Module):
    """FLUX.1 transformer: packed noisy latents, text tokens, timesteps and the pooled text
    embedding -> the predicted velocity of every latent token."""

    def __init__(self, cfg: FluxConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.hidden_size
        self.pe_embedder = EmbedND(cfg.axes_dim, cfg.theta)
        self.img_in = nn.Linear(cfg.in_channels, dim)
        self.time_in = MLPEmbedder(TIME_EMBED_DIM, dim)
        self.vector_in = MLPEmbedder(cfg.vec_in_dim, dim)
        self.txt_in = nn.Linear(cfg.context_in_dim, dim)
        # ModuleDicts keyed "0".."n-1" (torchtitan): names stay stable when blocks are wrapped.
        self.double_blocks = nn.ModuleDict(
            {str(i): DoubleStreamBlock(cfg) for i in range(cfg.depth)}
        )
        self.single_blocks = nn.ModuleDict(
            {str(i): SingleStreamBlock(cfg) for i in range(cfg.depth_single_blocks)}
        )
        self.final_layer = LastLayer(cfg)

    def forward(
        self,
        img: torch.Tensor,
        img_ids: torch.Tensor,
        txt: torch.Tensor,
        txt_ids: torch.Tensor,
        timesteps: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity (B, N_img, out_channels) of img (B, N_img, in_channels), given the text
        tokens txt (B, N_txt, context_in_dim), timesteps (B,) in [0, 1] and the pooled text
        embedding y (B, vec_in_dim). img_ids (N_img, 3) and txt_ids (N_txt, 3), or with a
        leading batch dimension: position ids (`image_position_ids`, `text_position_ids`)."""
        if img.dim() != 3 or txt.dim() != 3:
            raise ValueError(
                f"img and txt must be (batch, tokens, channels); got {tuple(img.shape)} and "
                f"{tuple(txt.shape)} (pack latents with pack_latents)"
            )
        img = self.img_in(img)  # (B, N_img, hidden_size)
        vec = self.time_in(timestep_embedding(timesteps)) + self.vector_in(y)  # (B, hidden_size)
        txt = self.txt_in(txt)  # (B, N_txt, hidden_size)
        pe = self.pe_embedder(torch.cat((txt_ids, img_ids), dim=-2))  # text first, as attention
        for block in self.double_blocks.values():
            img, txt = block(img, txt, vec, pe)
        x = torch.cat((txt, img), dim=1)
        for block in self.single_blocks.values():
            x = block(x, vec, pe)
        return self.final_layer(x[:, txt.shape[1] :], vec)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialize every parameter (e.g. after `to_empty`), as the reference (torchtitan
        flux `FluxModel.init_weights`, after DiT), in its order:
        - img_in, txt_in and every block Linear (qkv, proj, MLPs, linear1, linear2):
          xavier_uniform, bias 0;
        - time_in, vector_in (MLPEmbedder): normal(0, 0.02), bias 0;
        - every modulation Linear, the final adaLN and the final linear: 0 (so the blocks start
          as the identity and the output is exactly 0);
        - QK-norm scales: 1.
        Deterministic for a given `torch.manual_seed` on a single device.
        """
        _init_xavier(self.img_in, self.txt_in)
        self.time_in.init_weights()
        self.vector_in.init_weights()
        for block in self.single_blocks.values():
            block.init_weights()
        for block in self.double_blocks.values():
            block.init_weights()
        self.final_layer.init_weights()


# --- counts -------------------------------------------------------------------------------------


def num_params(model: nn.Module) -> int:
    """Number of parameters (works on meta)."""
    return sum(p.numel() for p in model.parameters())


def training_flops_per_sample(cfg: FluxConfig) -> int:
    """Exact matmul FLOPs of one training sample (forward + backward) of `cfg.image_tokens`
    image and `cfg.text_tokens` text tokens, counted on the model itself.

    Every Linear of a meta-built model does in x out multiply-adds per row it sees
    (`rows_per_sample`: a double-stream weight its own stream's tokens, a single-stream weight
    the joint sequence, a modulation or embedder one vector); the attention of every block
    adds q k^T and the weighted values, 2 x N^2 x hidden_size over the joint sequence of N
    tokens. A multiply-add is 2 FLOPs and backward costs twice the forward (input and weight
    gradients): 6 FLOPs per multiply-add. Norms, RoPE, activations and the softmax are left out.
    About 20.4e12 for flux-schnell at 256 + 256 tokens.
    """
    with torch.device("meta"):
        model = Flux(cfg)
    linear = sum(
        rows_per_sample(name, cfg) * m.in_features * m.out_features
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    )
    n_blocks = cfg.depth + cfg.depth_single_blocks
    attention = n_blocks * 2 * cfg.seq_len**2 * cfg.hidden_size
    return 6 * (linear + attention)


def rows_per_sample(name: str, cfg: FluxConfig) -> int:
    """How many rows (tokens or vectors) of one sample the Linear `name` of a Flux multiplies."""
    parts = name.split(".")
    if parts[-1] == "lin" or parts[0] in ("time_in", "vector_in") or "adaLN_modulation" in parts:
        return 1  # modulations and embedders: one vector per sample
    if parts[0] == "single_blocks":
        return cfg.seq_len
    if parts[0] in ("img_in", "final_layer") or (len(parts) > 2 and parts[2].startswith("img_")):
        return cfg.image_tokens
    if parts[0] == "txt_in" or (len(parts) > 2 and parts[2].startswith("txt_")):
        return cfg.text_tokens
    raise AssertionError(f"no token count for the Linear {name}")
