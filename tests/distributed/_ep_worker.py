"""One rank of the expert-parallel parity test: train the `debug` gpt-oss with its experts split
over ep ranks (FSDP over the rest) and compare with one process.

Run by `test_ep_parity.py` as N processes (RANK / WORLD_SIZE in the environment, a FileStore for
rendezvous). Rank 0 first trains the unsharded reference on the whole global batch and saves its
starting weights as an HF checkpoint, which every rank then loads sharded (each its own experts
and FSDP rows). Rank 0 writes one JSON object per layout to --out, or {"error": traceback}.
"""

from __future__ import annotations

import argparse
import json
import os
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from trainperf.config import TrainConfig
from trainperf.models.checkpoint import canonical_name
from trainperf.models.gpt_oss.hf import load_hf_checkpoint, save_hf_checkpoint
from trainperf.models.gpt_oss.model import GptOss, get_gpt_oss_config
from trainperf.models.gpt_oss.parallelize import parallel_plan
from trainperf.parallel import ParallelDims, parallelize_model
from trainperf.train.optim import build_optimizer
from trainperf.train.trainer import clip_grad_norm_

GLOBAL_BATCH, SEQ_LEN, STEPS, LR, EPS, CLIP = 4, 32, 3, 1e-3, 1e-3, 1.0
LAYOUTS = {  # name: (ep, parallelize_model options)
    "ep2": (2, {}),
    "ep2_compile_full_ac": (
        2,
        {"activation_checkpointing": "full", "compile": True},
    ),
    "ep4": (4, {}),
    "edp2_ep2": (2, {}),  # 4 ranks: experts split over 2, FSDP-sharded over the other 2
}


def batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    shape = (GLOBAL_BATCH, SEQ_LEN + 1)
    return [torch.randint(0, 256, shape, generator=gen) for _ in range(STEPS)]


def loss_of(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().clone()


def train(model, data, reduce) -> tuple[list[float], dict, dict, dict]:
    """The trainer's recipe: AdamW (build_optimizer), the mesh-aware grad-norm clip, step.
    (losses, first step's full gradients, final full weights, largest |gradient| per parameter
    over the steps)."""
    optimizer = build_optimizer(model, TrainConfig(lr=LR, eps=EPS, grad_clip=CLIP))
    losses, grads, scale = [], {}, {}
    for step, batch in enumerate(data):
        loss = loss_of(model, batch)
        loss.backward()
        now = {canonical_name(n): full(p.grad) for n, p in model.named_parameters()}
        grads = now if step == 0 else grads
        scale = {k: max(scale.get(k, 0.0), g.abs().max().item()) for k, g in now.items()}
        clip_grad_norm_([p for p in model.parameters()], CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(reduce(loss.detach()))
    weights = {canonical_name(n): full(p) for n, p in model.named_parameters()}
    return losses, grads, weights, scale


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def run_layout(name: str, folder: Path, reference) -> dict:
    ep, options = LAYOUTS[name]
    world = dist.get_world_size()
    cfg = get_gpt_oss_config("debug")
    dims = ParallelDims(ep=ep, world_size=world)
    mesh, ep_mesh = dims.build_mesh("cpu"), dims.build_ep_mesh("cpu")
    with torch.device("meta"):
        model = GptOss(cfg)
    parallelize_model(model, parallel_plan(model), dims, mesh, ep_mesh=ep_mesh, **options)
    model.to_empty(device="cpu")
    load_hf_checkpoint(model, folder)  # each rank: its own experts and FSDP rows
    rank, per_rank = dist.get_rank(), GLOBAL_BATCH // world
    local = [b[rank * per_rank : (rank + 1) * per_rank] for b in batches()]

    def mean(loss: torch.Tensor) -> float:
        dist.all_reduce(loss)
        return loss.item() / world

    losses, grads, weights, _ = train(model, local, mean)
    ref_losses, ref_grads, ref_weights, scale, start = reference
    experts = model.layers["0"].moe.experts.gate_up
    return {
        "losses": losses,
        "ref_losses": ref_losses,
        "loss_rel": max(abs(a - b) / b for a, b in zip(losses, ref_losses)),
        "grad_rel": max(rel(grads[k], ref_grads[k]) for k in ref_grads),
        # a trained weight's difference in units of its largest gradient (test_parity.check)
        "weight_in_grads": max(
            (weights[k] - ref_weights[k]).abs().max().item() / scale[k] for k in ref_weights
        ),
        "moved": max((ref_weights[k] - start[k]).abs().max().item() for k in ref_weights),
        "local_experts": experts.to_local().shape[0] if isinstance(experts, DTensor) else None,
        "placements": str(experts.placements) if isinstance(experts, DTensor) else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layouts", required=True)
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = dist.FileStore(args.store, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))  # fmt: skip
    torch.set_num_threads(1)
    report: dict = {}
    try:
        folder = Path(args.out).with_name("start")
        torch.manual_seed(0)
        reference_model = GptOss(get_gpt_oss_config("debug"))
        reference_model.init_weights()
        start = {canonical_name(n): full(p) for n, p in reference_model.named_parameters()}
        if rank == 0:
            save_hf_checkpoint(reference_model, folder)
        reference = (*train(reference_model, batches(), lambda loss: loss.item()), start)
        dist.barrier()
        for name in args.layouts.split(","):
            report[name] = run_layout(name, folder, reference)
    except Exception:
        report = {"error": {"error": traceback.format_exc()}}
    if rank == 0 or "error" in report:
        Path(args.out if rank == 0 else f"{args.out}.rank{rank}").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
