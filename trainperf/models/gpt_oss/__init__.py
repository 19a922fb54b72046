"""The gpt-oss family (OpenAI's mixture-of-experts decoder): MLPerf's gpt_oss_20b.

model.py (the model, its size registry and FLOP count), hf.py (HF Transformers
GptOssForCausalLM checkpoints), parallelize.py (blocks, float8 exceptions, MoE layers for
expert parallel). `FAMILY` is what the rest of trainperf sees.
"""

from __future__ import annotations

from torch import nn

from trainperf.config import Config, ModelConfig
from trainperf.models.family import ModelFamily
from trainperf.models.gpt_oss.hf import load_hf_checkpoint, save_hf_checkpoint, verify_checkpoint
from trainperf.models.gpt_oss.model import (
    GPT_OSS_CONFIGS,
    GptOss,
    GptOssConfig,
    get_gpt_oss_config,
    num_params,
    training_flops_per_token,
)
from trainperf.models.gpt_oss.parallelize import parallel_plan, tp_sizes
from trainperf.perf.memory import ModelShape


def model_config(cfg: Config) -> GptOssConfig:
    """The GptOssConfig a run of `cfg` builds: flavor, layers, sequence, built-in vocabulary."""
    overrides: dict[str, int] = {"max_seq_len": cfg.train.seq_len}
    if cfg.model.n_layers is not None:
        overrides["n_layers"] = cfg.model.n_layers
    if cfg.data.source == "builtin":  # the embedding follows the locally built tokenizer
        overrides["vocab_size"] = cfg.data.vocab_size
    return get_gpt_oss_config(cfg.model.flavor, **overrides)


def build(model_cfg: GptOssConfig, m: ModelConfig) -> nn.Module:
    """A GptOss on the current default device (meta for a run); every parameter is trained."""
    if m.lora_rank:
        raise ValueError(
            f"model.lora_rank({m.lora_rank}): the gpt-oss family has no LoRA (MLPerf gpt_oss_20b "
            "pretrains every parameter); set model.lora_rank=0"
        )
    return GptOss(model_cfg)


def shape(cfg: GptOssConfig) -> ModelShape:
    """Sizes for the memory estimate: every expert is held (total parameters per block)."""
    root = 2 * cfg.vocab_size * cfg.dim + cfg.dim
    return ModelShape(
        n_layers=cfg.n_layers,
        dim=cfg.dim,
        block_params=(num_params(cfg) - root) // cfg.n_layers,
        root_params=root,
        vocab_size=cfg.vocab_size,
    )


FAMILY = ModelFamily(
    name="gpt_oss",
    configs=GPT_OSS_CONFIGS,
    model_config=model_config,
    build=build,
    parallel_plan=parallel_plan,
    tp_sizes=tp_sizes,
    init_weights=lambda model: model.init_weights(),
    init_adapters=lambda model: 0,
    load_checkpoint=load_hf_checkpoint,
    save_checkpoint=save_hf_checkpoint,
    verify_checkpoint=verify_checkpoint,
    flops_per_sample=lambda cfg, seq_len: training_flops_per_token(cfg, seq_len) * seq_len,
    shape=shape,
)
