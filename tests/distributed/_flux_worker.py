"""One rank of the Flux sharded-checkpoint test: load a diffusers checkpoint into the `debug`
Flux sharded by FSDP2 (with full activation checkpointing), train one forward + backward, save.

Run by `test_flux_sharded.py` as N processes (RANK / WORLD_SIZE in the environment, a FileStore
for rendezvous). Every rank also loads the unsharded model (tiny) as the reference. Rank 0
writes {"load_equal", "out_rel", "grad_rel", "worst_grad", "saved"} or {"error": traceback}
to --out; other ranks write --out.rankN only on an error.
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
from safetensors.torch import load_file

from trainperf.models.checkpoint import canonical_name
from trainperf.models.flux import FAMILY
from trainperf.models.flux.hf import (
    WEIGHTS_FILE,
    load_diffusers_checkpoint,
    save_diffusers_checkpoint,
)
from trainperf.models.flux.model import Flux, get_flux_config, text_position_ids
from trainperf.parallel import ParallelDims, parallelize_model


def batch(cfg, n: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    img = torch.randn(n, cfg.image_tokens, cfg.in_channels, generator=gen)
    img_ids = torch.randint(0, 4, (cfg.image_tokens, 3), generator=gen).float()
    txt = torch.randn(n, cfg.text_tokens, cfg.context_in_dim, generator=gen)
    t, y = torch.rand(n, generator=gen), torch.randn(n, cfg.vec_in_dim, generator=gen)
    return img, img_ids, txt, text_position_ids(cfg.text_tokens), t, y


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def run(ckpt: Path, out_dir: Path) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = get_flux_config("debug")
    full = Flux(cfg)
    load_diffusers_checkpoint(full, ckpt)
    with torch.device("meta"):
        model = Flux(cfg)
    dims = ParallelDims(world_size=world)
    parallelize_model(
        model,
        FAMILY.parallel_plan(model),
        dims,
        dims.build_mesh("cpu"),
        activation_checkpointing="full",
    )
    model.to_empty(device="cpu")
    load_diffusers_checkpoint(model, ckpt)  # each rank reads the rows of its own shards
    ref = dict(full.named_parameters())
    gathered = {canonical_name(n): p.full_tensor() for n, p in model.named_parameters()}
    load_equal = all(torch.equal(gathered[n], ref[n]) for n in ref)

    img, img_ids, txt, txt_ids, t, y = batch(cfg, 2 * world)
    mine = slice(2 * rank, 2 * rank + 2)  # this rank's samples
    out = model(img[mine], img_ids, txt[mine], txt_ids, t[mine], y[mine])
    out.square().mean().backward()  # FSDP averages the gradients over the ranks
    ref_out = full(img, img_ids, txt, txt_ids, t, y)
    ref_out.square().mean().backward()
    grads = {canonical_name(n): p.grad.full_tensor() for n, p in model.named_parameters()}
    errs = {n: rel(grads[n], p.grad) for n, p in ref.items()}
    worst = max(errs, key=errs.get)
    saved = save_diffusers_checkpoint(model, out_dir)
    result = {"load_equal": load_equal, "out_rel": rel(out, ref_out[mine].detach())}
    result.update(grad_rel=errs[worst], worst_grad=worst, saved=str(saved))
    if saved is not None:
        theirs, mine_saved = load_file(ckpt / WEIGHTS_FILE), load_file(saved / WEIGHTS_FILE)
        result["saved_equal"] = theirs.keys() == mine_saved.keys() and all(
            torch.equal(theirs[k], mine_saved[k]) for k in theirs
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, help="FileStore path (rendezvous)")
    parser.add_argument("--ckpt", required=True, help="diffusers checkpoint of the debug Flux")
    parser.add_argument("--out", required=True, help="JSON result, written by rank 0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo",
        init_method=f"file://{args.store}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        result = run(Path(args.ckpt), Path(args.out).with_suffix(".ckpt"))
    except Exception:  # report it: the other ranks cannot go on with the collectives
        result = {"error": traceback.format_exc()}
    if rank == 0 or "error" in result:
        Path(f"{args.out}.rank{rank}" if rank else args.out).write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
