"""The Flux family record: run configs to model configs, the plan under parallelize_model
(activation checkpointing, float8), checkpoints through wrapped names, FLOPs and shape."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from unittest import mock

import pytest
import torch

from trainperf.config import Config, ModelConfig, TrainConfig
from trainperf.models import FAMILIES, get_family
from trainperf.models.checkpoint import canonical_name
from trainperf.models.flux import FAMILY
from trainperf.models.flux.model import FLUX_CONFIGS, Flux, training_flops_per_sample
from trainperf.parallel import ac, float8
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.parallelize import parallelize_model

needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason="torchao not installed"
)


def run_config(flavor: str, **model: object) -> Config:
    return Config(
        benchmark="flux1",
        scale="proxy",
        model=ModelConfig(flavor=flavor, **model),
        train=TrainConfig(seq_len=512),
    )


def debug_model(seed: int = 0) -> Flux:
    model = FAMILY.build(FLUX_CONFIGS["debug"], ModelConfig(flavor="debug"))
    torch.manual_seed(seed)
    FAMILY.init_weights(model)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # no zero-initialised layer left: every gradient counts
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def loss_and_grads(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    cfg = FLUX_CONFIGS["debug"]
    gen = torch.Generator().manual_seed(3)
    img = torch.randn(2, cfg.image_tokens, cfg.in_channels, generator=gen)
    txt = torch.randn(2, cfg.text_tokens, cfg.context_in_dim, generator=gen)
    ids = torch.randint(0, 4, (cfg.image_tokens, 3), generator=gen).float()
    t, y = torch.rand(2, generator=gen), torch.randn(2, cfg.vec_in_dim, generator=gen)
    model.zero_grad(set_to_none=True)
    loss = model(img, ids, txt, torch.zeros(cfg.text_tokens, 3), t, y).square().mean()
    loss.backward()
    return loss.item(), {canonical_name(n): p.grad for n, p in model.named_parameters()}


def test_the_family_is_registered() -> None:
    assert "flux" in FAMILIES and get_family("flux") is FAMILY
    assert FAMILY.config("flux-proxy") is FLUX_CONFIGS["flux-proxy"]
    with pytest.raises(ValueError, match=r"unknown flux model 'flux-dev'; known: debug, flux-"):
        FAMILY.config("flux-dev")


def test_n_layers_makes_the_peer_proxy() -> None:
    assert FAMILY.model_config(run_config("flux-schnell")) == FLUX_CONFIGS["flux-schnell"]
    proxy = FAMILY.model_config(run_config("flux-schnell", n_layers=6))
    assert proxy == FLUX_CONFIGS["flux-proxy"]  # 6 double + 12 single blocks


def test_build_on_meta_and_no_lora() -> None:
    with torch.device("meta"):
        model = FAMILY.build(FLUX_CONFIGS["flux-schnell"], ModelConfig(flavor="flux-schnell"))
    assert isinstance(model, Flux) and model.img_in.weight.is_meta
    assert FAMILY.init_adapters(model) == 0
    with pytest.raises(ValueError, match=r"lora_rank\(16\): the Flux family has no LoRA"):
        FAMILY.build(FLUX_CONFIGS["debug"], ModelConfig(flavor="debug", lora_rank=16))


def test_flops_per_sample_needs_the_joint_sequence() -> None:
    cfg = FLUX_CONFIGS["flux-schnell"]
    assert FAMILY.flops_per_sample(cfg, 512) == training_flops_per_sample(cfg)
    with pytest.raises(
        ValueError, match=r"256\) = 512 tokens, not seq_len\(8192\); .*\(train\.seq_len=512\)"
    ):
        FAMILY.flops_per_sample(cfg, 8192)


def test_shape_for_the_memory_estimate() -> None:
    shape = FAMILY.shape(FLUX_CONFIGS["flux-schnell"])
    assert (shape.n_layers, shape.dim, shape.vocab_size) == (57, 3072, 0)
    assert shape.root_params == 53_895_232  # embedders + final layer (research notes §8)
    blocks = 19 * 339_831_296 + 38 * 141_591_808
    assert shape.block_params == round(blocks / 57)
    assert FAMILY.tp_sizes(FLUX_CONFIGS["flux-schnell"]) == {
        "num_heads": 24,
        "hidden_size": 3072,
        "mlp_hidden_dim": 12288,
    }


def test_plan_blocks_and_no_tensor_parallel() -> None:
    model = debug_model()
    plan = FAMILY.parallel_plan(model)
    assert plan.blocks == [model.double_blocks, model.single_blocks]
    assert [name for _, name, _ in plan.block_items()] == ["0", "1", "0", "1"]
    assert plan.tensor_parallel is None and plan.attention_kernels == []


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_keeps_the_gradients(mode: str) -> None:
    model = debug_model()
    ref_loss, ref_grads = loss_and_grads(model)
    wrapped = copy.deepcopy(model)
    plan = FAMILY.parallel_plan(wrapped)
    parallelize_model(
        wrapped, plan, ParallelDims(world_size=1), None, activation_checkpointing=mode
    )
    assert type(wrapped.double_blocks["0"]).__name__ == "CheckpointWrapper"
    loss, grads = loss_and_grads(wrapped)
    assert loss == ref_loss
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=0, atol=0, msg=name)


def test_selective_checkpointing_saves_every_second_biased_matmul() -> None:
    decisions = []
    policy = ac._selective_policy

    def spy(counts, ctx, op, *args, **kwargs):
        decision = policy(counts, ctx, op, *args, **kwargs)
        if not ctx.is_recompute:
            decisions.append((str(op), decision))
        return decision

    model = debug_model()
    parallelize_model(
        model,
        FAMILY.parallel_plan(model),
        ParallelDims(world_size=1),
        None,
        activation_checkpointing="selective",
    )
    with mock.patch.object(ac, "_selective_policy", spy):
        loss_and_grads(model)
    save, redo = ac.CheckpointPolicy.MUST_SAVE, ac.CheckpointPolicy.PREFER_RECOMPUTE
    matmuls = [d for op, d in decisions if op in ("aten.addmm.default", "aten.mm.default")]
    # per double block: 2 modulations, 2 qkv, 2 proj, 4 MLP; per single block: 3
    assert matmuls == [save, redo] * 5 * 2 + [save, redo, save] * 2
    attention = [d for op, d in decisions if "scaled_dot_product" in op]
    assert attention == [save] * 4


def test_checkpoint_round_trip_through_wrapped_names(tmp_path: Path) -> None:
    model = debug_model()
    wrapped = copy.deepcopy(model)
    parallelize_model(
        wrapped,
        FAMILY.parallel_plan(wrapped),
        ParallelDims(world_size=1),
        None,
        activation_checkpointing="full",
    )
    folder = FAMILY.save_checkpoint(wrapped, tmp_path / "ckpt")
    assert FAMILY.verify_checkpoint(folder, "debug").startswith("diffusers transformer")
    fresh = copy.deepcopy(wrapped)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    FAMILY.load_checkpoint(fresh, folder)
    for (name, p), q in zip(fresh.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q), name


@needs_torchao
def test_float8_leaves_the_one_vector_layers_and_the_ends_alone() -> None:
    with torch.device("meta"):
        model = Flux(FLUX_CONFIGS["debug"])
    skip = FAMILY.parallel_plan(model).float8_skip
    converted = float8.apply_float8(model, recipe="tensorwise", skip=skip)
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    f8 = sorted(n for n, k in kinds.items() if k == "Float8Linear")
    per_double = [
        "img_attn.proj",
        "img_attn.qkv",
        "img_mlp.0",
        "img_mlp.2",
        "txt_attn.proj",
        "txt_attn.qkv",
        "txt_mlp.0",
        "txt_mlp.2",
    ]
    expected = [f"double_blocks.{i}.{n}" for i in "01" for n in per_double]
    expected += [f"single_blocks.{i}.{n}" for i in "01" for n in ("linear1", "linear2")]
    assert f8 == sorted([*expected, "txt_in"]) and converted == len(f8)
    for name in (
        "img_in",
        "time_in.in_layer",
        "vector_in.out_layer",
        "double_blocks.0.img_mod.lin",
        "single_blocks.1.modulation.lin",
        "final_layer.adaLN_modulation.1",
        "final_layer.linear",
    ):
        assert kinds[name] == "Linear", name
