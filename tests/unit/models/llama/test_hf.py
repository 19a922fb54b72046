"""Unit tests for trainperf.models.llama.hf: configs, the row layouts, bad checkpoints, the hub
path and PEFT adapters. CPU, `debug` sizes, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import trainperf.models.llama.hf as hfa
from trainperf.models.llama.hf import (
    check_config_matches,
    config_from_hf,
    config_to_hf,
    load_hf_checkpoint,
    load_peft_adapter,
    qkv_row_index,
    resolve_checkpoint,
    rope_permutation,
    save_hf_checkpoint,
    save_peft_adapter,
    to_hf_state_dict,
)
from trainperf.models.llama.model import (
    Llama,
    apply_rope,
    get_llama_config,
    precompute_rope_cache,
)

SENTINEL = 0.5


def build(name: str = "debug", seed: int = 0, **overrides: object) -> Llama:
    model = Llama(get_llama_config(name, **overrides))
    torch.manual_seed(seed)
    model.init_weights()
    return model


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An HF checkpoint of a random `debug` model, split over two files with an index."""
    folder = save_hf_checkpoint(build(), tmp_path / "src")
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def sentinel_model(**overrides: object) -> Llama:
    model = Llama(get_llama_config("debug", **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(SENTINEL)
    return model


def assert_untouched(model: Llama) -> None:
    for name, p in model.named_parameters():
        assert torch.all(p == SENTINEL), f"{name} was changed by a failed load"


# --- config ----------------------------------------------------------------------------------


def test_config_from_hf_transformers4_and_5_keys() -> None:
    ours = get_llama_config("debug")
    v5 = config_to_hf(ours)
    v5["rope_parameters"] = {"rope_theta": v5.pop("rope_theta"), **v5.pop("rope_scaling")}
    for hf in (config_to_hf(ours), v5):
        cfg = config_from_hf(hf)
        check_config_matches(ours, cfg)
        assert cfg.max_seq_len == ours.max_seq_len and not cfg.fused_qkv
    plain = config_from_hf({**config_to_hf(get_llama_config("debug-llama2"))}, fused_qkv=True)
    assert plain.rope_scaling is None and plain.rope_theta == 10000.0 and plain.fused_qkv


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tie_word_embeddings": True}, r"tie_word_embeddings=true is not supported"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, r"rope_type 'yarn'"),
        ({"hidden_act": "gelu"}, r"hidden_act 'gelu'"),
        ({"head_dim": 32}, r"head_dim\(32\) \* num_attention_heads\(4\) != hidden_size\(64\)"),
        ({"hidden_size": None}, r"no 'hidden_size'"),
    ],
)
def test_config_from_hf_rejects_what_we_cannot_represent(change: dict, message: str) -> None:
    hf = {**config_to_hf(get_llama_config("debug")), **change}
    hf = {k: v for k, v in hf.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        config_from_hf(hf)


def test_check_config_matches_names_every_field() -> None:
    ours = get_llama_config("debug")
    theirs = get_llama_config("debug", n_layers=3, rope_theta=10000.0, max_seq_len=64)
    with pytest.raises(ValueError) as err:
        check_config_matches(ours, theirs)
    msg = str(err.value)
    assert "n_layers: checkpoint 3, model 2" in msg and "rope_theta: checkpoint 10000.0" in msg
    assert "max_seq_len" not in msg  # only sizes our RoPE table
    check_config_matches(ours, get_llama_config("debug", max_seq_len=64, fused_qkv=True))


# --- row layouts -----------------------------------------------------------------------------


def test_rope_permutation_values_and_inverse() -> None:
    # head_dim 4: ours [hf0, hf2, hf1, hf3] per head.
    assert rope_permutation(2, 4).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    p, inv = rope_permutation(3, 8), rope_permutation(3, 8, inverse=True)
    assert torch.equal(p[inv], torch.arange(24)) and torch.equal(inv[p], torch.arange(24))


def test_rope_permutation_turns_rotate_half_into_our_rope() -> None:
    """HF's q * cos + rotate_half(q) * sin on half-split channels == our apply_rope, permuted."""
    cfg = get_llama_config("debug")
    D, T = cfg.head_dim, 10
    cache = precompute_rope_cache(cfg)[:T]  # (T, D/2, 2)
    cos = torch.cat([cache[..., 0], cache[..., 0]], dim=-1)[None, :, None]  # (1, T, 1, D)
    sin = torch.cat([cache[..., 1], cache[..., 1]], dim=-1)[None, :, None]
    hf_x = torch.randn(2, T, 3, D)
    rotated = torch.cat([-hf_x[..., D // 2 :], hf_x[..., : D // 2]], dim=-1)
    hf_out = hf_x * cos + rotated * sin
    p = rope_permutation(1, D)
    torch.testing.assert_close(apply_rope(hf_x[..., p], cache), hf_out[..., p])


def test_qkv_row_index_groups_per_kv_head() -> None:
    cfg = get_llama_config("debug", dim=16, n_heads=4, n_kv_heads=2)  # head_dim 4, n_rep 2
    idx = qkv_row_index(cfg, "wqkv").view(2, 4, 4)  # (group, [q, q, k, v], head_dim)
    q, k, v = rope_permutation(4, 4).view(4, 4), 16 + rope_permutation(2, 4).view(2, 4), None
    v = torch.arange(24, 32).view(2, 4)
    for g in range(2):
        assert torch.equal(idx[g, :2], q[2 * g : 2 * g + 2])
        assert torch.equal(idx[g, 2], k[g]) and torch.equal(idx[g, 3], v[g])
    assert sorted(qkv_row_index(cfg, "wqkv").tolist()) == list(range(32))


def test_fused_and_unfused_models_convert_to_the_same_hf_tensors() -> None:
    model = build("debug-llama2", fused_qkv=False)
    unfused = to_hf_state_dict(model.state_dict(), model.cfg)
    fused_model = build("debug-llama2", seed=5)
    wqkv = hfa.from_hf_state_dict(
        to_hf_state_dict(model.state_dict(), model.cfg, fused=True), fused_model.cfg
    )
    fused_model.load_state_dict(wqkv)
    assert (
        to_hf_state_dict(fused_model.state_dict(), fused_model.cfg, fused=False).keys()
        == unfused.keys()
    )
    for name, t in to_hf_state_dict(fused_model.state_dict(), fused_model.cfg, fused=False).items():
        assert torch.equal(t, unfused[name]), name
    x = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(fused_model(x), model(x), rtol=1e-6, atol=1e-6)


# --- bad checkpoints: one ValueError, model untouched -----------------------------------------


def test_good_checkpoint_loads_every_parameter(checkpoint: Path) -> None:
    model = sentinel_model()
    load_hf_checkpoint(model, checkpoint)
    reference = build()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q), name


def _rewrite(folder: Path, edit) -> None:
    """Apply `edit(tensors)` to the file holding layer 1's wk."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    file = folder / index["weight_map"]["model.layers.1.self_attn.k_proj.weight"]
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, str(file))


def test_config_mismatch(checkpoint: Path) -> None:
    model = sentinel_model(ffn_dim=96)
    with pytest.raises(ValueError, match=r"does not match .*ffn_dim: checkpoint 128, model 96"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_missing_shard_file(checkpoint: Path) -> None:
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    model = sentinel_model()
    with pytest.raises(
        ValueError, match=r"shard file model-00002-of-00002\.safetensors .* not exist"
    ):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_missing_tensor(checkpoint: Path) -> None:
    index_file = checkpoint / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    del index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    index_file.write_text(json.dumps(index))
    model = sentinel_model()
    with pytest.raises(
        ValueError, match=r"tensor model\.layers\.1\.mlp\.up_proj\.weight is missing"
    ):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_tensor_absent_from_its_file(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    model = sentinel_model()
    with pytest.raises(ValueError, match=r"has no tensor model\.layers\.1\.self_attn\.k_proj"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_wrong_shape_names_tensor_and_both_shapes(checkpoint: Path) -> None:
    name = "model.layers.1.self_attn.k_proj.weight"
    _rewrite(checkpoint, lambda t: t.update({name: torch.zeros(16, 64)}))
    model = sentinel_model()
    with pytest.raises(ValueError, match=rf"{name} in .* shape \(16, 64\); expected \(32, 64\)"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_wrong_dtype(checkpoint: Path) -> None:
    name = "model.layers.1.self_attn.k_proj.weight"
    _rewrite(checkpoint, lambda t: t.update({name: torch.zeros(32, 64, dtype=torch.int32)}))
    model = sentinel_model()
    with pytest.raises(ValueError, match=rf"{name} in .* dtype I32; expected a floating-point"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_unexpected_tensor(checkpoint: Path) -> None:
    _rewrite(
        checkpoint, lambda t: t.update({"model.layers.1.self_attn.q_proj.bias": torch.zeros(64)})
    )
    index_file = checkpoint / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    file = index["weight_map"]["model.layers.1.self_attn.k_proj.weight"]
    index["weight_map"]["model.layers.1.self_attn.q_proj.bias"] = file
    index_file.write_text(json.dumps(index))
    model = sentinel_model()
    with pytest.raises(ValueError, match=r"1 tensor\(s\) the model has no place for.*q_proj\.bias"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_corrupt_shard_file(checkpoint: Path) -> None:
    (checkpoint / "model-00002-of-00002.safetensors").write_bytes(b"\x10\x00garbage")
    model = sentinel_model()
    with pytest.raises(ValueError, match=r"model-00002-of-00002\.safetensors is unreadable"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"metadata": {}}'])
def test_unreadable_index(checkpoint: Path, text: str) -> None:
    (checkpoint / "model.safetensors.index.json").write_text(text)
    model = sentinel_model()
    with pytest.raises(ValueError, match=r"safetensors index .*model\.safetensors\.index\.json"):
        load_hf_checkpoint(model, checkpoint)
    assert_untouched(model)


def test_missing_config_and_weights(tmp_path: Path, checkpoint: Path) -> None:
    (checkpoint / "config.json").unlink()
    with pytest.raises(ValueError, match=r"HF config .*config\.json does not exist"):
        load_hf_checkpoint(sentinel_model(), checkpoint)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(config_to_hf(build().cfg)))
    with pytest.raises(ValueError, match=r"neither model\.safetensors\.index\.json nor"):
        load_hf_checkpoint(sentinel_model(), tmp_path / "empty")


def test_meta_model_is_refused(checkpoint: Path) -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    with pytest.raises(ValueError, match=r"meta device; call model\.to_empty"):
        load_hf_checkpoint(model, checkpoint)


def test_load_casts_to_parameter_dtype(checkpoint: Path) -> None:
    model = sentinel_model().to(torch.bfloat16)
    load_hf_checkpoint(model, checkpoint)
    ref = build().to(torch.bfloat16)
    assert model.output.weight.dtype == torch.bfloat16
    assert torch.equal(model.output.weight, ref.output.weight)


def test_save_refuses_non_empty_dir_and_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match=r"already exists and is not empty"):
        save_hf_checkpoint(build(), tmp_path / "out")
    save_hf_checkpoint(build(), tmp_path / "new", dtype=torch.bfloat16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]
    assert (
        load_file(tmp_path / "new" / "model.safetensors")["lm_head.weight"].dtype == torch.bfloat16
    )


# --- hub ids ---------------------------------------------------------------------------------


def _hub_error(cls_name: str, status: int | None = None) -> Exception:
    from huggingface_hub import errors

    cls = getattr(errors, cls_name)
    err = cls.__new__(cls)
    Exception.__init__(err, "401 Client Error: token hf_SECRET rejected")
    err.response = type("Response", (), {"status_code": status})() if status else None
    return err


def test_hub_id_downloads_with_token(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET")
    model = sentinel_model()
    load_hf_checkpoint(model, "regisss/llama-debug")
    assert calls[0]["repo_id"] == "regisss/llama-debug" and calls[0]["token"] == "hf_SECRET"
    assert (
        "config.json" in calls[0]["allow_patterns"]
        and "*.safetensors" in calls[0]["allow_patterns"]
    )
    assert torch.equal(model.output.weight, build().output.weight)


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        ("GatedRepoError", 403, r"gated.*set HF_TOKEN to a token that has accepted the license"),
        ("HfHubHTTPError", 401, r"set HF_TOKEN to a token that has accepted the license"),
        ("RepositoryNotFoundError", 404, r"hub repo org/name not found"),
        ("LocalEntryNotFoundError", None, r"not in the Hugging Face cache .*HF_HUB_OFFLINE"),
        ("HfHubHTTPError", 500, r"downloading org/name from the hub failed \(HTTP 500\)"),
    ],
)
def test_hub_errors_are_clear_and_hide_the_token(
    error: str, status: int | None, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def fail(**kwargs):
        raise _hub_error(error, status)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET")
    with pytest.raises(ValueError, match=message) as err:
        resolve_checkpoint("org/name")
    assert "hf_SECRET" not in str(err.value)


def test_neither_directory_nor_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not a directory nor a hub id"):
        resolve_checkpoint(str(tmp_path / "missing" / "dir"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"not a directory"):
        resolve_checkpoint(tmp_path / "file")


# --- PEFT adapters ---------------------------------------------------------------------------


def lora_model(name: str, targets: tuple[str, ...], *, seed: int, fused: bool) -> Llama:
    from trainperf.models import lora

    model = build(name, seed=0, fused_qkv=fused)
    lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=targets))
    torch.manual_seed(seed)
    with torch.no_grad():  # non-zero B so that the adapters matter
        for _, mod in lora.lora_modules(model):
            mod.lora_a.weight.normal_(0, 0.1)
            mod.lora_b.weight.normal_(0, 0.1)
    return model


def test_peft_adapter_matches_peft_on_the_hf_model(tmp_path: Path) -> None:
    import peft
    import transformers

    model = lora_model("debug", ("wq", "wk", "wv", "wo"), seed=1, fused=False).eval()
    save_hf_checkpoint(model, tmp_path / "base")
    out = save_peft_adapter(model, tmp_path / "adapter", base_model_name_or_path="base")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8.0 and config["peft_type"] == "LORA"
    assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    names = load_file(out / "adapter_model.safetensors")
    assert "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight" in names
    hf = transformers.LlamaForCausalLM.from_pretrained(
        tmp_path / "base", attn_implementation="eager", torch_dtype=torch.float32
    )
    ref = peft.PeftModel.from_pretrained(hf, out).eval()
    x = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        a, b = model(x), ref(input_ids=x).logits
    assert ((a - b).norm() / b.norm()).item() < 1e-5


@pytest.mark.parametrize("fused", [True, False])
def test_peft_adapter_round_trip_and_fused_layout(fused: bool, tmp_path: Path) -> None:
    targets = ("wqkv", "wo") if fused else ("wq", "wv", "wo")  # a subset of q/k/v too
    model = lora_model("debug-llama2", targets, seed=1, fused=fused)
    out = save_peft_adapter(model, tmp_path / "adapter")
    tensors = load_file(out / "adapter_model.safetensors")
    if fused:
        # HF-layout delta B A of qkv_proj == merged minus base weights in HF layout.
        base = to_hf_state_dict(model.state_dict(), model.cfg)
        merged = save_hf_checkpoint(model, tmp_path / "merged", merge_lora=True)
        merged = load_file(merged / "model.safetensors")
        name = "model.layers.0.self_attn.qkv_proj"
        a, b = (tensors[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
        delta = merged[f"{name}.weight"] - base[f"{name}.weight"]
        torch.testing.assert_close(2.0 * b @ a, delta, rtol=1e-5, atol=1e-6)
    fresh = lora_model("debug-llama2", targets, seed=2, fused=fused)
    load_peft_adapter(fresh, out)
    for (n, p), q in zip(fresh.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q), n


def test_peft_adapter_rank_mismatch(tmp_path: Path) -> None:
    from trainperf.models import lora

    out = save_peft_adapter(lora_model("debug", ("wq", "wo"), seed=1, fused=False), tmp_path / "a")
    other = build()
    lora.apply_lora(other, lora.LoRAConfig(rank=2, alpha=8.0, dropout=0.0, targets=("wq", "wo")))
    with pytest.raises(ValueError, match=r"adapter has r=4, lora_alpha=8.0; .* rank=2"):
        load_peft_adapter(other, out)
