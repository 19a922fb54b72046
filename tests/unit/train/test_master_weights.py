"""train.master_weights=optimizer: bf16 copies as the model's weights, float32 masters in AdamW.

It must train as 'model' mode does (float32 parameters cast by autocast): the same forward, the
same gradients (summed in float32 over micro-batches), the same update up to float32 rounding;
and the update's Triton kernel (run here by Triton's interpreter) must be the torch arithmetic.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from trainperf.benchmarks import get_benchmark, get_default_config
from trainperf.config import apply_overrides
from trainperf.launch.preflight import check_master_weights
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.perf.measure import SyntheticData
from trainperf.train import trainer as T
from trainperf.train.master import (
    MasterAdamW,
    adamw_torch,
    copyable_params,
    keep_masters_,
    resolve_mode,
)

SPEC = get_benchmark("gpt_oss_20b")
CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ],
)
SMALL = [
    "train.seq_len=32", "train.global_batch_size=2", "train.micro_batch_size=1",
    "train.eval_samples=2", "train.seed=5", "train.dtype=bfloat16", "train.lr=1e-2",
    "train.warmup_steps=0",
]  # fmt: skip


def gpt_oss_trainer(*overrides: str) -> T.Trainer:
    cfg = apply_overrides(get_default_config("gpt_oss_20b", "tiny"), [*SMALL, *overrides])
    trainer = T.Trainer(
        SPEC.resolve(cfg), SPEC, None, ml=MLPerfLogger(None), console=Console(quiet=True)
    )
    trainer.data = SyntheticData(
        seq_len=32, vocab_size=trainer.model_cfg.vocab_size, eval_samples=2
    )
    trainer.setup()
    return trainer


def test_copies_are_the_weights_autocast_casts() -> None:
    """nn.Linear weights and biases and a module's autocast_params become copies; embeddings,
    norms, attention sinks and a weight tied to an embedding stay float32 parameters."""
    trainer = gpt_oss_trainer("train.master_weights=model")
    names = {
        f"{mname}.{pname}"
        for mname, m in trainer.model.named_modules()
        for mod, pname in copyable_params(trainer.model)
        if mod is m
    }
    params = dict(trainer.model.named_parameters())
    assert {n for n in params if n.endswith(("experts.gate_up", "experts.down"))} <= names
    assert {n for n in params if ".wq." in n or n.startswith("output.")} <= names
    assert not {n for n in names if "norm" in n or "embed" in n or "sinks" in n}

    tied = nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 8, bias=False), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert [(m, n) for m, n in copyable_params(tied)] == [(tied[2], "weight"), (tied[2], "bias")]
    masters = keep_masters_(tied, torch.bfloat16)
    assert tied[2].weight.dtype == torch.bfloat16 and tied[0].weight.dtype == torch.float32
    assert all(m.dtype == torch.float32 and c.equal(m.bfloat16()) for c, m in masters.items())


def _first_step(trainer: T.Trainer, monkeypatch) -> tuple[float, dict[str, torch.Tensor]]:
    """The first step's loss, and the gradients its clip (and AdamW) see."""
    seen: dict[str, torch.Tensor] = {}
    clip = T.clip_grad_norm_

    def spy(params, max_norm, optimizer=None):
        gradient = getattr(optimizer, "gradient", None) or (lambda p: p.grad)
        for name, p in trainer.model.named_parameters():
            seen[name] = gradient(p).clone()
        return clip(params, max_norm, optimizer)

    monkeypatch.setattr(T, "clip_grad_norm_", spy)
    loss = float(trainer.train_step())
    monkeypatch.setattr(T, "clip_grad_norm_", clip)
    return loss, seen


def test_same_training_as_float32_parameters(monkeypatch) -> None:
    """Two micro-batches: the same loss and the same float32-summed gradients as float32
    parameters under autocast (bit for bit, but the output layer's, which the chunked cross
    entropy scales after its GEMM: one bf16 rounding); after the update the masters equal the
    float32 parameters up to float32 rounding, and the copies are the masters in bf16."""
    ref, ours = (gpt_oss_trainer(f"train.master_weights={m}") for m in ("model", "optimizer"))
    assert (ref.master_weights, ours.master_weights) == ("model", "optimizer")
    assert ours.masters and ours.grad_accumulation == 2
    loss_ref, grads_ref = _first_step(ref, monkeypatch)
    loss, grads = _first_step(ours, monkeypatch)
    assert loss == loss_ref
    for name, g in grads.items():
        assert g.dtype == torch.float32, name
        if name == "output.weight":
            torch.testing.assert_close(g, grads_ref[name], rtol=2**-8, atol=0)
        else:
            assert g.equal(grads_ref[name]), name
    # the update: |step| <= lr * ~sqrt(1 / (1 - beta2)) at the first step; float32 rounding of
    # a few operations on it and on |p| <= 1
    lr = ref.cfg.train.lr
    ref_params = dict(ref.model.named_parameters())
    for name, p in ours.model.named_parameters():
        master = ours.optimizer.state[p]["master"]
        tol = 8 * 2**-24 * (1 + lr * math.sqrt(1 / (1 - ref.cfg.train.beta2)))
        if name != "output.weight":  # its gradient differs by a bf16 rounding (above)
            torch.testing.assert_close(master, ref_params[name].detach(), rtol=0, atol=tol)
        if p.dtype == torch.bfloat16:
            assert p.detach().equal(master.to(torch.bfloat16)), name
        else:
            assert p.data_ptr() == master.data_ptr(), name  # its own master
    ours.train_step()  # the hooks' float32 sums are reset between steps
    restored = ours.model_with_masters()
    assert all(p.dtype == torch.float32 for p in restored.parameters())


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_master_adamw_is_torch_adamw(device: str) -> None:
    """Three steps with weight decay on matrices, a changing LR and a clip factor: equal to
    torch's AdamW on the gradients divided by that factor, up to float32 rounding (on CUDA
    through the Triton kernel, on CPU through its torch version)."""
    torch.manual_seed(0)
    shapes = [(64, 32), (32,), (8, 16, 4)]
    ref = [nn.Parameter(torch.randn(s, device=device)) for s in shapes]
    copies = {nn.Parameter(p.detach().bfloat16()): p.detach().clone() for p in ref[:2]}
    ours = [*copies, nn.Parameter(ref[2].detach().clone())]
    groups = lambda ps: [  # noqa: E731
        {"params": [ps[0], ps[2]], "weight_decay": 0.1},
        {"params": [ps[1]], "weight_decay": 0.0},
    ]
    torch_opt = torch.optim.AdamW(groups(ref), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    opt = MasterAdamW(groups(ours), masters=copies, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    assert (opt.update is adamw_torch) == (device == "cpu")
    for step, (lr, scale) in enumerate([(1e-2, 1.0), (5e-3, 3.0), (2e-3, 1.5)]):
        grads = [torch.randn(s, device=device).bfloat16() for s in shapes]
        for p, g in zip(ref, grads):
            p.grad = g.float() / scale
        for p, g in zip(ours, grads):
            p.grad = g.to(p.dtype)
        for o in (torch_opt, opt):
            for group in o.param_groups:
                group["lr"] = lr
        opt.grad_scale = torch.tensor(scale, device=device)
        torch_opt.step()
        opt.step()
        for r, p in zip(ref, ours):
            master = opt.state[p]["master"]
            torch.testing.assert_close(master, r.detach(), rtol=0, atol=(step + 1) * 8 * 2**-23)
            if p.dtype == torch.bfloat16:
                assert p.detach().equal(master.bfloat16())
        opt.zero_grad()
        assert all(p.grad is None for p in ours)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_triton_kernel_is_the_torch_arithmetic(device: str) -> None:
    """The update kernel (on CPU run by Triton's interpreter): master and moments as the torch
    version computes them (float32 rounding), the bf16 copy rounded to nearest even exactly,
    infinities and NaN included."""
    triton = pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction

    from trainperf.train import master as M

    kernel = InterpretedFunction(M.adamw_kernel.fn) if device == "cpu" else None
    torch.manual_seed(1)
    n = M.BLOCK + 1000  # two programs, the second masked
    master = torch.randn(n)
    master[:4] = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, float("inf"), float("nan")])
    grad = torch.randn(n).bfloat16().to(device)
    m, v = (torch.randn(n) * 0.01).to(device), (torch.rand(n) * 1e-4).to(device)
    master = master.to(device)
    hyper = M.StepScalars(beta1=0.9, beta2=0.95, eps=1e-8, decay=1 - 1e-3 * 0.1,
                          step_size=1e-3 / 0.19, bc2_sqrt=math.sqrt(1 - 0.95**2))  # fmt: skip
    for scale in (None, torch.tensor(2.5, device=device)):
        a = [t.clone() for t in (master, m, v)]
        b = [t.clone() for t in (master, m, v)]
        out_a = torch.empty(n, dtype=torch.bfloat16, device=device)
        out_b = torch.empty(n, dtype=torch.bfloat16, device=device)
        M.adamw_triton(a[0], grad, a[1], a[2], out_a, scale, hyper, kernel=kernel)
        adamw_torch(b[0], grad, b[1], b[2], out_b, scale, hyper)
        # a few float32 ulps of the largest term of each sum (|(1 - beta1) g| < 0.5 here):
        # b1 m + (1 - b1) g may cancel, and torch may fuse a multiply-add the kernel does not
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=4 * 2**-23, atol=4 * 2**-23 * 0.5, equal_nan=True)
        finite = ~a[0].isnan()  # (NaN: any NaN; torch's CPU cast keeps its sign bit)
        assert out_a[finite].view(torch.int16).equal(a[0][finite].bfloat16().view(torch.int16))
        assert math.isinf(out_a[2]) and math.isnan(out_a[3]) and finite.sum() == n - 1
    # ties and edges, with an update that leaves the master as it is (zero gradient, moments)
    edges = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.3895e38, -3.3895e38, 1e-40,
                          float("-inf"), 0.0, -0.0], device=device)  # fmt: skip
    zeros = [torch.zeros_like(edges) for _ in range(3)]
    out = torch.empty(len(edges), dtype=torch.bfloat16, device=device)
    still = dataclasses.replace(hyper, decay=1.0)
    M.adamw_triton(edges.clone(), zeros[0].bfloat16(), zeros[1], zeros[2], out, None, still,
                   kernel=kernel)  # fmt: skip
    assert out.view(torch.int16).equal(edges.bfloat16().view(torch.int16))
    assert triton is not None


def test_modes_and_refusals(tmp_path) -> None:
    """auto keeps the masters in AdamW only on CUDA in one process with bf16 compute;
    'optimizer' where it cannot apply is refused in one line naming the reason and the fix."""
    cfg = apply_overrides(get_default_config("gpt_oss_20b", "tiny"), SMALL)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_mode(cfg, world=1, device=cpu) == "model"
    assert resolve_mode(cfg, world=1, device=cuda) == "optimizer"
    assert resolve_mode(cfg, world=2, device=cuda) == "model"
    auto_dtype = apply_overrides(cfg, ["train.dtype=auto"])  # bf16 on CUDA, float32 on CPU
    assert resolve_mode(auto_dtype, world=1, device=cuda) == "optimizer"
    asked = apply_overrides(cfg, ["train.master_weights=optimizer"])
    assert resolve_mode(asked, world=1, device=cpu) == "optimizer"  # train.dtype=bfloat16
    check_master_weights(asked, world=1)
    refused = {
        "2 ranks": (asked, 2),
        "train.master_dtype=bfloat16": (
            apply_overrides(asked, ["train.master_dtype=bfloat16"]),
            1,
        ),
        r"the compute dtype is float32 \(train.dtype=float32 on cpu\)": (
            apply_overrides(asked, ["train.dtype=float32", "train.device=cpu"]),
            1,
        ),
        r"the compute dtype is float32 \(train.dtype=auto on cpu\)": (
            apply_overrides(asked, ["train.dtype=auto", "train.device=cpu"]),
            1,
        ),
        "parallel.float8=tensorwise": (apply_overrides(asked, ["parallel.float8=tensorwise"]), 1),
        "LoRA": (apply_overrides(asked, ["model.lora_rank=4"]), 1),
    }
    for why, (bad, world) in refused.items():
        with pytest.raises(ValueError, match=f"does not apply: {why}.*master_weights=model"):
            check_master_weights(bad, world=world)
    with pytest.raises(ValueError, match="compute dtype is float32"):
        resolve_mode(apply_overrides(asked, ["train.dtype=auto"]), world=1, device=cpu)
    with pytest.raises(ValueError, match=r"train.master_weights\('fp32'\) must be"):
        apply_overrides(cfg, ["train.master_weights=fp32"])
