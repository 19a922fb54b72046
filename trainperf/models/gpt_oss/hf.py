"""HF Transformers ``GptOssForCausalLM`` checkpoints <-> our GptOss: the only module that knows
HF's parameter names.

The layouts differ in names only: our expert tensors keep HF's shapes ((experts, in, out), gate
and up interleaved in ``gate_up``), our RoPE rotates HF's half-split pairs, our q/k/v/o are
HF's q/k/v/o_proj row for row. So a load is a rename, and each rank reads only the rows of its
own FSDP (or expert-parallel) shard with ``safe_open(...).get_slice``
(`trainperf.models.checkpoint`); names, shapes and dtypes are all checked before anything is
copied.

OpenAI's published ``openai/gpt-oss-20b`` stores the experts in MXFP4 (``*_blocks`` and
``*_scales`` tensors); a checkpoint in that form is refused with the fix (a bf16 copy, such as
HF's ``GptOssForCausalLM.from_pretrained(..., dtype=torch.bfloat16).save_pretrained(DIR)``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from trainperf.models.checkpoint import (
    RowSource,
    TensorFiles,
    base_params,
    canonical_name,
    full_tensor,
    load_plan,
    process_rank,
    read_json,
    read_rows,
    read_weight_map,
    write_checkpoint_dir,
)
from trainperf.models.gpt_oss.config import GptOssConfig, Yarn, get_gpt_oss_config
from trainperf.models.gpt_oss.model import GptOss

CONFIG_FILE = "config.json"
_TOP = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight"}  # fmt: skip
_BLOCK = {
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attention.sinks": "self_attn.sinks",
    # qk_norm (the MLPerf reference's): Qwen3's names; HF's GptOss has no such weights
    "attention.q_norm.weight": "self_attn.q_norm.weight",
    "attention.k_norm.weight": "self_attn.k_norm.weight",
    "moe.router.weight": "mlp.router.weight",
    "moe.router.bias": "mlp.router.bias",
    "moe.experts.gate_up": "mlp.experts.gate_up_proj",
    "moe.experts.gate_up_bias": "mlp.experts.gate_up_proj_bias",
    "moe.experts.down": "mlp.experts.down_proj",
    "moe.experts.down_bias": "mlp.experts.down_proj_bias",
    **{
        f"attention.w{x}.{s}": f"self_attn.{x}_proj.{s}" for x in "qkvo" for s in ("weight", "bias")
    },
}
# What a checkpoint must agree on with the model (epsilons and init are not weights).
MATCHED_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size",
                  "n_experts", "top_k", "moe_dim", "sliding_window", "rope_theta", "yarn",
                  "swiglu_alpha", "swiglu_limit", "qk_norm")  # fmt: skip


def hf_name(name: str) -> str:
    """HF's name of our parameter `name` (canonical)."""
    name = canonical_name(name)
    if name in _TOP:
        return _TOP[name]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
    if m is None or m.group(2) not in _BLOCK:
        raise ValueError(f"our parameter {name!r} has no HF counterpart")
    return f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}"


# --- config -------------------------------------------------------------------------------------


def _yarn_from_hf(hf: dict) -> Yarn | None:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling")
    if not rope or rope.get("rope_type", rope.get("type")) in (None, "default"):
        return None
    if rope.get("rope_type", rope.get("type")) != "yarn":
        raise ValueError(f"HF config rope_type {rope.get('rope_type')!r}: gpt-oss uses 'yarn'")
    return Yarn(
        factor=float(rope["factor"]),
        beta_fast=float(rope.get("beta_fast") or 32.0),
        beta_slow=float(rope.get("beta_slow") or 1.0),
        original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
        truncate=bool(rope.get("truncate", True)),
    )


def config_from_hf(hf: dict, **overrides: object) -> GptOssConfig:
    """Our config of an HF gpt_oss config.json; ValueError for what the model cannot express."""
    types = hf.get("layer_types")
    n_layers = int(hf["num_hidden_layers"])
    expected = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    if types is not None and list(types) != expected and hf.get("sliding_window") is not None:
        raise ValueError("HF config layer_types: trainperf's gpt-oss slides on even layers only")
    rope = hf.get("rope_parameters") or {}
    fields = dict(
        dim=int(hf["hidden_size"]), n_layers=n_layers, n_heads=int(hf["num_attention_heads"]),
        n_kv_heads=int(hf["num_key_value_heads"]), head_dim=int(hf["head_dim"]),
        vocab_size=int(hf["vocab_size"]), n_experts=int(hf["num_local_experts"]),
        top_k=int(hf["num_experts_per_tok"]), moe_dim=int(hf["intermediate_size"]),
        sliding_window=hf.get("sliding_window"),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 150000.0))),
        yarn=_yarn_from_hf(hf), norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
        swiglu_alpha=float(hf.get("swiglu_alpha", 1.702)),
        swiglu_limit=None if (limit := hf.get("swiglu_limit", 7.0)) is None else float(limit),
        max_seq_len=min(int(hf.get("max_position_embeddings", 8192)), 8192),
        qk_norm=bool(hf.get("qk_norm", False)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )  # fmt: skip
    fields.update(overrides)
    return GptOssConfig(**fields)  # type: ignore[arg-type]


def config_to_hf(cfg: GptOssConfig) -> dict:
    """An HF gpt_oss config.json for `cfg` (``GptOssForCausalLM.from_pretrained`` reads it)."""
    rope: dict = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
    if cfg.yarn is not None:
        y = cfg.yarn
        rope = {"rope_theta": cfg.rope_theta, "rope_type": "yarn", "factor": y.factor,
                "beta_fast": y.beta_fast, "beta_slow": y.beta_slow, "truncate": y.truncate,
                "original_max_position_embeddings": y.original_max_position_embeddings}  # fmt: skip
    types = ["sliding_attention" if cfg.is_sliding(i) else "full_attention"
             for i in range(cfg.n_layers)]  # fmt: skip
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
        "hidden_size": cfg.dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size,
        "num_local_experts": cfg.n_experts, "num_experts_per_tok": cfg.top_k,
        "intermediate_size": cfg.moe_dim, "sliding_window": cfg.sliding_window or 128,
        "layer_types": types, "rope_parameters": rope, "rms_norm_eps": cfg.norm_eps,
        "swiglu_alpha": cfg.swiglu_alpha, "swiglu_limit": cfg.swiglu_limit,
        "max_position_embeddings": cfg.max_seq_len, "initializer_range": cfg.init_std,
        "router_aux_loss_coef": cfg.router_aux_loss_coef, "attention_bias": True,
        "qk_norm": cfg.qk_norm,
        "tie_word_embeddings": False,
    }  # fmt: skip


def check_config_matches(ours: GptOssConfig, theirs: GptOssConfig) -> None:
    """ValueError naming every field where a checkpoint's config differs from the model's."""
    diffs = [f"{f}: model {getattr(ours, f)} vs checkpoint {getattr(theirs, f)}"
             for f in MATCHED_FIELDS if getattr(ours, f) != getattr(theirs, f)]  # fmt: skip
    if diffs:
        raise ValueError("checkpoint does not match the model: " + "; ".join(diffs))


# --- tensors ------------------------------------------------------------------------------------


def from_hf_state_dict(theirs: dict[str, torch.Tensor], cfg: GptOssConfig) -> dict:
    """Full HF tensors (weights, or their gradients) by our names, for a model of `cfg`."""
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in GptOss(cfg).named_parameters()}
    out = {}
    for name, shape in shapes.items():
        src = RowSource((hf_name(name),), (-1,))
        if src.names[0] not in theirs:
            raise ValueError(f"HF tensor {src.names[0]} is missing (needed for our {name})")
        out[name] = read_rows(TensorFiles(theirs), src, shape, (0,) * len(shape))
    return out


def find_gpt_oss(model: nn.Module) -> GptOss:
    for module in model.modules():
        if isinstance(module, GptOss):
            return module
    raise ValueError(f"no trainperf GptOss inside {type(model).__name__}")


def _folder(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(
            f"checkpoint {source} has no {CONFIG_FILE}; pass a folder saved by HF Transformers' "
            "GptOssForCausalLM.save_pretrained (bf16 experts)"
        )
    return path


def _refuse_mxfp4(weight_map: dict[str, str], folder: Path) -> None:
    if any(n.endswith(("_blocks", "_scales")) for n in weight_map):
        raise ValueError(
            f"checkpoint {folder} stores its experts in MXFP4 (*_blocks / *_scales); trainperf "
            "trains from bf16 weights: convert it once with GptOssForCausalLM.from_pretrained("
            "DIR, dtype=torch.bfloat16).save_pretrained(NEW_DIR) and pass NEW_DIR"
        )


def load_hf_checkpoint(model: nn.Module, source: str | Path) -> None:
    """Fill every parameter of a materialised `model` (FSDP / expert-parallel shards included)
    from an HF GptOssForCausalLM folder, each rank reading only its own rows; ValueError before
    changing anything when the checkpoint does not fit."""
    folder = _folder(source)
    gpt = find_gpt_oss(model)
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("model is on the meta device; call model.to_empty(device=...) first")
    check_config_matches(gpt.cfg, config_from_hf(read_json(folder / CONFIG_FILE, "HF config")))
    weight_map = read_weight_map(folder)
    _refuse_mxfp4(weight_map, folder)
    params = base_params(model)
    plan = {name: RowSource((hf_name(name),), (-1,)) for name in params}
    load_plan(folder, weight_map, plan, params, where=f"checkpoint {folder}")
    with torch.no_grad():
        from trainperf.models.gpt_oss.model import rope_cache

        gpt.rope_cache.copy_(rope_cache(gpt.cfg, device=gpt.rope_cache.device))


def save_hf_checkpoint(
    model: nn.Module, out_dir: str | Path, *, dtype: torch.dtype | None = None
) -> Path | None:
    """Write the model as an HF GptOssForCausalLM folder (every rank calls; rank 0 writes,
    atomically, and gets the path)."""
    gpt = find_gpt_oss(model)
    writer = process_rank() == 0
    tensors: dict[str, torch.Tensor] = {}
    for name, p in base_params(model).items():
        full = full_tensor(p)  # a collective for DTensors
        if writer:
            tensors[hf_name(name)] = (full if dtype is None else full.to(dtype)).contiguous()
    if not writer:
        return None
    files = {CONFIG_FILE: config_to_hf(gpt.cfg)}
    return write_checkpoint_dir(out_dir, files, {"model.safetensors": tensors})


def verify_checkpoint(folder: str | Path, flavor: str) -> str:
    """One line about an HF gpt-oss folder that fits the registry's `flavor`; ValueError else."""
    path = _folder(folder)
    check_config_matches(
        get_gpt_oss_config(flavor), config_from_hf(read_json(path / CONFIG_FILE, "HF config"))
    )
    weights = read_weight_map(path)
    _refuse_mxfp4(weights, path)
    missing = sorted({f for f in weights.values() if not (path / f).is_file()})
    if missing:
        raise ValueError(f"HF checkpoint {path} lacks {missing[0]}; download it again")
    files = len(set(weights.values()))
    return f"HF gpt-oss checkpoint {path}: {len(weights)} tensors in {files} file(s)"
