"""Speed features on one process (CPU): each one's numerics against the plain debug model,
and the combinations that are refused with a reason before anything is built."""

from __future__ import annotations

import copy
import importlib.util
from unittest import mock

import pytest
import torch

from trainperf import config as config_module
from trainperf.config import Config, apply_overrides
from trainperf.models.llama.hf import canonical_name
from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.models.llama.parallelize import parallel_plan
from trainperf.parallel import ac, attention, float8
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.parallelize import parallelize_model
from trainperf.train.loss import loss_terms

needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason="torchao not installed"
)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    cfg = get_llama_config("debug")
    model = Llama(cfg)
    model.init_weights()
    x = torch.randint(0, cfg.vocab_size, (2, 32))
    y = torch.randint(0, cfg.vocab_size, (2, 32))
    loss, grads = loss_and_grads(model, x, y)
    return model, x, y, loss, grads


def loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    s, c = loss_terms(model(x), y, reduction="token")
    (s / c).backward()
    return (s / c).item(), {canonical_name(n): p.grad.clone() for n, p in model.named_parameters()}


def featured(model, **options):
    m = copy.deepcopy(model)
    parallelize_model(m, parallel_plan(m), ParallelDims(world_size=1), None, **options)
    return m


def max_rel(got: dict, ref: dict) -> float:
    return max(((got[n] - ref[n]).abs().max() / ref[n].abs().max()).item() for n in ref)


@pytest.mark.parametrize(
    "options",
    [
        {"activation_checkpointing": "full"},
        {"activation_checkpointing": "selective"},
        {"activation_checkpointing": "selective", "compile": True},
        {"activation_checkpointing": "full", "compile": True, "compile_inside_checkpoint": True},
    ],
    ids=["full_ac", "selective_ac", "selective_ac+compile", "full_ac+compile_inside"],
)
def test_feature_matches_plain_model(reference, options) -> None:
    model, x, y, ref_loss, ref_grads = reference
    m = featured(model, **options)
    loss, grads = loss_and_grads(m, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    assert max_rel(grads, ref_grads) < 1e-5


def test_selective_ac_saves_attention_and_every_second_matmul(reference) -> None:
    """The policy's forward decisions: every attention output saved, the matmuls alternately
    saved and recomputed (torch >= 2.13 asks the policy in forward only; older versions ask
    again while recomputing, which the policy's separate counts handle)."""
    model, x, y, *_ = reference
    decisions = []

    def spy(counts, ctx, op, *args, **kwargs):
        decision = policy(counts, ctx, op, *args, **kwargs)
        decisions.append((ctx.is_recompute, str(op), decision))
        return decision

    policy = ac._selective_policy
    with mock.patch.object(ac, "_selective_policy", spy):
        loss_and_grads(featured(model, activation_checkpointing="selective"), x, y)
    forward = [(op, d) for rec, op, d in decisions if not rec]
    mm = [d for op, d in forward if op == "aten.mm.default"]
    sdpa = [d for op, d in forward if "scaled_dot_product" in op]
    save, redo = ac.CheckpointPolicy.MUST_SAVE, ac.CheckpointPolicy.PREFER_RECOMPUTE
    n_layers = len(model.layers)
    assert sdpa == [save] * n_layers
    assert len(mm) == 7 * n_layers  # wq wk wv wo w1 w3 w2 per block
    per_block = [save, redo, save, redo, save, redo, save]
    assert mm == per_block * n_layers


def test_config_modes_equal_the_modules_modes() -> None:
    assert config_module.AC_MODES == ac.AC_MODES
    assert config_module.FLOAT8_RECIPES == float8.FLOAT8_RECIPES
    assert config_module.ATTENTION_BACKENDS == attention.ATTENTION_BACKENDS


def test_attention_backend_choice() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert attention.resolve_attention_backend("auto", cpu) is None
    with mock.patch("torch.cuda.get_device_capability", return_value=(9, 0)):
        assert attention.resolve_attention_backend("auto", gpu) == "cudnn"
    with mock.patch("torch.cuda.get_device_capability", return_value=(8, 0)):
        assert attention.resolve_attention_backend("auto", gpu) is None
    assert attention.resolve_attention_backend("flash", gpu) == "flash"
    with pytest.raises(ValueError, match="must be one of"):
        attention.resolve_attention_backend("xformers", cpu)


def test_attention_order_puts_the_choice_first() -> None:
    before = torch._C._get_sdp_priority_order()
    try:
        with mock.patch.object(attention, "resolve_attention_backend", return_value="cudnn"):
            assert attention.set_attention_backend("cudnn", torch.device("cuda", 0)) == "cudnn"
        order = torch._C._get_sdp_priority_order()
        assert order[0] == int(attention.SDPBackend.CUDNN_ATTENTION)
        assert sorted(order) == sorted(before)
    finally:
        torch._C._set_sdp_priority_order(before)


@needs_torchao
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_float8_converts_block_linears_and_stays_close(reference, recipe: str) -> None:
    from torchao.float8.float8_linear import Float8Linear

    model, x, y, ref_loss, ref_grads = reference
    m = featured(model, float8=recipe)
    kinds = {n: type(mod) for n, mod in m.named_modules()}
    assert kinds["output"] is torch.nn.Linear  # the logits stay in high precision
    assert kinds["layers.0.attention.wq"] is Float8Linear
    assert kinds["layers.1.feed_forward.w2"] is Float8Linear
    loss, grads = loss_and_grads(m, x, y)
    # e4m3 keeps 3 mantissa bits: a few per cent on a random tiny model, never more
    assert loss == pytest.approx(ref_loss, rel=2e-2)
    assert max_rel(grads, ref_grads) < 0.2


@needs_torchao
def test_float8_skips_linears_not_multiple_of_16() -> None:
    cfg = get_llama_config("debug", dim=72, ffn_dim=136, n_heads=4, n_kv_heads=2)
    with torch.device("meta"):
        model = Llama(cfg)
    assert float8.apply_float8(model, recipe="tensorwise") == 0  # 72 = 4.5 x 16


def test_float8_skip_names_match_last_segments() -> None:
    assert float8.skipped("output", ("output",)) and float8.skipped("x.output", ("output",))
    assert not float8.skipped("x.outputs", ("output",))
    assert float8.skipped("final_layer.adaLN_modulation.1", ("adaLN_modulation.1",))
    assert not float8.skipped("img_mlp.1", ("adaLN_modulation.1",))
    assert float8.skipped("layers.0.attention.wq.lora_a", ())  # adapters, always


def test_float8_refused_on_gpus_without_fp8() -> None:
    with (
        mock.patch("torch.cuda.get_device_capability", return_value=(8, 0)),
        mock.patch("torch.cuda.get_device_name", return_value="NVIDIA A100-SXM4-80GB"),
        mock.patch("importlib.util.find_spec", return_value=object()),
    ):
        with pytest.raises(ValueError, match=r"A100.*8\.0.*float8=none"):
            float8.check_float8_available("rowwise", torch.device("cuda", 0))


def test_float8_without_torchao_names_the_install() -> None:
    with mock.patch("importlib.util.find_spec", return_value=None):
        with pytest.raises(ValueError, match=r"pip install"):
            float8.check_float8_available("tensorwise", torch.device("cpu"))


BASE = Config(benchmark="llama31_8b", scale="tiny")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["parallel.float8=fp4"], r"parallel\.float8\('fp4'\) must be one of"),
        (["parallel.activation_checkpointing=some"], "must be one of"),
        (["parallel.float8=rowwise", "parallel.tp=2"], r"tp=2 is not supported.*float8=none"),
        (["parallel.float8=tensorwise", "model.lora_rank=16"], r"LoRA.*float8=rowwise"),
        (["train.cross_entropy=chunked", "parallel.tp=2"], r"gathers sharded logits"),
        (["train.cross_entropy=fused"], r"train\.cross_entropy\('fused'\) must be one of"),
        (["parallel.compile_inside_checkpoint=true"], r"needs parallel.compile=true and .*=full"),
        (
            ["parallel.compile_inside_checkpoint=true", "parallel.compile=true"],
            r"got compile=true, activation_checkpointing=none",
        ),
    ],
)
def test_invalid_combinations_are_refused(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(BASE, overrides)


def test_cross_entropy_auto_is_chunked_except_under_tp() -> None:
    assert apply_overrides(BASE, []).chunked_cross_entropy
    assert not apply_overrides(BASE, ["parallel.tp=2"]).chunked_cross_entropy
    assert not apply_overrides(BASE, ["train.cross_entropy=plain"]).chunked_cross_entropy


def test_compile_inside_checkpoint_compiles_the_wrapped_block(reference) -> None:
    model, *_ = reference
    options = {"activation_checkpointing": "full", "compile": True}
    around = featured(model, **options)
    inside = featured(model, **options, compile_inside_checkpoint=True)
    for block in around.layers.values():  # the checkpoint wrapper is compiled
        assert block._compiled_call_impl is not None
        assert block._checkpoint_wrapped_module._compiled_call_impl is None
    for block in inside.layers.values():  # the wrapper stays eager, the block inside compiles
        assert block._compiled_call_impl is None
        assert block._checkpoint_wrapped_module._compiled_call_impl is not None
