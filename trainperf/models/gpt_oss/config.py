"""gpt-oss sizes: the model's config and the registry of named flavors (OpenAI's gpt-oss-20b and
120b, the MLPerf reference's and NVIDIA's gpt_oss_20b variants, trainperf's small, tiny and the
tests' debug), read by the model, its HF adapter and the benchmark."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainperf.models.registry import from_registry


@dataclass(frozen=True)
class Yarn:
    """YaRN RoPE scaling ("rope_type": "yarn" in the HF config; gpt-oss: factor 32 from 4096)."""

    factor: float = 32.0
    """Context extension factor: low frequencies are divided by it."""
    beta_fast: float = 32.0
    """Rotations over the original context above which a frequency is kept (extrapolated)."""
    beta_slow: float = 1.0
    """Rotations below which a frequency is fully interpolated (divided by factor)."""
    original_max_position_embeddings: int = 4096
    truncate: bool = False
    """Round the ramp's ends to whole channels (HF's default True; gpt-oss sets False)."""

    @property
    def attention_factor(self) -> float:
        """cos and sin are multiplied by 0.1 ln(factor) + 1 (YaRN's mscale)."""
        return 0.1 * math.log(self.factor) + 1.0 if self.factor > 1 else 1.0


@dataclass
class GptOssConfig:
    """Sizes and numerics of a gpt-oss decoder. Get one with `get_gpt_oss_config(name)`."""

    dim: int
    """Hidden size (model width); gpt-oss: 2880."""
    n_layers: int
    n_heads: int
    """Query heads."""
    n_kv_heads: int
    """Key/value heads (grouped-query attention); must divide n_heads."""
    head_dim: int
    """Channels per head (64 in gpt-oss; n_heads x head_dim need not equal dim)."""
    vocab_size: int
    n_experts: int
    """Experts per MoE layer."""
    top_k: int
    """Experts each token is routed to."""
    moe_dim: int
    """Hidden width of one expert's SwiGLU (HF intermediate_size)."""
    sliding_window: int | None = 128
    """Keys a query of a sliding layer sees (itself and the window - 1 before it); None: every
    layer attends to the whole prefix."""
    rope_theta: float = 150000.0
    yarn: Yarn | None = Yarn()
    norm_eps: float = 1e-5
    swiglu_alpha: float = 1.702
    """Sigmoid gain of gpt-oss's clamped SwiGLU."""
    swiglu_limit: float | None = 7.0
    """Clamp of gpt-oss's SwiGLU (gate above, up both sides; output (up + 1) x gate x
    sigmoid(alpha gate)); None: the plain SwiGLU silu(gate) x up (Megatron's ``swiglu``)."""
    attention_sinks: bool = True
    """A learned logit per head in every softmax row (HF ``sinks``); False: plain softmax."""
    bias: bool = True
    """Biases on every projection, the router and the experts (HF); False: none (Megatron's
    ``add_bias_linear: false``)."""
    qk_norm: bool = False
    """RMSNorm (a learned weight of head_dim, shared by the heads) on every query and key head
    before RoPE: Megatron's ``qk_layernorm``, which the MLPerf reference inherits (Primus
    gpt_oss_20B.yaml extends deepseek_v2_base.yaml, ``qk_layernorm: true``); HF's gpt-oss and
    NVIDIA's v6.0 model have none."""
    router_aux_loss_coef: float = 0.0
    """Weight of the load-balancing loss (HF's ``load_balancing_loss_func``) added to the
    training loss; 0 leaves it out (HF's default: output_router_logits False)."""
    max_seq_len: int = 8192
    init_std: float = 0.02
    """Standard deviation of the weights' normal init (see `GptOss.init_weights`)."""

    def __post_init__(self) -> None:
        sizes = ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size",
                 "n_experts", "top_k", "moe_dim", "max_seq_len")  # fmt: skip
        for name in sizes:
            if getattr(self, name) <= 0:
                raise ValueError(f"GptOssConfig.{name}({getattr(self, name)}) must be positive")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads({self.n_heads}) must be divisible by n_kv_heads({self.n_kv_heads})"
            )
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k({self.top_k}) exceeds n_experts({self.n_experts})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim({self.head_dim}) must be even for RoPE")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"sliding_window({self.sliding_window}) must be positive or None")

    def is_sliding(self, layer: int) -> bool:
        """HF's layer_types: even layers (0, 2, ...) use the sliding window."""
        return self.sliding_window is not None and layer % 2 == 0


GPT_OSS_CONFIGS: dict[str, GptOssConfig] = {
    # Tiny flavor for tests: every feature on (sinks, window 8 < the test sequences, YaRN with
    # all three frequency bands at head_dim 16 from 32 original positions, 8 experts top-2).
    "debug": GptOssConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=16,
        vocab_size=256,
        n_experts=8,
        top_k=2,
        moe_dim=32,
        sliding_window=8,
        rope_theta=10000.0,
        yarn=Yarn(factor=4.0, original_max_position_embeddings=32),
        max_seq_len=128,
    ),  # fmt: skip
    # trainperf's tiny scale (CPU, minutes): the MLPerf reference's variant (below) at toy size
    # on the built-in corpus; the vocabulary follows the built-in tokenizer (set by the run).
    "tiny": GptOssConfig(
        dim=128,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=32,
        vocab_size=2048,
        n_experts=8,
        top_k=2,
        moe_dim=128,
        sliding_window=33,
        max_seq_len=256,
        yarn=None,
        swiglu_limit=None,
        attention_sinks=False,
        bias=False,
        qk_norm=True,
        norm_eps=1e-6,
        init_std=0.02,
    ),  # fmt: skip
    # trainperf's small scale (one GPU, minutes): the reference's variant, 8 layers, 16 experts.
    "small": GptOssConfig(
        dim=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=4,
        head_dim=64,
        vocab_size=8192,
        n_experts=16,
        top_k=4,
        moe_dim=512,
        max_seq_len=2048,
        sliding_window=129,
        yarn=None,
        swiglu_limit=None,
        attention_sinks=False,
        bias=False,
        qk_norm=True,
        norm_eps=1e-6,
        init_std=0.008,
    ),  # fmt: skip
    # MLPerf gpt_oss_20b's reference (mlcommons/training small_llm_moe_pretraining/primus,
    # Megatron): gpt-oss-20b's shapes with the Llama 3.1 tokenizer (128,256), plain SwiGLU, no
    # biases, no sinks, plain RoPE (base 150,000, no YaRN), window (128, 0) = 129 keys with the
    # query itself on even layers, QK norm, RMSNorm eps 1e-6, init std 0.008, no load-balancing
    # loss.
    "gpt-oss-20b-mlperf": GptOssConfig(
        dim=2880,
        n_layers=24,
        n_heads=64,
        n_kv_heads=8,
        head_dim=64,
        vocab_size=128256,
        n_experts=32,
        top_k=4,
        moe_dim=2880,
        max_seq_len=8192,
        sliding_window=129,
        yarn=None,
        swiglu_limit=None,
        attention_sinks=False,
        bias=False,
        qk_norm=True,
        norm_eps=1e-6,
        init_std=0.008,
    ),  # fmt: skip
    # NVIDIA's v6.0 gpt_oss_20b submission (Megatron-Bridge GPTModelProvider): gpt-oss as HF
    # implements it (sinks, clamped SwiGLU, YaRN, window (127, 0) = 128 keys) with the Llama
    # 3.1 tokenizer.
    "gpt-oss-20b-nvidia": GptOssConfig(
        dim=2880,
        n_layers=24,
        n_heads=64,
        n_kv_heads=8,
        head_dim=64,
        vocab_size=128256,
        n_experts=32,
        top_k=4,
        moe_dim=2880,
        max_seq_len=8192,
        init_std=0.008,
    ),  # fmt: skip
    # openai/gpt-oss-20b config.json (HF GptOssConfig): 24 layers, 32 experts, top-4,
    # 20.9 B parameters (3.6 B active per token); sequences of MLPerf's 8192 tokens.
    "gpt-oss-20b": GptOssConfig(
        dim=2880,
        n_layers=24,
        n_heads=64,
        n_kv_heads=8,
        head_dim=64,
        vocab_size=201088,
        n_experts=32,
        top_k=4,
        moe_dim=2880,
        max_seq_len=8192,
    ),  # fmt: skip
    # openai/gpt-oss-120b config.json: 36 layers, 128 experts, top-4 (116.8 B, 5.1 B active).
    "gpt-oss-120b": GptOssConfig(
        dim=2880,
        n_layers=36,
        n_heads=64,
        n_kv_heads=8,
        head_dim=64,
        vocab_size=201088,
        n_experts=128,
        top_k=4,
        moe_dim=2880,
        max_seq_len=8192,
    ),  # fmt: skip
}


def get_gpt_oss_config(name: str, **overrides: object) -> GptOssConfig:
    """A fresh copy of the registry entry `name`, with `overrides` applied and validated."""
    cfg = from_registry(GPT_OSS_CONFIGS, name, "gpt-oss", **overrides)
    cfg.__post_init__()
    return cfg
