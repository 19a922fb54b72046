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
    reference decays every parameter (``cfg.decay_all_params``). Parameters sharded over
    different device meshes (expert parallel's experts beside FSDP's other parameters) go into
    separate groups: a foreach / fused update takes one mesh at a time.
    """
    groups: dict[tuple[bool, int], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            matrix = p.ndim >= 2 and not name.endswith("bias")  # gpt-oss's (experts, n) biases
            key = (matrix or cfg.decay_all_params, mesh_key(p))
            groups.setdefault(key, []).append(p)
    return torch.optim.AdamW(
        [
            {"params": params, "weight_decay": cfg.weight_decay if decay else 0.0}
            for (decay, _), params in sorted(groups.items(), key=lambda kv: not kv[0][0])
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=fused,
    )


def mesh_key(p: torch.Tensor) -> int:
    """0 for plain tensors, else an id of the DTensor's device mesh (its ranks and shape)."""
    mesh = getattr(p, "device_mesh", None)
    return 0 if mesh is None else hash((tuple(mesh.mesh.flatten().tolist()), mesh.mesh.shape))


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
