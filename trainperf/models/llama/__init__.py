"""The Llama family (Llama 2 and 3.1 decoders): llama31_8b, llama31_405b and llama2_70b_lora.

model.py (the model, its size registry and FLOP count), hf.py (HF Transformers checkpoints and
PEFT adapters), parallelize.py (blocks, tensor-parallel plan, attention kernels). `FAMILY` is
what the rest of trainperf sees.
"""

from __future__ import annotations

from torch import nn

from trainperf.config import Config, ModelConfig
from trainperf.models.family import ModelFamily
from trainperf.models.llama.hf import load_hf_checkpoint, save_hf_checkpoint, verify_base_model
from trainperf.models.llama.model import (
    LLAMA_CONFIGS,
    Llama,
    LlamaConfig,
    get_llama_config,
    training_flops_per_token,
)
from trainperf.models.llama.parallelize import parallel_plan, tp_sizes
from trainperf.models.lora import LoRAConfig, apply_lora, init_lora
from trainperf.perf.memory import ModelShape


def model_config(cfg: Config) -> LlamaConfig:
    """The LlamaConfig a run of `cfg` builds: flavor, layers, sequence, built-in vocabulary."""
    overrides: dict[str, int] = {"max_seq_len": cfg.train.seq_len}
    if cfg.model.n_layers is not None:
        overrides["n_layers"] = cfg.model.n_layers
    if cfg.data.source == "builtin":  # the embedding follows the locally built tokenizer
        overrides["vocab_size"] = cfg.data.vocab_size
    return get_llama_config(cfg.model.flavor, **overrides)


def build(model_cfg: LlamaConfig, m: ModelConfig) -> nn.Module:
    """A Llama (on the current default device: meta for a run), with LoRA adapters on
    ``m.lora_targets`` (the rest frozen) when ``m.lora_rank`` > 0."""
    model = Llama(model_cfg)
    if m.lora_rank:
        lora = LoRAConfig(rank=m.lora_rank, alpha=m.lora_alpha, dropout=m.lora_dropout,
                          targets=m.lora_targets)  # fmt: skip
        apply_lora(model, lora)
    return model


def shape(cfg: LlamaConfig) -> ModelShape:
    kv = cfg.n_kv_heads * cfg.head_dim
    block = cfg.dim * (cfg.dim + 2 * kv) + cfg.dim * cfg.dim + 3 * cfg.dim * cfg.ffn_dim
    return ModelShape(
        n_layers=cfg.n_layers,
        dim=cfg.dim,
        block_params=block,
        root_params=2 * cfg.vocab_size * cfg.dim,
        vocab_size=cfg.vocab_size,
    )


FAMILY = ModelFamily(
    name="llama",
    configs=LLAMA_CONFIGS,
    model_config=model_config,
    build=build,
    parallel_plan=parallel_plan,
    tp_sizes=tp_sizes,
    init_weights=lambda model: model.init_weights(),
    init_adapters=init_lora,
    load_checkpoint=load_hf_checkpoint,
    save_checkpoint=save_hf_checkpoint,
    verify_checkpoint=lambda folder, flavor: verify_base_model(folder, flavor=flavor),
    flops_per_sample=lambda cfg, seq_len: training_flops_per_token(cfg, seq_len) * seq_len,
    shape=shape,
)
