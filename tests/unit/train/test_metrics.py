"""AsyncScalar hands values back in order with their metadata (CPU: copies are immediate)."""

from __future__ import annotations

import torch

from trainperf.train.metrics import AsyncScalar


def test_values_come_back_in_order_with_their_metadata() -> None:
    q = AsyncScalar(torch.device("cpu"))
    q.put(torch.tensor(1.5), (10, 0.1))
    q.put(torch.tensor(2.5, requires_grad=True) * 1, (20, 0.2))
    assert q.ready() == [(1.5, (10, 0.1)), (2.5, (20, 0.2))]
    assert q.ready(wait=True) == []
