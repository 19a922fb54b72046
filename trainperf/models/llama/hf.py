"""HF Transformers checkpoints <-> our Llama: the only module that knows HF parameter names.

Three differences between the layouts, all handled here:
- names: `model.layers.{i}.self_attn.q_proj.weight` is our `layers.{i}.attention.wq.weight`, ...;
- RoPE: HF stores the q/k rows of each head in the half-split ("rotate_half") order, we use
  interleaved pairs; within a head of size d, ours[2i] = hf[i] and ours[2i + 1] = hf[i + d/2]
  (`rope_permutation`);
- fused QKV: MLPerf's `regisss/llama2-70b-fused-qkv-mlperf` has one `qkv_proj` = rows [q; k; v]
  (q and k half-split), our `wqkv` groups rows per K/V head (see `LlamaConfig.fused_qkv`).

Every one of our rows comes from one HF row, so a load is a row gather: each rank reads only the
rows and columns of its own (FSDP / TP) shard with `safe_open(...).get_slice`, never the full
model. All names, shapes and dtypes are checked against the safetensors headers before anything
is copied, so a bad checkpoint raises one ValueError and leaves the model untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from trainperf.models.checkpoint import (
    INDEX_FILE,
    SINGLE_FILE,
    RowSource,
    TensorFiles,
    base_params,
    canonical_name,
    full_tensor,
    load_plan,
    local_tensor,
    process_rank,
    quantized_owners,
    read_json,
    read_rows,
    read_weight_map,
    write_checkpoint_dir,
)
from trainperf.models.hub import resolve_checkpoint
from trainperf.models.llama.model import (
    Llama,
    LlamaConfig,
    RopeScaling,
    get_llama_config,
    precompute_rope_cache,
)

CONFIG_FILE = "config.json"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
# Checked by `check_config_matches`; max_seq_len only sizes our RoPE table, fused_qkv the layout.
MATCHED_FIELDS = (
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "ffn_dim",
    "norm_eps",
    "rope_theta",
    "rope_scaling",
)
_TOP_NAMES = {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}
_LAYER_NAMES = {
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wqkv": "self_attn.qkv_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
}
_QKV = ("wq", "wk", "wv", "wqkv")
# Module wrappers (activation checkpointing, torch.compile, FSDP1) that insert a name segment.
_IGNORED_HF = re.compile(r"\.rotary_emb\.inv_freq$")  # old checkpoints store the RoPE table


# --- config -------------------------------------------------------------------------------------


def _require(hf_config: dict, key: str) -> object:
    if key not in hf_config:
        raise ValueError(f"HF config.json has no {key!r}; is this a Llama checkpoint?")
    return hf_config[key]


def _rope_from_hf(hf_config: dict) -> tuple[float, RopeScaling | None]:
    """rope_theta and Llama 3.1 scaling from transformers 4 (rope_theta + rope_scaling) or 5
    (rope_parameters) keys."""
    params = hf_config.get("rope_parameters") or {}
    scaling = hf_config.get("rope_scaling") or params
    theta = hf_config.get("rope_theta", params.get("rope_theta", 10000.0))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise ValueError(f"RoPE scaling rope_type {rope_type!r} is not supported; only 'llama3'")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in scaling]
    if missing:
        raise ValueError(f"llama3 RoPE scaling in config.json lacks {', '.join(missing)}")
    return float(theta), RopeScaling(
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_position_embeddings=int(scaling["original_max_position_embeddings"]),
    )


def config_from_hf(
    hf_config: dict, *, fused_qkv: bool = False, max_seq_len: int | None = None
) -> LlamaConfig:
    """Our LlamaConfig for an HF Llama `config.json` (as a dict).

    `fused_qkv` says whether the checkpoint has `qkv_proj` (the config does not tell);
    `max_seq_len` defaults to `max_position_embeddings`. Raises ValueError for what our model
    cannot represent (tied embeddings, biases, another activation or RoPE scaling).
    """
    if hf_config.get("tie_word_embeddings", False):
        raise ValueError("tie_word_embeddings=true is not supported: Llama 2/3.1 untie lm_head")
    if hf_config.get("attention_bias") or hf_config.get("mlp_bias"):
        raise ValueError("attention_bias / mlp_bias are not supported: Llama has no biases")
    act = hf_config.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported; Llama uses 'silu' (SwiGLU)")
    dim, n_heads = (
        int(_require(hf_config, "hidden_size")),
        int(_require(hf_config, "num_attention_heads")),
    )
    head_dim = hf_config.get("head_dim")
    if head_dim is not None and n_heads and int(head_dim) * n_heads != dim:
        raise ValueError(
            f"head_dim({head_dim}) * num_attention_heads({n_heads}) != hidden_size({dim}); "
            "our Llama needs head_dim = hidden_size / num_attention_heads"
        )
    theta, scaling = _rope_from_hf(hf_config)
    return LlamaConfig(
        dim=dim,
        n_layers=int(_require(hf_config, "num_hidden_layers")),
        n_heads=n_heads,
        n_kv_heads=int(hf_config.get("num_key_value_heads") or n_heads),
        vocab_size=int(_require(hf_config, "vocab_size")),
        ffn_dim=int(_require(hf_config, "intermediate_size")),
        norm_eps=float(hf_config.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_seq_len=max_seq_len or int(hf_config.get("max_position_embeddings", 8192)),
        fused_qkv=fused_qkv,
    )


def config_to_hf(cfg: LlamaConfig, *, dtype: torch.dtype = torch.float32) -> dict:
    """An HF `LlamaForCausalLM` config.json dict for `cfg` (readable by transformers 4 and 5)."""
    s = cfg.rope_scaling
    scaling = None
    if s is not None:
        scaling = {
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "max_position_embeddings": cfg.max_seq_len,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def check_config_matches(ours: LlamaConfig, theirs: LlamaConfig) -> None:
    """ValueError naming every field where the checkpoint's config (`theirs`) differs from ours."""
    diffs = [
        f"{name}: checkpoint {getattr(theirs, name)}, model {getattr(ours, name)}"
        for name in MATCHED_FIELDS
        if getattr(theirs, name) != getattr(ours, name)
    ]
    if diffs:
        raise ValueError(
            "checkpoint config does not match the chosen model flavor: " + "; ".join(diffs)
        )


# --- names and row layouts ----------------------------------------------------------------------


def hf_module_name(module: str) -> str:
    """HF name of our module: `layers.3.attention.wq` -> `model.layers.3.self_attn.q_proj`."""
    if module in _TOP_NAMES:
        return _TOP_NAMES[module]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", module)
    if m is None or m.group(2) not in _LAYER_NAMES:
        raise ValueError(f"our module {module!r} has no HF counterpart")
    return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"


def rope_permutation(n_heads: int, head_dim: int, *, inverse: bool = False) -> torch.Tensor:
    """Row index p with ours = hf[p] for q or k rows of `n_heads` heads (HF half-split order ->
    our interleaved pairs): within each head, ours[2i] = hf[i], ours[2i + 1] = hf[i + d/2].

    inverse=True gives the index the other way: hf = ours[p].
    """
    half = head_dim // 2
    within = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()
    p = (torch.arange(n_heads)[:, None] * head_dim + within).flatten()  # (n_heads * head_dim,)
    return torch.argsort(p) if inverse else p


def qkv_row_index(cfg: LlamaConfig, projection: str) -> torch.Tensor:
    """Rows of HF's [q; k; v] (q, k half-split) that make our `projection` (wq, wk, wv, wqkv).

    wqkv is grouped per K/V head g: [n_rep query heads of g, K head g, V head g].
    """
    d, nq, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    q = rope_permutation(nq, d)
    k = nq * d + rope_permutation(nkv, d)
    v = (nq + nkv) * d + torch.arange(nkv * d)
    if projection != "wqkv":
        return {"wq": q, "wk": k, "wv": v}[projection]
    groups = [q.view(nkv, (nq // nkv) * d), k.view(nkv, d), v.view(nkv, d)]
    return torch.cat(groups, dim=1).flatten()  # (n_kv, (n_rep + 2) * d) -> rows


def _qkv_sizes(cfg: LlamaConfig) -> dict[str, int]:
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    return {"wq": q, "wk": kv, "wv": kv, "wqkv": q + 2 * kv}


def _source(module: str, suffix: str, cfg: LlamaConfig, *, hf_fused: bool) -> RowSource:
    """Source of our tensor `{module}.{ours suffix}` in an HF layout whose tensors end in `suffix`
    (`weight`, or PEFT's `lora_B.weight`)."""
    leaf = module.rsplit(".", 1)[-1]
    if leaf not in _QKV or not module.endswith(f"attention.{leaf}"):
        return RowSource((f"{hf_module_name(module)}.{suffix}",), (-1,), None)
    prefix = hf_module_name(module).rsplit(".", 1)[0]
    sizes = _qkv_sizes(cfg)
    index = qkv_row_index(cfg, leaf)
    if hf_fused:
        return RowSource((f"{prefix}.qkv_proj.{suffix}",), (sizes["wqkv"],), index)
    if leaf == "wqkv":
        names = tuple(f"{prefix}.{x}_proj.{suffix}" for x in "qkv")
        return RowSource(names, (sizes["wq"], sizes["wk"], sizes["wv"]), index)
    offset = {"wq": 0, "wk": sizes["wq"], "wv": sizes["wq"] + sizes["wk"]}[leaf]
    return RowSource((f"{prefix}.{leaf[1]}_proj.{suffix}",), (sizes[leaf],), index - offset)


# --- reading shards -----------------------------------------------------------------------------


def find_llama(model: nn.Module) -> Llama:
    """The Llama inside `model` (itself, or under a torch.compile / other wrapper)."""
    for module in model.modules():
        if isinstance(module, Llama):
            return module
    raise ValueError(f"no trainperf Llama inside {type(model).__name__}")


@torch.no_grad()
def _reset_rope_cache(llama: Llama) -> None:
    buf = llama.rope_cache
    fresh = precompute_rope_cache(llama.cfg, device=buf.device).to(buf.dtype)
    local_tensor(buf).copy_(fresh)


def load_hf_checkpoint(model: nn.Module, source: str | Path) -> None:
    """Fill every base parameter of `model` in place from an HF Llama checkpoint.

    `source`: a directory or hub id (see `resolve_checkpoint`). Works on a materialised model
    (e.g. meta-built, parallelized, then `to_empty`) whose parameters may be DTensors sharded by
    FSDP2 and/or tensor parallel: each rank reads only its own rows and columns. Loads the
    standard (q/k/v_proj) or fused (qkv_proj) layout into a model with or without `fused_qkv`.
    LoRA adapters are left untouched. Values are cast to each parameter's dtype; the RoPE table
    is recomputed. Raises ValueError, before changing anything, if the checkpoint does not fit.
    """
    folder = resolve_checkpoint(source)
    llama = find_llama(model)
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("model is on the meta device; call model.to_empty(device=...) first")
    hf_config = read_json(folder / CONFIG_FILE, "HF config")
    weight_map = read_weight_map(folder)
    hf_fused = any(".self_attn.qkv_proj." in name for name in weight_map)
    check_config_matches(llama.cfg, config_from_hf(hf_config, fused_qkv=hf_fused))
    params = base_params(model)
    plan = {}
    for name in params:
        module, _, suffix = name.rpartition(".")
        plan[name] = _source(module, suffix, llama.cfg, hf_fused=hf_fused)
    load_plan(
        folder,
        weight_map,
        plan,
        params,
        where=f"checkpoint {folder}",
        quantized=quantized_owners(model),
        ignored=_IGNORED_HF,
    )
    _reset_rope_cache(llama)


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: LlamaConfig) -> dict[str, torch.Tensor]:
    """In-memory conversion of full HF tensors (weights, or e.g. their gradients) to our names
    and row layouts for a model of `cfg` (fused or not; the HF layout is detected)."""
    hf_fused = any(".self_attn.qkv_proj." in name for name in hf)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in Llama(cfg).named_parameters()}
    out = {}
    for name, shape in shapes.items():
        module, _, suffix = name.rpartition(".")
        src = _source(module, suffix, cfg, hf_fused=hf_fused)
        missing = [n for n in src.names if n not in hf]
        if missing:
            raise ValueError(f"HF tensor {missing[0]} is missing (needed for our {name})")
        out[name] = read_rows(TensorFiles(hf), src, shape, (0,) * len(shape))
    return out


def to_hf_state_dict(
    ours: dict[str, torch.Tensor], cfg: LlamaConfig, *, fused: bool | None = None
) -> dict[str, torch.Tensor]:
    """In-memory conversion of our full base tensors (`layers.0.attention.wq.weight`, ...) to HF
    names and row order; `fused` writes qkv_proj (default: as `cfg`). LoRA tensors are skipped."""
    fused = cfg.fused_qkv if fused is None else fused
    modules = {
        canonical_name(n).removesuffix(".weight"): t
        for n, t in ours.items()
        if ".lora_a." not in n and ".lora_b." not in n
    }
    return _hf_tensors(modules, cfg, suffix="weight", fused_out=fused)


# --- saving -------------------------------------------------------------------------------------


def _lora_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(our canonical module name, module) for every LoRA-wrapped Linear (has lora_a, lora_b)."""
    for name, module in model.named_modules():
        if hasattr(module, "lora_a") and hasattr(module, "lora_b"):
            yield canonical_name(name), module


def _to_hf_rows(t: torch.Tensor, src: RowSource) -> torch.Tensor:
    """Inverse of a load: HF-order rows of concat(src.names) from our rows `t`."""
    if src.index is None:
        return t
    out = t.new_empty((sum(src.rows), *t.shape[1:]))
    out[src.index] = t
    return out


def _hf_tensors(
    ours: dict[str, torch.Tensor], cfg: LlamaConfig, *, suffix: str, fused_out: bool
) -> dict[str, torch.Tensor]:
    """Our full tensors (module name -> tensor) as HF tensors ending in `suffix`; q/k/v rows of
    one layer are gathered into HF's [q; k; v], then written fused or split."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for module, t in ours.items():
        leaf = module.rsplit(".", 1)[-1]
        if leaf not in _QKV:
            out[f"{hf_module_name(module)}.{suffix}"] = t
            continue
        prefix = hf_module_name(module).rsplit(".", 1)[0]
        qkv.setdefault(prefix, []).append((qkv_row_index(cfg, leaf), t))
    sizes = _qkv_sizes(cfg)
    for prefix, parts in qkv.items():
        index = torch.cat([i for i, _ in parts])
        rows = torch.cat([t for _, t in parts])
        if len(index) != sizes["wqkv"]:
            # Only some of q/k/v present (LoRA on a subset): write those alone.
            for i, t in parts:
                out.update(_split_partial(prefix, suffix, i, t, sizes))
            continue
        hf = _to_hf_rows(rows, RowSource(("",), (sizes["wqkv"],), index))
        if fused_out:
            out[f"{prefix}.qkv_proj.{suffix}"] = hf
        else:
            q, k, v = hf.split([sizes["wq"], sizes["wk"], sizes["wv"]])
            out.update({f"{prefix}.{x}_proj.{suffix}": y for x, y in zip("qkv", (q, k, v))})
    return {k: v.contiguous() for k, v in out.items()}


def _split_partial(
    prefix: str, suffix: str, index: torch.Tensor, t: torch.Tensor, sizes: dict[str, int]
) -> dict[str, torch.Tensor]:
    """One unfused projection (wq, wk or wv) to HF order, from its rows of HF's [q; k; v]."""
    starts = {"q": 0, "k": sizes["wq"], "v": sizes["wq"] + sizes["wk"]}
    x = max((s, name) for name, s in starts.items() if s <= int(index.min()))[1]
    local = index - starts[x]
    hf = t.new_empty(t.shape)
    hf[local] = t
    return {f"{prefix}.{x}_proj.{suffix}": hf}


def save_hf_checkpoint(
    model: nn.Module,
    out_dir: str | Path,
    *,
    fused: bool | None = None,
    merge_lora: bool = False,
    dtype: torch.dtype | None = None,
) -> Path | None:
    """Write the whole model as an HF checkpoint: config.json, model.safetensors and its index.

    fused: write `qkv_proj` (MLPerf layout) instead of q/k/v_proj; default: as the model is.
    merge_lora: fold LoRA adapters into the base weights (W + alpha/r B A); otherwise the base
    weights alone are written (save adapters with `save_peft_adapter`). dtype: default, each
    parameter's own. DTensor parameters are gathered one at a time (every rank must call this);
    rank 0 writes and gets the path, other ranks None.
    """
    llama = find_llama(model)
    fused = llama.cfg.fused_qkv if fused is None else fused
    writer = process_rank() == 0
    ours: dict[str, torch.Tensor] = {}
    for n, p in base_params(model).items():  # one parameter gathered at a time
        full = full_tensor(p)  # a collective: every rank gathers, only the writer keeps it
        if writer:
            ours[n] = full
    if merge_lora:
        for name, mod in _lora_modules(model):
            a, b = full_tensor(mod.lora_a.weight).float(), full_tensor(mod.lora_b.weight).float()
            if writer:
                scale = getattr(mod, "scale", mod.alpha / mod.rank)
                w = ours[f"{name}.weight"]
                ours[f"{name}.weight"] = (w.float() + scale * (b @ a)).to(w.dtype)
    if not writer:
        return None
    tensors = to_hf_state_dict(ours, llama.cfg, fused=fused)
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    first = next(iter(tensors.values()))
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
        "weight_map": dict.fromkeys(tensors, SINGLE_FILE),
    }
    files = {CONFIG_FILE: config_to_hf(llama.cfg, dtype=first.dtype), INDEX_FILE: index}
    return write_checkpoint_dir(out_dir, files, {SINGLE_FILE: tensors})


# --- PEFT LoRA adapters -------------------------------------------------------------------------


def _dropout_p(mod: nn.Module) -> float:
    d = getattr(mod, "dropout", 0.0)
    return float(d.p) if isinstance(d, nn.Dropout) else float(d)


def _lora_settings(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], int, float, float]:
    mods = list(_lora_modules(model))
    if not mods:
        raise ValueError("model has no LoRA adapters (apply_lora first)")
    settings = {(int(m.rank), float(m.alpha), _dropout_p(m)) for _, m in mods}
    if len(settings) != 1:
        raise ValueError(f"LoRA modules differ in (rank, alpha, dropout): {sorted(settings)}")
    rank, alpha, dropout = settings.pop()
    return mods, rank, alpha, dropout


def _peft_name(module: str, suffix: str) -> str:
    return f"{PEFT_PREFIX}{hf_module_name(module)}.{suffix}"


def save_peft_adapter(
    model: nn.Module, out_dir: str | Path, *, base_model_name_or_path: str = ""
) -> Path | None:
    """Write the LoRA adapters alone in PEFT's layout (adapter_model.safetensors +
    adapter_config.json), loadable with `peft.PeftModel.from_pretrained` on the HF model.

    lora_B rows of q/k (and of the fused qkv) get the inverse RoPE permutation / regrouping so the
    HF model with the adapter computes what ours does. Rank 0 writes; DTensors are gathered.
    """
    llama = find_llama(model)
    mods, rank, alpha, dropout = _lora_settings(model)
    a = {name: full_tensor(m.lora_a.weight) for name, m in mods}
    b = {name: full_tensor(m.lora_b.weight) for name, m in mods}
    if process_rank() != 0:
        return None
    cfg = llama.cfg
    tensors = {_peft_name(n, "lora_A.weight"): t.contiguous() for n, t in a.items()}
    hf_b = _hf_tensors(b, cfg, suffix="lora_B.weight", fused_out=cfg.fused_qkv)
    tensors.update({PEFT_PREFIX + k: v for k, v in hf_b.items()})
    targets = sorted({hf_module_name(n).rsplit(".", 1)[-1] for n, _ in mods})
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
    }
    return write_checkpoint_dir(
        out_dir, {ADAPTER_CONFIG_FILE: adapter_config}, {ADAPTER_FILE: tensors}
    )


def load_peft_adapter(model: nn.Module, adapter_dir: str | Path) -> None:
    """Fill our LoRA adapters in place from a PEFT adapter directory (inverse of
    `save_peft_adapter`); rank and alpha must match the model's. Shards like `load_hf_checkpoint`;
    validates everything before copying."""
    folder = Path(adapter_dir)
    llama = find_llama(model)
    mods, rank, alpha, _ = _lora_settings(model)
    peft_cfg = read_json(folder / ADAPTER_CONFIG_FILE, "PEFT adapter config")
    if peft_cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{folder}: peft_type {peft_cfg.get('peft_type')!r}; expected 'LORA'")
    theirs = (peft_cfg.get("r"), peft_cfg.get("lora_alpha"))
    if theirs[0] != rank or float(theirs[1] or 0) != alpha:
        raise ValueError(
            f"{folder}: adapter has r={theirs[0]}, lora_alpha={theirs[1]}; the model's LoRA has "
            f"rank={rank}, alpha={alpha}"
        )
    file = folder / ADAPTER_FILE
    if not file.is_file():
        raise ValueError(f"{folder}: adapter file {ADAPTER_FILE} does not exist")
    try:
        with safe_open(str(file), framework="pt") as f:
            weight_map = dict.fromkeys(f.keys(), ADAPTER_FILE)
    except Exception as e:
        raise ValueError(f"adapter file {file} is unreadable: {e}") from None
    params, plan = {}, {}
    for name, mod in mods:
        params[f"{name}.lora_a.weight"] = mod.lora_a.weight
        plan[f"{name}.lora_a.weight"] = RowSource((_peft_name(name, "lora_A.weight"),), (-1,), None)
        params[f"{name}.lora_b.weight"] = mod.lora_b.weight
        src = _source(name, "lora_B.weight", llama.cfg, hf_fused=llama.cfg.fused_qkv)
        plan[f"{name}.lora_b.weight"] = RowSource(
            tuple(PEFT_PREFIX + n for n in src.names), src.rows, src.index
        )
    load_plan(folder, weight_map, plan, params, where=f"adapter {folder}")


def verify_base_model(folder: Path, *, flavor: str) -> str:
    """Check a prepared HF checkpoint folder against the size registry's `flavor` (config.json
    and every weight file present, no tensor read); one line about it, ValueError otherwise."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"no base model in {folder} (missing config.json); rerun prepare")
    weights = read_weight_map(folder)
    fused = any(".self_attn.qkv_proj." in name for name in weights)
    theirs = config_from_hf(json.loads(config_file.read_text()), fused_qkv=fused)
    ours = get_llama_config(flavor, max_seq_len=theirs.max_seq_len)
    check_config_matches(ours, theirs)
    missing = sorted({f for f in weights.values() if not (folder / f).is_file()})
    if missing:
        raise ValueError(f"base model in {folder} lacks {missing[0]}; rerun prepare to resume")
    return f"base model {folder}: {len(weights)} tensors, {'fused' if fused else 'q/k/v'} QKV"
