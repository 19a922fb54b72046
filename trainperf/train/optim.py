"""AdamW and the learning-rate schedules of the benchmarks."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainperf.config import TrainConfig
from trainperf.train.master import MasterAdamW


def build_optimizer(
    model: nn.Module,
    cfg: TrainConfig,
    *,
    fused: bool = False,
    streams: int = 1,
    masters: dict[nn.Parameter, torch.Tensor] | None = None,
    accumulate: bool = False,
) -> torch.optim.AdamW | StreamedAdamW | MasterAdamW:
    """AdamW with decoupled weight decay on matrices only, or on every parameter.

    Megatron (and so the NeMo llama31_8b reference) exempts biases and 1-D parameters (norm
    weights) from weight decay; embeddings and linear weights decay. flux1's torchtitan
    reference decays every parameter (``cfg.decay_all_params``). Parameters sharded over
    different device meshes (expert parallel's experts beside FSDP's other parameters) go into
    separate groups: a foreach / fused update takes one mesh at a time. With ``streams`` > 1
    (fused only) the parameters are split over that many CUDA streams (`StreamedAdamW`).
    With ``masters`` (train.master_weights=optimizer: the model's bf16 copies -> their float32
    masters) it is `MasterAdamW`, its bf16 gradients summed in float32 when ``accumulate``.
    """
    groups: dict[tuple[bool, int], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            matrix = p.ndim >= 2 and not name.endswith("bias")  # gpt-oss's (experts, n) biases
            key = (matrix or cfg.decay_all_params, mesh_key(p))
            groups.setdefault(key, []).append(p)
    param_groups = [
        {"params": params, "weight_decay": cfg.weight_decay if decay else 0.0}
        for (decay, _), params in sorted(groups.items(), key=lambda kv: not kv[0][0])
    ]
    hyper = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if masters is not None:
        return MasterAdamW(param_groups, masters=masters, accumulate=accumulate, **hyper)
    hyper["fused"] = fused
    if fused and streams > 1:
        return StreamedAdamW(param_groups, streams=streams, **hyper)
    return torch.optim.AdamW(param_groups, **hyper)


class StreamedAdamW:
    """torch's fused AdamW over parameters split into ``streams`` lanes of about equal size,
    each lane stepped on its own CUDA stream (the first on the current one).

    One launch of the fused kernel runs 320 blocks of 512 threads, which leaves part of a large
    GPU (132 SMs) idle, and launches on one stream do not overlap: the update of billions of
    parameters then runs well below the memory bandwidth. Lanes on several streams overlap their
    launches. Each parameter's update is torch's fused kernel's, bit for bit. The side streams
    wait for the current one before stepping (the gradients), and the current one waits for
    them after. Exposes what the trainer uses: ``param_groups`` (the lanes' groups, so setting
    an LR reaches every lane), ``defaults``, ``step``, ``zero_grad`` and ``grad_scale`` (the
    clip factor, handed to every lane). Off CUDA the lanes step one after the other.
    """

    def __init__(self, param_groups: list[dict], *, streams: int, **hyper) -> None:
        lanes: list[list[dict]] = [[] for _ in range(streams)]
        for group in param_groups:
            size = [0] * streams
            split: list[list[nn.Parameter]] = [[] for _ in range(streams)]
            for p in sorted(group["params"], key=lambda t: -t.numel()):  # largest first
                lane = size.index(min(size))
                split[lane].append(p)
                size[lane] += p.numel()
            for lane, params in enumerate(split):
                if params:
                    lanes[lane].append({**group, "params": params})
        self.lanes = [torch.optim.AdamW(groups, **hyper) for groups in lanes if groups]
        self._streams: list[torch.cuda.Stream] | None = None

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.lanes for g in opt.param_groups]

    @property
    def defaults(self) -> dict:
        return self.lanes[0].defaults

    @property
    def grad_scale(self) -> torch.Tensor | None:
        return getattr(self.lanes[0], "grad_scale", None)

    @grad_scale.setter
    def grad_scale(self, value: torch.Tensor) -> None:
        for opt in self.lanes:
            opt.grad_scale = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.lanes:
            opt.zero_grad(set_to_none=set_to_none)

    def _side_streams(self, device: torch.device) -> list[torch.cuda.Stream]:
        if self._streams is None:
            self._streams = [torch.cuda.Stream(device) for _ in self.lanes[1:]]
        return self._streams

    @torch.no_grad()
    def step(self) -> None:
        first = self.lanes[0].param_groups[0]["params"][0]
        if first.device.type != "cuda":
            for opt in self.lanes:
                opt.step()
            return
        main = torch.cuda.current_stream(first.device)
        side = self._side_streams(first.device)
        for stream in side:  # the gradients (and the clip factor) are ready from here on
            stream.wait_stream(main)
        self.lanes[0].step()
        for opt, stream in zip(self.lanes[1:], side):
            with torch.cuda.stream(stream):
                opt.step()
        for stream in side:
            main.wait_stream(stream)


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


def set_lr(optimizer: torch.optim.Optimizer | StreamedAdamW | MasterAdamW, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
