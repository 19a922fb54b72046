"""The float8 frozen base of LoRA (parallel.float8=rowwise with model.lora_rank > 0), on CPU.

PyTorch's CPU torch._scaled_mm runs the same float8 code path as the GPU (slowly); the
reference is the same model with the bf16 weights the float8 ones were quantized from.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from trainperf.models.llama.hf import load_hf_checkpoint, save_hf_checkpoint
from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.models.llama.parallelize import parallel_plan
from trainperf.models.lora import LoRAConfig, LoRALinear, apply_lora, init_lora, lora_parameters
from trainperf.parallel import float8
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.parallelize import parallelize_model
from trainperf.train.loss import loss_terms

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason="torchao not installed"
)


def lora_model(*, fp8: bool, device: str = "cpu") -> Llama:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug-llama2"))
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0))
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    parallelize_model(
        model,
        parallel_plan(model),
        ParallelDims(world_size=1),
        None,
        float8="rowwise" if fp8 else "none",
    )
    model.to_empty(device=device)
    torch.manual_seed(0)
    model.init_weights()
    init_lora(model)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.05)  # B = 0 would hide the adapters' gradients
    return model


def test_quantize_rows_round_trips_within_e4m3_precision() -> None:
    torch.manual_seed(0)
    w = torch.randn(48, 64) * torch.logspace(-3, 1, 48).unsqueeze(1)  # rows of any scale
    q, scale = float8.quantize_rows(w)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (48, 1)
    back = q.float() * scale
    rel = ((back - w).abs() / w.abs().amax(dim=1, keepdim=True)).max()
    assert rel < 2**-3  # 3 mantissa bits, relative to each row's largest value


def test_frozen_linear_forward_and_input_gradient_match_bf16() -> None:
    torch.manual_seed(1)
    w = torch.randn(32, 64, dtype=torch.bfloat16) * 0.05
    layer = float8.Float8FrozenLinear(64, 32)
    layer.load_weight_(w)
    ref_w = layer.base_weight().float()  # the values the float8 weight stands for
    x = torch.randn(3, 5, 64, requires_grad=True)
    out = layer(x.to(torch.bfloat16))
    ref = x.detach().to(torch.bfloat16).float() @ ref_w.t()
    assert out.shape == (3, 5, 32) and out.dtype == torch.bfloat16
    assert ((out.float() - ref).norm() / ref.norm()) < 0.05  # x quantized to e4m3 too
    g = torch.randn(3, 5, 32)
    out.float().backward(g)
    ref_dx = g @ ref_w
    assert ((x.grad - ref_dx).norm() / ref_dx.norm()) < 0.05
    assert not list(layer.parameters())  # nothing for FSDP to shard or an optimizer to step


def test_lora_model_with_float8_base_trains_the_adapters_like_bf16() -> None:
    ref, fp8 = lora_model(fp8=False), lora_model(fp8=True)
    kinds = {n: type(m).__name__ for n, m in fp8.named_modules()}
    assert kinds["layers.0.attention.wqkv"] == "Float8LoRALinear"
    assert kinds["layers.0.feed_forward.w1"] == "Float8FrozenLinear"
    assert kinds["output"] == "Linear"
    assert fp8.layers["0"].attention.wqkv.weight.dtype == torch.float8_e4m3fn
    # the same adapters and the bf16 weights the float8 ones came from
    with torch.no_grad():
        for (_, mod), (_, src) in zip(fp8.named_modules(), ref.named_modules()):
            if hasattr(mod, "load_weight_"):
                mod.load_weight_(src.weight)
        for a, b in zip(lora_parameters(fp8), lora_parameters(ref)):
            a.copy_(b)
    x = torch.randint(0, 256, (2, 32))
    losses, grads = [], []
    for model in (ref, fp8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s, c = loss_terms(model(x), x, reduction="sample")
        (s / c).backward()
        losses.append((s / c).item())
        grads.append(torch.cat([p.grad.flatten() for p in lora_parameters(model)]))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    assert ((grads[1] - grads[0]).norm() / grads[0].norm()) < 0.1
    assert sum(p.requires_grad for p in fp8.parameters()) == len(lora_parameters(fp8))


def test_float8_base_loads_from_an_hf_checkpoint(tmp_path) -> None:
    src = lora_model(fp8=False)
    folder = save_hf_checkpoint(src, tmp_path / "ckpt")
    model = lora_model(fp8=True)
    load_hf_checkpoint(model, folder)
    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear) or type(mod).__name__ == "Float8FrozenLinear":
            want = src.get_submodule(name).weight.float()
            got = mod.base_weight().float()
            assert ((got - want).abs().max() / want.abs().max()) < 2**-3, name


def test_tensorwise_is_refused_for_a_frozen_base() -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug-llama2"))
    apply_lora(model, LoRAConfig(rank=4))
    with pytest.raises(ValueError, match="use parallel.float8=rowwise"):
        m = copy.deepcopy(model)
        parallelize_model(
            m, parallel_plan(m), ParallelDims(world_size=1), None, float8="tensorwise"
        )


def test_fused_helpers_compute_what_the_plain_ones_do(monkeypatch) -> None:
    """On CUDA the quantization and the transpose run through torch.compile; forced here on
    CPU, the layer gives the same forward and input gradient."""
    torch.manual_seed(2)
    layer = float8.Float8FrozenLinear(64, 32)
    layer.load_weight_(torch.randn(32, 64) * 0.05)
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    results = []
    for compiled in (False, True):
        monkeypatch.setattr(float8, "_use_compiled", lambda t, c=compiled: c)
        x.grad = None
        out = layer(x)
        out.float().sum().backward()
        results.append((out.detach(), x.grad.clone()))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])
