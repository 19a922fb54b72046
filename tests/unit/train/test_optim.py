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


def test_constant_schedule_is_torchtitans_warmup_then_constant() -> None:
    """flux1's reference (LambdaLR, decay_ratio 0): update s uses base * (s + 1) / W, the
    full LR from update W - 1 on; no warmup is the base LR from the first update."""
    lrs = [
        lr_at(s, base_lr=2.0, end_lr=0.0, warmup_steps=4, max_steps=10, schedule="constant")
        for s in range(12)
    ]
    assert lrs[:4] == [0.5, 1.0, 1.5, 2.0] and set(lrs[4:]) == {2.0}
    assert (
        lr_at(0, base_lr=2.0, end_lr=0.0, warmup_steps=0, max_steps=10, schedule="constant") == 2.0
    )


def test_weight_decay_on_every_parameter_when_asked() -> None:
    import torch

    from trainperf.config import TrainConfig
    from trainperf.train.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    groups = build_optimizer(model, TrainConfig()).param_groups
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(1, 0.1), (3, 0.0)]
    everything = build_optimizer(model, TrainConfig(decay_all_params=True)).param_groups
    assert [(len(g["params"]), g["weight_decay"]) for g in everything] == [(4, 0.1)]
