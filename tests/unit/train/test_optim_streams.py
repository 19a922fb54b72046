"""StreamedAdamW: torch's fused AdamW with the parameters split into lanes (one CUDA stream
each) updates every parameter exactly as one fused AdamW does, bit for bit: with weight decay
on some groups, a changing LR, and the clip factor handed over as `grad_scale`. On CPU (lanes
one after the other) and on CUDA (side streams) with `-m gpu`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainperf.config import TrainConfig
from trainperf.train.optim import StreamedAdamW, build_optimizer, set_lr
from trainperf.train.trainer import clip_grad_norm_

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ],
)


def _model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(24, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 48), nn.Linear(48, 8)
    ).to(device)


def _train(streams: int, device: str, steps: int = 5) -> tuple[nn.Module, object]:
    model = _model(device)
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    opt = build_optimizer(model, cfg, fused=True, streams=streams)
    x = torch.randn(16, 24, generator=torch.Generator().manual_seed(1)).to(device)
    for step in range(steps):
        (model(x).pow(2).sum() * 5).backward()
        clip_grad_norm_(list(model.parameters()), 0.5, opt)
        set_lr(opt, 1e-2 * (step + 1) / steps)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("streams", [2, 3])
def test_lanes_update_like_one_fused_adamw(streams: int, device: str) -> None:
    ref, one = _train(1, device)
    got, opt = _train(streams, device)
    assert isinstance(one, torch.optim.AdamW) and isinstance(opt, StreamedAdamW)
    assert len(opt.lanes) == streams
    for (name, a), b in zip(ref.named_parameters(), got.parameters()):
        assert torch.equal(a, b), name


def test_lanes_split_by_size_and_keep_each_groups_settings() -> None:
    model = _model("cpu")
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1), fused=True, streams=2)
    params = {id(p): p for p in model.parameters()}
    held = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(held) == sorted(params)  # every parameter once
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert all(decay[id(p)] == (0.1 if p.ndim >= 2 else 0.0) for p in model.parameters())
    sizes = [sum(p.numel() for g in lane.param_groups for p in g["params"]) for lane in opt.lanes]
    largest = max(p.numel() for p in model.parameters())
    assert abs(sizes[0] - sizes[1]) <= largest  # greedy, largest first
    assert opt.defaults["fused"] and opt.grad_scale is None
    set_lr(opt, 0.5)
    assert all(g["lr"] == 0.5 for lane in opt.lanes for g in lane.param_groups)


def test_one_stream_or_foreach_is_plain_adamw() -> None:
    model = _model("cpu")
    assert type(build_optimizer(model, TrainConfig(), fused=True, streams=1)) is torch.optim.AdamW
    assert type(build_optimizer(model, TrainConfig(), fused=False, streams=4)) is torch.optim.AdamW
    with pytest.raises(ValueError, match=r"train.optimizer_streams\(0\) must be > 0"):
        TrainConfig(optimizer_streams=0)
