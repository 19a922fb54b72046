"""AdamW and the learning-rate schedules of the benchmarks."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainperf.config import TrainConfig


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, *, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only, or on every parameter.

    Megatron (and so the NeMo llama31_8b reference) exempts biases and 1-D parameters (norm
    weights) from weight decay; embeddings and linear weights decay. flux1's torchtitan
    reference decays every parameter (``cfg.decay_all_params``).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 or cfg.decay_all_params else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=fused,
    )


def lr_at(
    step: int,
    *,
    base_lr: float,
    end_lr: float,
    warmup_steps: int,
    max_steps: int,
    schedule: str = "cosine",
) -> float:
    """Learning rate for optimizer step ``step`` (0-based: the first update uses step 0).

    'cosine': NeMo's ``CosineAnnealing`` with linear warmup, as the llama31_8b/405b references
    use it: warmup ``base * (step + 1) / (warmup + 1)`` for ``step < warmup``, then a half cosine
    from ``base`` to ``end`` over ``max_steps - warmup`` steps, then ``end``.
    'constant': torchtitan's linear warmup ``base * (step + 1) / warmup`` (the full LR at the
    warmup-th update), then ``base`` (flux1: warmup-stable with no decay; ``end_lr`` unused).
    """
    if schedule == "constant":
        return base_lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else base_lr
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return end_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return end_lr + (base_lr - end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
