"""Unit tests for trainperf.models.flux.hf (diffusers checkpoints): configs, names, and a bad
checkpoint raising one clear ValueError that leaves the model untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainperf.models.flux.hf import (
    DIFFUSERS_DEFAULTS,
    INDEX_FILE,
    WEIGHTS_FILE,
    config_from_diffusers,
    config_to_diffusers,
    diffusers_source,
    from_diffusers_state_dict,
    load_diffusers_checkpoint,
    save_diffusers_checkpoint,
    to_diffusers_state_dict,
    verify_checkpoint,
)
from trainperf.models.flux.model import Flux, get_flux_config

SENTINEL = 0.5
SHARDS = (
    "diffusion_pytorch_model-00001-of-00002.safetensors",
    "diffusion_pytorch_model-00002-of-00002.safetensors",
)


def build(seed: int = 0, **overrides: object) -> Flux:
    """A debug Flux with every parameter random (none left at the init's zeros or ones)."""
    model = Flux(get_flux_config("debug", **overrides))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A diffusers checkpoint of a random `debug` model, split over two files with an index."""
    folder = save_diffusers_checkpoint(build(), tmp_path / "src")
    tensors = load_file(folder / WEIGHTS_FILE)
    (folder / WEIGHTS_FILE).unlink()
    names = sorted(tensors)
    weight_map = {}
    for file, part in zip(SHARDS, (names[::2], names[1::2])):
        save_file({n: tensors[n] for n in part}, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    (folder / INDEX_FILE).write_text(json.dumps({"weight_map": weight_map}))
    return folder


def sentinel_model(**overrides: object) -> Flux:
    model = Flux(get_flux_config("debug", **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(SENTINEL)
    return model


def assert_untouched(model: Flux) -> None:
    for name, p in model.named_parameters():
        assert torch.all(p == SENTINEL), f"{name} was changed by a failed load"


def rewrite(folder: Path, name: str, edit) -> None:
    """Apply `edit(tensors)` to the file holding the diffusers tensor `name`."""
    file = folder / json.loads((folder / INDEX_FILE).read_text())["weight_map"][name]
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, str(file))


# --- config -------------------------------------------------------------------------------------


def test_config_from_diffusers_defaults_are_flux_schnell() -> None:
    # FLUX.1-schnell's transformer/config.json leaves out out_channels and axes_dims_rope
    schnell = {k: v for k, v in DIFFUSERS_DEFAULTS.items() if k not in ("out_channels",)}
    del schnell["axes_dims_rope"]
    cfg = config_from_diffusers({"_class_name": "FluxTransformer2DModel", **schnell})
    expected = get_flux_config("flux-schnell", qk_norm_eps=1e-6)
    assert cfg == expected


def test_config_round_trip_through_diffusers_format() -> None:
    cfg = get_flux_config("debug")
    back = config_from_diffusers(json.loads(json.dumps(config_to_diffusers(cfg))))
    # the sample's token counts are no part of a checkpoint: back to FLUX.1's 256 + 256
    expected = get_flux_config("debug", qk_norm_eps=1e-6, image_tokens=256, text_tokens=256)
    assert back == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"guidance_embeds": True}, r"guidance_embeds=true \(FLUX\.1-dev\) is not supported"),
        ({"patch_size": 2}, r"patch_size\(2\) is not supported"),
        ({"_class_name": "SD3Transformer2DModel"}, r"is a SD3Transformer2DModel; expected a Flux"),
        ({"axes_dims_rope": [16, 56, 40]}, r"sum\(axes_dim\(16, 56, 40\)\) = 112 must equal"),
    ],
)
def test_config_from_diffusers_refuses_what_we_cannot_represent(change: dict, message: str):
    with pytest.raises(ValueError, match=message):
        config_from_diffusers(change)


def test_config_to_diffusers_refuses_sizes_diffusers_fixes() -> None:
    cfg = get_flux_config("debug", mlp_ratio=2.0, qkv_bias=False)
    with pytest.raises(ValueError, match=r"mlp_ratio\(2.0\) must be 4.0; qkv_bias\(False\) must"):
        config_to_diffusers(cfg)


# --- names and rows -----------------------------------------------------------------------------


def test_names_map_both_ways_and_split_the_fused_projections() -> None:
    model = build()
    cfg = model.cfg
    ours = {n: p.detach() for n, p in model.named_parameters()}
    theirs = to_diffusers_state_dict(ours, cfg)
    # weight and bias: each qkv (2 per double block) -> 3 tensors, each linear1 -> 4
    assert len(theirs) == len(ours) + 2 * 2 * 2 * 2 + 2 * 2 * 3
    q = ours["double_blocks.1.img_attn.qkv.weight"]
    assert torch.equal(theirs["transformer_blocks.1.attn.to_k.weight"], q[64:128])
    t = ours["double_blocks.0.txt_attn.qkv.bias"]
    assert torch.equal(theirs["transformer_blocks.0.attn.add_v_proj.bias"], t[128:])
    linear1 = ours["single_blocks.1.linear1.weight"]
    assert torch.equal(theirs["single_transformer_blocks.1.proj_mlp.weight"], linear1[192:])
    # the final modulation: our (shift, scale) rows are diffusers' (scale, shift)
    final = ours["final_layer.adaLN_modulation.1.weight"]
    assert torch.equal(theirs["norm_out.linear.weight"], torch.cat([final[64:], final[:64]]))
    assert theirs["proj_out.weight"] is not None and "x_embedder.bias" in theirs
    back = from_diffusers_state_dict(theirs, cfg)
    assert back.keys() == ours.keys()
    for name, t in ours.items():
        assert torch.equal(back[name], t), name


def test_wrapped_names_map_like_plain_ones() -> None:
    cfg = get_flux_config("debug")
    plain = diffusers_source("double_blocks.0.img_mod.lin.weight", cfg)
    wrapped = diffusers_source("double_blocks.0._checkpoint_wrapped_module.img_mod.lin.weight", cfg)
    assert plain == wrapped and plain.names == ("transformer_blocks.0.norm1.linear.weight",)


# --- loading ------------------------------------------------------------------------------------


def test_good_checkpoint_loads_every_parameter(checkpoint: Path) -> None:
    model = sentinel_model()
    load_diffusers_checkpoint(model, checkpoint)
    for (name, p), q in zip(model.named_parameters(), build().parameters(), strict=True):
        assert torch.equal(p, q), name


def test_pipeline_folder_with_a_transformer_subfolder(checkpoint: Path) -> None:
    pipeline = checkpoint.parent / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text("{}")
    checkpoint.rename(pipeline / "transformer")
    model = sentinel_model()
    load_diffusers_checkpoint(model, pipeline)
    assert torch.equal(model.img_in.weight, build().img_in.weight)
    assert verify_checkpoint(pipeline, "debug").endswith("tensors in 2 file(s)")


def test_config_mismatch(checkpoint: Path) -> None:
    model = sentinel_model(depth_single_blocks=3)
    with pytest.raises(ValueError, match=r"does not match .*depth_single_blocks: checkpoint 2, mo"):
        load_diffusers_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_missing_tensor(checkpoint: Path) -> None:
    name = "single_transformer_blocks.1.proj_mlp.bias"
    index = json.loads((checkpoint / INDEX_FILE).read_text())
    rewrite(checkpoint, name, lambda t: t.pop(name))
    del index["weight_map"][name]
    (checkpoint / INDEX_FILE).write_text(json.dumps(index))
    model = sentinel_model()
    with pytest.raises(ValueError, match=rf"tensor {name} is missing \(needed for our single_bl"):
        load_diffusers_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_wrong_shape_names_tensor_and_both_shapes(checkpoint: Path) -> None:
    name = "transformer_blocks.1.attn.to_k.weight"
    rewrite(checkpoint, name, lambda t: t.update({name: torch.zeros(32, 64)}))
    model = sentinel_model()
    with pytest.raises(ValueError, match=rf"{name} in .* shape \(32, 64\); expected \(64, 64\)"):
        load_diffusers_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_wrong_dtype(checkpoint: Path) -> None:
    name = "norm_out.linear.bias"
    rewrite(checkpoint, name, lambda t: t.update({name: torch.zeros(128, dtype=torch.int32)}))
    model = sentinel_model()
    with pytest.raises(ValueError, match=rf"{name} in .* dtype I32; expected a floating-point"):
        load_diffusers_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_unexpected_tensor(checkpoint: Path) -> None:
    name = "time_text_embed.guidance_embedder.linear_1.weight"  # a FLUX.1-dev tensor
    rewrite(checkpoint, "x_embedder.weight", lambda t: t.update({name: torch.zeros(64, 256)}))
    index = json.loads((checkpoint / INDEX_FILE).read_text())
    index["weight_map"][name] = index["weight_map"]["x_embedder.weight"]
    (checkpoint / INDEX_FILE).write_text(json.dumps(index))
    model = sentinel_model()
    with pytest.raises(ValueError, match=r"1 tensor\(s\) the model has no place for.*guidance"):
        load_diffusers_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_missing_config_weights_and_folder(tmp_path: Path, checkpoint: Path) -> None:
    (checkpoint / INDEX_FILE).unlink()
    with pytest.raises(ValueError, match=r"neither diffusion_pytorch_model\.safetensors\.index"):
        load_diffusers_checkpoint(sentinel_model(), checkpoint)
    (checkpoint / "config.json").unlink()
    with pytest.raises(ValueError, match=r"diffusers config .*config\.json does not exist"):
        load_diffusers_checkpoint(sentinel_model(), checkpoint)
    with pytest.raises(ValueError, match=r"not a directory; fetch the transformer .* --include"):
        load_diffusers_checkpoint(sentinel_model(), "black-forest-labs/FLUX.1-schnell")


def test_meta_model_is_refused(checkpoint: Path) -> None:
    with torch.device("meta"):
        model = Flux(get_flux_config("debug"))
    with pytest.raises(ValueError, match=r"meta device; call model\.to_empty"):
        load_diffusers_checkpoint(model, checkpoint)


def test_load_casts_to_parameter_dtype(checkpoint: Path) -> None:
    model = sentinel_model().to(torch.bfloat16)
    load_diffusers_checkpoint(model, checkpoint)
    assert model.txt_in.weight.dtype == torch.bfloat16
    assert torch.equal(model.txt_in.weight, build().txt_in.weight.bfloat16())


# --- saving and verifying -----------------------------------------------------------------------


def test_save_refuses_non_empty_dir_and_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match=r"already exists and is not empty"):
        save_diffusers_checkpoint(build(), tmp_path / "out")
    save_diffusers_checkpoint(build(), tmp_path / "new", dtype=torch.bfloat16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]
    saved = load_file(tmp_path / "new" / WEIGHTS_FILE)
    assert saved["proj_out.weight"].dtype == torch.bfloat16
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["_class_name"] == "FluxTransformer2DModel" and config["num_layers"] == 2


def test_verify_checkpoint(checkpoint: Path) -> None:
    line = verify_checkpoint(checkpoint, "debug")
    n = 2 * 32 + 2 * 14 + 16  # 2 double blocks, 2 single blocks, embedders and final layer
    assert line == f"diffusers transformer {checkpoint}: {n} tensors in 2 file(s)"
    with pytest.raises(ValueError, match=r"does not match .*hidden_size: checkpoint 64, model"):
        verify_checkpoint(checkpoint, "flux-proxy")
    (checkpoint / SHARDS[1]).unlink()
    with pytest.raises(ValueError, match=rf"lacks {SHARDS[1]}; download it again"):
        verify_checkpoint(checkpoint, "debug")
