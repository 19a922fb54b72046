"""FLUX.1 sizes: the transformer's config and the registry of named flavors (the published
FLUX.1-schnell shapes, trainperf's proxy, small and tiny), read by the model and the data reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainperf.models.registry import from_registry

TIME_EMBED_DIM = 256
"""Width of the sinusoidal timestep embedding (fixed in BFL, torchtitan and diffusers)."""
TIME_FACTOR = 1000.0
"""The timestep t in [0, 1] is scaled by this before its sinusoidal embedding."""


@dataclass
class FluxConfig:
    """Sizes and numerics of a FLUX.1 transformer. Get one with `get_flux_config(name)`;
    the defaults are FLUX.1-schnell's."""

    in_channels: int = 64
    """Channels of a packed latent token: 16 VAE channels x a 2 x 2 patch."""
    out_channels: int = 64
    """Channels predicted per token (the velocity of the packed latent)."""
    vec_in_dim: int = 768
    """Width of the pooled text embedding y (CLIP ViT-L/14)."""
    context_in_dim: int = 4096
    """Width of the text token embeddings (T5-XXL)."""
    hidden_size: int = 3072
    """Model width."""
    mlp_ratio: float = 4.0
    """MLP hidden width = int(hidden_size * mlp_ratio)."""
    num_heads: int = 24
    """Attention heads; head_dim = hidden_size / num_heads."""
    depth: int = 19
    """Double-stream blocks."""
    depth_single_blocks: int = 38
    """Single-stream blocks."""
    axes_dim: tuple[int, ...] = (16, 56, 56)
    """RoPE channels per position axis (index, row, column); must sum to head_dim."""
    theta: float = 10000.0
    """RoPE base: axis frequency j of an axis of d channels is theta ** (-2j / d)."""
    qkv_bias: bool = True
    """Biases on the q/k/v projections of the double-stream blocks."""
    qk_norm_eps: float | None = None
    """Epsilon of the per-head RMSNorm of q and k. None: torch's default, the epsilon of the
    compute dtype, as the reference's ``nn.RMSNorm(head_dim)``; diffusers uses 1e-6 (a relative
    difference of ~4e-7 in the normed q and k: nothing for training, visible in float64)."""
    image_tokens: int = 256
    """Packed latent tokens of one sample: 256 x 256 pixels -> 32 x 32 latent -> 16 x 16."""
    text_tokens: int = 256
    """T5 tokens of one sample (256 in the MLPerf reference)."""

    def __post_init__(self) -> None:
        self.axes_dim = tuple(self.axes_dim)
        sizes = ("in_channels", "out_channels", "vec_in_dim", "context_in_dim", "hidden_size")
        sizes += ("num_heads", "depth", "depth_single_blocks", "image_tokens", "text_tokens")
        for name in sizes:
            if getattr(self, name) <= 0:
                raise ValueError(f"FluxConfig.{name}({getattr(self, name)}) must be positive")
        if self.mlp_hidden_dim <= 0 or self.theta <= 0:
            raise ValueError(
                f"FluxConfig mlp_ratio({self.mlp_ratio}) and theta({self.theta}) must be positive"
            )
        if self.qk_norm_eps is not None and self.qk_norm_eps <= 0:
            raise ValueError(f"FluxConfig.qk_norm_eps({self.qk_norm_eps}) must be positive or None")
        h, n = self.hidden_size, self.num_heads
        if h % n != 0:
            raise ValueError(
                f"hidden_size({h}) must be divisible by num_heads({n}); "
                f"try hidden_size={n * max(1, round(h / n))}"
            )
        odd = [d for d in self.axes_dim if d <= 0 or d % 2]
        if not self.axes_dim or odd:
            raise ValueError(
                f"axes_dim{self.axes_dim} must be positive even numbers: RoPE rotates pairs of "
                "channels on every axis"
            )
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(
                f"sum(axes_dim{self.axes_dim}) = {sum(self.axes_dim)} must equal head_dim = "
                f"hidden_size({self.hidden_size}) / num_heads({self.num_heads}) = {self.head_dim}; "
                "change axes_dim or the width"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def seq_len(self) -> int:
        """Tokens of the joint sequence of one sample (text + image)."""
        return self.text_tokens + self.image_tokens


FLUX_CONFIGS: dict[str, FluxConfig] = {
    # Tiny flavor for tests: 4 heads x 16 = (4, 6, 6) RoPE axes; 4 x 4 packed tokens (an 8 x 8
    # latent of 4 channels) and 8 text tokens. Sizes diffusers can build (mlp_ratio 4, theta 1e4).
    "debug": FluxConfig(
        in_channels=16,
        out_channels=16,
        vec_in_dim=32,
        context_in_dim=48,
        hidden_size=64,
        num_heads=4,
        depth=2,
        depth_single_blocks=2,
        axes_dim=(4, 6, 6),
        image_tokens=16,
        text_tokens=8,
    ),
    # flux1's tiny scale (CPU, minutes): 16-channel 8 x 8 latents (16 packed tokens of 64, the
    # full model's token width), 8 text tokens of 32, 2 double + 4 single blocks of width 64.
    "flux-tiny": FluxConfig(
        vec_in_dim=32,
        context_in_dim=32,
        hidden_size=64,
        num_heads=4,
        depth=2,
        depth_single_blocks=4,
        axes_dim=(4, 6, 6),
        image_tokens=16,
        text_tokens=8,
    ),
    # flux1's small scale (one GPU, minutes): 256 x 256-image latents and FLUX.1's head shape
    # and pooled width, 64 text tokens of 1024, 4 double + 8 single blocks of width 1024.
    "flux-small": FluxConfig(
        context_in_dim=1024,
        hidden_size=1024,
        num_heads=8,
        depth=4,
        depth_single_blocks=8,
        text_tokens=64,
    ),
    # torchtitan branch mlperf-training-flux.1 (9603aa83) `flux_configs["flux-schnell"]`, with
    # context_in_dim from its flux_schnell_mlperf toml = black-forest-labs/FLUX.1-schnell
    # transformer/config.json: 11,891,178,560 parameters.
    "flux-schnell": FluxConfig(
        in_channels=64,
        out_channels=64,
        vec_in_dim=768,
        context_in_dim=4096,
        hidden_size=3072,
        num_heads=24,
        depth=19,
        depth_single_blocks=38,
        axes_dim=(16, 56, 56),
    ),
    # The peer baseline's one-GPU proxy (tools/peer_bench.py FLUX_SIZES["flux-proxy"]): the
    # widths of flux-schnell with 6 double and 12 single blocks, 3,791,984,704 parameters.
    "flux-proxy": FluxConfig(
        in_channels=64,
        out_channels=64,
        vec_in_dim=768,
        context_in_dim=4096,
        hidden_size=3072,
        num_heads=24,
        depth=6,
        depth_single_blocks=12,
        axes_dim=(16, 56, 56),
    ),
}


def get_flux_config(name: str, **overrides: object) -> FluxConfig:
    """A fresh copy of the registry entry `name`, with `overrides` applied and validated."""
    return from_registry(FLUX_CONFIGS, name, "Flux", **overrides)
