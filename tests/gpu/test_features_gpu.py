"""On a CUDA GPU: every speed feature trains to the same losses as the plain model.

A 4-layer Llama (dim 256, vocab 4096, 1024 tokens) from one seed, 6 AdamW steps on fixed batches
in bf16 autocast; the per-step losses of each feature combination must equal the plain run's
within bf16 tolerance (float8: within its own, wider one). Run on the device machine:
``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from trainperf.config import TrainConfig
from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.models.llama.parallelize import parallel_plan
from trainperf.parallel.attention import set_attention_backend
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.parallelize import parallelize_model
from trainperf.train.loss import chunked_loss_head, loss_terms
from trainperf.train.optim import build_optimizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
STEPS, BATCH, SEQ = 6, 2, 1024
FP8 = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None

COMBOS = {
    "chunked_ce": ({}, True),
    "full_ac": ({"activation_checkpointing": "full"}, False),
    "selective_ac": ({"activation_checkpointing": "selective"}, True),
    "compile": ({"compile": True}, True),
    "compile_selective_ac": ({"compile": True, "activation_checkpointing": "selective"}, True),
    "compile_inside_full_ac": (
        {"compile": True, "activation_checkpointing": "full", "compile_inside_checkpoint": True},
        True,
    ),
    "float8_tensorwise": ({"float8": "tensorwise"}, True),
    "float8_rowwise": ({"float8": "rowwise"}, True),
    "cudnn_attention": ({"attention": "cudnn"}, True),
    "cudnn_compile_full_ac": (
        {"attention": "cudnn", "compile": True, "activation_checkpointing": "full"},
        True,
    ),
    "float8_compile_sac": (
        {"float8": "tensorwise", "compile": True, "activation_checkpointing": "selective"},
        True,
    ),
}


@pytest.fixture(scope="module")
def start():
    torch.manual_seed(0)
    cfg = get_llama_config(
        "debug",
        dim=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=4,
        ffn_dim=768,
        vocab_size=4096,
        max_seq_len=SEQ,
    )
    model = Llama(cfg).cuda()
    model.init_weights()
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.randint(0, cfg.vocab_size, (BATCH, SEQ + 1), generator=gen) for _ in range(STEPS)
    ]
    return model, [b.cuda() for b in batches]


def train(model, batches, *, chunked: bool) -> list[float]:
    opt = build_optimizer(model, TrainConfig(lr=1e-3, warmup_steps=0), fused=True)
    losses = []
    for batch in batches:
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if chunked:
                s, c = model(x, head=chunked_loss_head(y, reduction="token", dtype=torch.bfloat16))
            else:
                s, c = loss_terms(model(x), y, reduction="token")
        (s / c).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append((s / c).item())
    return losses


@pytest.fixture(scope="module")
def plain(start):
    model, batches = start
    return train(copy.deepcopy(model), batches, chunked=False)


@pytest.mark.parametrize("name", list(COMBOS))
def test_losses_equal_plain(start, plain, name: str) -> None:
    options, chunked = COMBOS[name]
    if options.get("float8", "none") != "none" and not (FP8 and HAS_TORCHAO):
        pytest.skip("float8 needs compute capability 8.9 and torchao")
    model, batches = start
    m = copy.deepcopy(model)
    options = dict(options)
    backend = options.pop("attention", None)
    before = torch._C._get_sdp_priority_order()
    if backend:
        set_attention_backend(backend, torch.device("cuda"))
    try:
        parallelize_model(m, parallel_plan(m), ParallelDims(world_size=1), None, **options)
        losses = train(m, batches, chunked=chunked)
    finally:
        torch._C._set_sdp_priority_order(before)
    tol = 3e-2 if "float8" in options else 1e-2
    for step, (got, ref) in enumerate(zip(losses, plain)):
        assert abs(got - ref) <= tol * abs(ref), (name, step, losses, plain)
    assert losses[-1] < losses[0]  # it trains


def lora_model(cfg, *, options: dict) -> Llama:
    from trainperf.models.lora import LoRAConfig, apply_lora, init_lora

    with torch.device("meta"):
        model = Llama(cfg)
    apply_lora(model, LoRAConfig(rank=16, alpha=32.0, dropout=0.0))
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    parallelize_model(model, parallel_plan(model), ParallelDims(world_size=1), None, **options)
    model.to_empty(device="cuda")
    torch.manual_seed(0)
    model.init_weights()  # the same draws: a float8 layer draws in bf16, then quantizes
    init_lora(model)
    return model


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compile"])
def test_lora_float8_frozen_base_losses_equal_bf16(start, compile: bool) -> None:
    if not (FP8 and HAS_TORCHAO):
        pytest.skip("float8 needs compute capability 8.9 and torchao")
    cfg = copy.deepcopy(start[0].cfg)
    cfg.fused_qkv = True
    batches = start[1]
    runs = {}
    for name, fp8 in (("bf16", "none"), ("float8", "rowwise")):
        model = lora_model(cfg, options={"float8": fp8, "compile": compile})
        runs[name] = train(model, batches, chunked=True)
    for step, (got, ref) in enumerate(zip(runs["float8"], runs["bf16"])):
        assert abs(got - ref) <= 3e-2 * abs(ref), (step, runs)
    # random tokens: the loss need not fall in 6 steps, but the adapters must have moved
    lora_b = [m.lora_b.weight for m in model.modules() if hasattr(m, "lora_b")]
    assert lora_b and all(w.abs().max() > 0 for w in lora_b)
