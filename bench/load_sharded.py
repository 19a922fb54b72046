"""Sharded HF checkpoint loading on GPUs: each rank reads only its FSDP2 shard.

  torchrun --nproc-per-node N bench/load_sharded.py --flavor llama3.1-8b --dir /tmp/ckpt

Builds the flavor on the meta device, shards it with FSDP2 over all ranks, materialises it on the
GPUs, writes it once as an HF checkpoint (bf16) if the folder is empty, then builds a fresh sharded
model and loads that checkpoint, printing one JSON line: load seconds, each rank's peak GPU memory
during the load against the full model's size, and whether the loaded shards equal the saved ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from trainperf.models.llama.hf import load_hf_checkpoint, save_hf_checkpoint
from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.fsdp import apply_fsdp


def build_sharded(flavor: str, mesh) -> Llama:
    cfg = get_llama_config(flavor)
    with torch.device("meta"):
        model = Llama(cfg)
    apply_fsdp(model, mesh["dp_shard"], param_dtype=torch.bfloat16)
    model.to_empty(device="cuda")
    return model


def local_checksum(model: Llama) -> float:
    total = torch.zeros((), device="cuda", dtype=torch.float64)
    for p in model.parameters():
        total += p.to_local().double().abs().sum()
    return float(total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flavor", default="llama3.1-8b")
    ap.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args()
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    mesh = ParallelDims(world_size=world).build_mesh("cuda")

    if not (args.dir / "config.json").exists():
        model = build_sharded(args.flavor, mesh)
        torch.manual_seed(0)
        model.init_weights()
        with torch.no_grad():  # saved in bf16: make the reference exactly representable
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        t = time.perf_counter()
        save_hf_checkpoint(model, args.dir, dtype=torch.bfloat16)
        save_s = time.perf_counter() - t
        saved = local_checksum(model)
        del model
        gc.collect()  # FSDP2 hooks hold reference cycles: free the writer model for real
    else:
        save_s, saved = None, None
    dist.barrier()
    torch.cuda.empty_cache()

    model = build_sharded(args.flavor, mesh)
    full_bytes = sum(p.numel() for p in model.parameters()) * 4  # fp32 sharded params
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    load_hf_checkpoint(model, args.dir)
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() - base
    shard_bytes = torch.cuda.memory_allocated()
    loaded = local_checksum(model)
    tokens = torch.randint(0, model.cfg.vocab_size, (1, 256), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        finite = bool(torch.isfinite(model(tokens)).all())
    row = {
        "rank": rank,
        "world": world,
        "flavor": args.flavor,
        "save_s": save_s,
        "load_s": round(load_s, 2),
        "load_peak_extra_gib": round(peak / 2**30, 3),
        "allocated_after_load_gib": round(shard_bytes / 2**30, 3),
        "full_model_fp32_gib": round(full_bytes / 2**30, 2),
        "matches_saved": None if saved is None else abs(saved - loaded) <= 1e-6 * abs(saved),
        "forward_finite": finite,
    }
    rows = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        for r in rows:
            print(json.dumps(r), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
