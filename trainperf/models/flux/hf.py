"""diffusers `FluxTransformer2DModel` checkpoints <-> our Flux: the only module that knows
diffusers' parameter names.

The differences between the two layouts, all handled here:
- names: our `double_blocks.{i}.img_mod.lin` is diffusers' `transformer_blocks.{i}.norm1.linear`,
  `img_in` is `x_embedder`, ... (`diffusers_modules`);
- fused projections: our `qkv` is the rows [to_q; to_k; to_v] (add_q/k/v_proj for the text
  stream), a single block's `linear1` is [to_q; to_k; to_v; proj_mlp] and its `linear2` is
  `proj_out` (columns [attention | MLP] in both). The head layout is the same: rows (K H D) in
  ours, (H D) per projection in diffusers, and both rotate interleaved channel pairs with RoPE,
  so no row moves inside a projection;
- the final modulation: ours (torchtitan, BFL) is (shift, scale), diffusers'
  `AdaLayerNormContinuous` (scale, shift): the two halves of its rows swap;
- QK RMSNorm epsilon: diffusers hard-codes 1e-6, which `config_from_diffusers` records.

Every one of our rows comes from one diffusers row, so a load is a row gather
(`trainperf.models.checkpoint.RowSource`): each rank reads only the rows of its own FSDP shard
with `safe_open(...).get_slice`. All names, shapes and dtypes are checked against the
safetensors headers before anything is copied: a bad checkpoint raises one ValueError and
leaves the model untouched.
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
from trainperf.models.flux.model import Flux, FluxConfig, get_flux_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
INDEX_FILE = "diffusion_pytorch_model.safetensors.index.json"
CLASS_NAME = "FluxTransformer2DModel"
DIFFUSERS_QK_NORM_EPS = 1e-6
# FluxTransformer2DModel.__init__'s defaults (FLUX.1's sizes), for keys a config.json leaves out
DIFFUSERS_DEFAULTS = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}
# What a checkpoint must agree on with the model; eps and the token counts are not weights.
MATCHED_FIELDS = (
    "in_channels",
    "out_channels",
    "vec_in_dim",
    "context_in_dim",
    "hidden_size",
    "mlp_ratio",
    "num_heads",
    "depth",
    "depth_single_blocks",
    "axes_dim",
    "theta",
    "qkv_bias",
)
_TOP = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
}
_FINAL_MODULATION = "final_layer.adaLN_modulation.1"
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "img_attn.norm.query_norm": "attn.norm_q",
    "img_attn.norm.key_norm": "attn.norm_k",
    "img_attn.proj": "attn.to_out.0",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mod.lin": "norm1_context.linear",
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "txt_attn.norm.query_norm": "attn.norm_added_q",
    "txt_attn.norm.key_norm": "attn.norm_added_k",
    "txt_attn.proj": "attn.to_add_out",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": "proj_out",
    "norm.query_norm": "attn.norm_q",
    "norm.key_norm": "attn.norm_k",
    "modulation.lin": "norm.linear",
}
_BLOCKS = {
    "double_blocks": ("transformer_blocks", _DOUBLE),
    "single_blocks": ("single_transformer_blocks", _SINGLE),
}


# --- config -------------------------------------------------------------------------------------


def config_from_diffusers(config: dict) -> FluxConfig:
    """Our FluxConfig for a diffusers FluxTransformer2DModel `config.json` (as a dict). Sizes
    diffusers fixes are FLUX.1's (mlp_ratio 4, RoPE theta 1e4, q/k/v biases, QK-norm eps 1e-6);
    ValueError for what our model cannot represent (guidance embedding, patch_size > 1)."""
    name = config.get("_class_name", CLASS_NAME)
    if name != CLASS_NAME:
        raise ValueError(f"diffusers config is a {name}; expected a {CLASS_NAME}")
    c = {**DIFFUSERS_DEFAULTS, **config}
    if c["guidance_embeds"]:
        raise ValueError(
            "guidance_embeds=true (FLUX.1-dev) is not supported: FLUX.1-schnell, which MLPerf "
            "flux1 trains, has no guidance embedding"
        )
    if c["patch_size"] != 1:
        raise ValueError(
            f"patch_size({c['patch_size']}) is not supported: FLUX.1 packs the 2 x 2 patches "
            "into in_channels and uses patch_size 1"
        )
    heads, head_dim = int(c["num_attention_heads"]), int(c["attention_head_dim"])
    return FluxConfig(
        in_channels=int(c["in_channels"]),
        out_channels=int(c["out_channels"] or c["in_channels"]),
        vec_in_dim=int(c["pooled_projection_dim"]),
        context_in_dim=int(c["joint_attention_dim"]),
        hidden_size=heads * head_dim,
        mlp_ratio=4.0,
        num_heads=heads,
        depth=int(c["num_layers"]),
        depth_single_blocks=int(c["num_single_layers"]),
        axes_dim=tuple(int(d) for d in c["axes_dims_rope"]),
        theta=10000.0,
        qkv_bias=True,
        qk_norm_eps=DIFFUSERS_QK_NORM_EPS,
    )


def config_to_diffusers(cfg: FluxConfig) -> dict:
    """A diffusers FluxTransformer2DModel config.json dict for `cfg`; ValueError for the sizes
    diffusers cannot build."""
    fixed = {"mlp_ratio": 4.0, "theta": 10000.0, "qkv_bias": True}
    wrong = [
        f"{k}({getattr(cfg, k)}) must be {v}" for k, v in fixed.items() if getattr(cfg, k) != v
    ]
    if wrong:
        raise ValueError(f"diffusers' FluxTransformer2DModel fixes them: {'; '.join(wrong)}")
    return {
        "_class_name": CLASS_NAME,
        "_diffusers_version": "0.30.0",  # the first release with Flux; informational
        "patch_size": 1,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "num_layers": cfg.depth,
        "num_single_layers": cfg.depth_single_blocks,
        "attention_head_dim": cfg.head_dim,
        "num_attention_heads": cfg.num_heads,
        "joint_attention_dim": cfg.context_in_dim,
        "pooled_projection_dim": cfg.vec_in_dim,
        "guidance_embeds": False,
        "axes_dims_rope": list(cfg.axes_dim),
    }


def check_config_matches(ours: FluxConfig, theirs: FluxConfig) -> None:
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


# --- names and rows -----------------------------------------------------------------------------


def diffusers_modules(module: str) -> tuple[str, ...]:
    """diffusers module(s) whose rows, concatenated, make our `module`:
    `double_blocks.3.img_attn.qkv` -> (`transformer_blocks.3.attn.to_q`, ..to_k, ..to_v)."""
    if module in _TOP:
        return (_TOP[module],)
    m = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", module)
    if m is not None:
        prefix, table = _BLOCKS[m.group(1)]
        theirs = table.get(m.group(3))
        if theirs is not None:
            theirs = (theirs,) if isinstance(theirs, str) else theirs
            return tuple(f"{prefix}.{m.group(2)}.{t}" for t in theirs)
    raise ValueError(f"our module {module!r} has no diffusers counterpart")


def diffusers_source(name: str, cfg: FluxConfig) -> RowSource:
    """Where our tensor `name` (a parameter, canonical name) comes from in a diffusers
    checkpoint."""
    module, _, suffix = canonical_name(name).rpartition(".")
    theirs = tuple(f"{m}.{suffix}" for m in diffusers_modules(module))
    h = cfg.hidden_size
    if module == _FINAL_MODULATION:  # our (shift, scale) = their (scale, shift) swapped
        return RowSource(theirs, (2 * h,), torch.cat([torch.arange(h, 2 * h), torch.arange(h)]))
    if len(theirs) == 1:
        return RowSource(theirs, (-1,), None)
    return RowSource(theirs, (h, h, h, cfg.mlp_hidden_dim)[: len(theirs)], None)


def _to_diffusers_rows(t: torch.Tensor, src: RowSource) -> dict[str, torch.Tensor]:
    """Inverse of a load: the diffusers tensors `src.names` from our full tensor `t`."""
    if src.index is not None:
        rows, t = t, t.new_empty(t.shape)
        t[src.index] = rows
    sizes = [r if r >= 0 else t.shape[0] for r in src.rows]
    return {name: part.contiguous() for name, part in zip(src.names, t.split(sizes))}


def to_diffusers_state_dict(ours: dict[str, torch.Tensor], cfg: FluxConfig) -> dict:
    """In-memory conversion of our full tensors (by our names) to diffusers' names and rows."""
    out: dict[str, torch.Tensor] = {}
    for name, t in ours.items():
        out.update(_to_diffusers_rows(t, diffusers_source(name, cfg)))
    return out


def from_diffusers_state_dict(theirs: dict[str, torch.Tensor], cfg: FluxConfig) -> dict:
    """In-memory conversion of full diffusers tensors (weights, or e.g. their gradients) to our
    names and rows, for a model of `cfg`."""
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in Flux(cfg).named_parameters()}
    out = {}
    for name, shape in shapes.items():
        src = diffusers_source(name, cfg)
        missing = [n for n in src.names if n not in theirs]
        if missing:
            raise ValueError(f"diffusers tensor {missing[0]} is missing (needed for our {name})")
        out[name] = read_rows(TensorFiles(theirs), src, shape, (0,) * len(shape))
    return out


# --- loading, saving, verifying -----------------------------------------------------------------


def find_flux(model: nn.Module) -> Flux:
    """The Flux inside `model` (itself, or under a torch.compile / other wrapper)."""
    for module in model.modules():
        if isinstance(module, Flux):
            return module
    raise ValueError(f"no trainperf Flux inside {type(model).__name__}")


def transformer_folder(source: str | Path) -> Path:
    """The folder holding the transformer's config.json: `source` itself, or its `transformer/`
    (a whole diffusers pipeline such as FLUX.1-schnell's)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"checkpoint {source} is not a directory; fetch the transformer of a hub pipeline "
            "with `hf download black-forest-labs/FLUX.1-schnell --include 'transformer/*' "
            "--local-dir DIR` and pass DIR"
        )
    if not (path / CONFIG_FILE).is_file() and (path / "transformer" / CONFIG_FILE).is_file():
        return path / "transformer"
    return path


def read_config(folder: Path) -> FluxConfig:
    return config_from_diffusers(read_json(folder / CONFIG_FILE, "diffusers config"))


def load_diffusers_checkpoint(model: nn.Module, source: str | Path) -> None:
    """Fill every parameter of `model` in place from a diffusers FluxTransformer2DModel
    checkpoint folder (the transformer's, or a pipeline's with a `transformer/` subfolder).

    Works on a materialised model (e.g. meta-built, parallelized, then `to_empty`) whose
    parameters may be DTensors sharded by FSDP2: each rank reads only its own rows. Values are
    cast to each parameter's dtype. Raises ValueError, before changing anything, if the
    checkpoint does not fit (config, a missing or extra tensor, a shape or a dtype).
    """
    folder = transformer_folder(source)
    flux = find_flux(model)
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("model is on the meta device; call model.to_empty(device=...) first")
    check_config_matches(flux.cfg, read_config(folder))
    weight_map = read_weight_map(folder, single_file=WEIGHTS_FILE, index_file=INDEX_FILE)
    params = base_params(model)
    plan = {name: diffusers_source(name, flux.cfg) for name in params}
    load_plan(folder, weight_map, plan, params, where=f"checkpoint {folder}")


def save_diffusers_checkpoint(
    model: nn.Module, out_dir: str | Path, *, dtype: torch.dtype | None = None
) -> Path | None:
    """Write the whole model as a diffusers FluxTransformer2DModel folder (config.json and
    diffusion_pytorch_model.safetensors; `FluxTransformer2DModel.from_pretrained` reads it).

    dtype: default, each parameter's own. DTensor parameters are gathered one at a time (every
    rank must call this); rank 0 writes, atomically, and gets the path, other ranks None.
    """
    flux = find_flux(model)
    writer = process_rank() == 0
    ours: dict[str, torch.Tensor] = {}
    for name, p in base_params(model).items():  # one parameter gathered at a time
        full = full_tensor(p)  # a collective: every rank gathers, only the writer keeps it
        if writer:
            ours[name] = full if dtype is None else full.to(dtype)
    if not writer:
        return None
    tensors = to_diffusers_state_dict(ours, flux.cfg)
    files = {CONFIG_FILE: config_to_diffusers(flux.cfg)}
    return write_checkpoint_dir(out_dir, files, {WEIGHTS_FILE: tensors})


def verify_checkpoint(folder: str | Path, flavor: str) -> str:
    """Check a diffusers transformer folder against the size registry's `flavor` (config.json
    and every weight file present, no tensor read); one line about it, ValueError otherwise."""
    path = transformer_folder(folder)
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(f"no diffusers transformer in {path} (missing {CONFIG_FILE})")
    theirs = read_config(path)
    check_config_matches(get_flux_config(flavor), theirs)
    weights = read_weight_map(path, single_file=WEIGHTS_FILE, index_file=INDEX_FILE)
    missing = sorted({f for f in weights.values() if not (path / f).is_file()})
    if missing:
        raise ValueError(f"diffusers transformer in {path} lacks {missing[0]}; download it again")
    n_files = len(set(weights.values()))
    return f"diffusers transformer {path}: {len(weights)} tensors in {n_files} file(s)"
