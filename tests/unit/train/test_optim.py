import math

import pytest
import torch

from trainperf.config import TrainConfig
from trainperf.train.optim import build_optimizer, lr_at

BASE, END, WARM, MAX = 8e-4, 8e-5, 128, 1_200_000


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, BASE * 1 / 129),  # NeMo warmup: base * (step + 1) / (warmup + 1)
        (63, BASE * 64 / 129),
        (127, BASE * 128 / 129),
        (128, BASE),  # end of warmup: peak
        (MAX, END),
        (MAX + 10, END),
        ((WARM + MAX) // 2, (BASE + END) / 2),  # half way through the cosine
    ],
)
def test_lr_schedule_values(step, expected):
    got = lr_at(step, base_lr=BASE, end_lr=END, warmup_steps=WARM, max_steps=MAX)
    assert got == pytest.approx(expected, rel=1e-12)


def test_lr_schedule_cosine_shape():
    # a quarter of the way through the decay the cosine factor is (1 + cos(pi/4)) / 2
    step = WARM + (MAX - WARM) // 4
    want = END + (BASE - END) * 0.5 * (1 + math.cos(math.pi * 0.25))
    assert lr_at(step, base_lr=BASE, end_lr=END, warmup_steps=WARM, max_steps=MAX) == pytest.approx(
        want
    )


def test_lr_schedule_monotone():
    lrs = [lr_at(s, base_lr=1.0, end_lr=0.1, warmup_steps=10, max_steps=100) for s in range(120)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert min(lrs[10:]) == pytest.approx(0.1)


def test_no_weight_decay_on_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=True), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1, global_batch_size=1))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight)}
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-5
