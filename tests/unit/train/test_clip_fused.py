"""The gradient clip folded into fused AdamW's `grad_scale` gives torch's own clip-then-step
update, within float32 rounding (g / (1/c) instead of g * c: one rounding per gradient). On CPU,
and on CUDA (the kernel the trainer uses there) with `-m gpu`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainperf.train.trainer import clip_grad_norm_, fused_optimizer

LR = 1e-2
U = torch.finfo(torch.float32).eps


def train(
    max_norm: float, fold: bool, steps: int = 4, device: str = "cpu"
) -> tuple[list[torch.Tensor], list]:
    """A small MLP trained `steps` fused-AdamW steps; torch's clip, or ours folded into it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1, fused=True)
    x = torch.randn(8, 16).to(device)
    norms = []
    for _ in range(steps):
        (model(x).pow(2).sum() * 10).backward()
        params = list(model.parameters())
        if fold:
            norms.append(clip_grad_norm_(params, max_norm, opt))
        else:
            norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return [p.detach().clone() for p in model.parameters()], norms


CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ],
)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("max_norm", [1.0, 1e6])  # clipping every step; never clipping
def test_folded_clip_matches_clip_then_step(max_norm: float, device: str) -> None:
    ref, ref_norms = train(max_norm, fold=False, device=device)
    got, got_norms = train(max_norm, fold=True, device=device)
    for a, b in zip(ref_norms, got_norms):
        torch.testing.assert_close(b, a, rtol=16 * U, atol=0)
    for a, b in zip(ref, got):
        # AdamW's step is lr * m / (sqrt(v) + eps): a relative change of a few ulp in g moves it
        # by a few ulp of lr per step, plus one rounding of the parameter itself
        torch.testing.assert_close(b, a, rtol=2 * U, atol=4 * 8 * U * LR)
    if max_norm > 1e3:  # factor 1: nothing rescaled either way, the same bits
        assert all(torch.equal(a, b) for a, b in zip(ref, got))


def test_only_a_fused_optimizer_takes_the_clip_factor() -> None:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    foreach = torch.optim.AdamW([p], foreach=True)
    assert not fused_optimizer(foreach)
    total = clip_grad_norm_([p], 1.0, foreach)
    assert not hasattr(foreach, "grad_scale")  # clipped in place instead
    torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0), rtol=4 * U, atol=0)
    assert float(total) == pytest.approx(12**0.5)
    fused = torch.optim.AdamW([p], fused=True)
    p.grad = torch.full((3,), 2.0)
    clip_grad_norm_([p], 1.0, fused)
    assert torch.equal(p.grad, torch.full((3,), 2.0))  # left to the kernel
    assert float(fused.grad_scale) == pytest.approx(12**0.5)
