"""One rank of the run-header test: build the Trainer of a layout and report its header facts.

Run by `test_run_header.py` as N gloo processes (RANK / WORLD_SIZE in the environment, a
FileStore for rendezvous). Each layout's Trainer is built and set up exactly as `trainperf run`
builds it (the llama31_8b spec, the `debug` model, synthetic tokens; a layout named moe_* the
gpt_oss_20b spec and the `debug` gpt-oss); rank 0 writes the MLLOG disclosure events of every
layout to --out as JSON, or {"error": traceback}.
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
from rich.console import Console

from trainperf.benchmarks import get_benchmark
from trainperf.config import apply_overrides
from trainperf.mlperf.events import disclosure_events
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.perf.measure import SyntheticData
from trainperf.train.distributed import DistEnv
from trainperf.train.trainer import Trainer

SPEC = get_benchmark("llama31_8b")
BASE = [
    "model.flavor=debug", "data.vocab_size=256", "train.seq_len=32", "train.global_batch_size=4",
    "train.micro_batch_size=1", "train.seed=1", "train.device=cpu",
]  # fmt: skip


def facts_of(name: str, overrides: list[str], env: DistEnv) -> dict:
    spec = get_benchmark("gpt_oss_20b") if name.startswith("moe_") else SPEC
    cfg = spec.resolve(apply_overrides(spec.config("tiny"), [*BASE, *overrides]))
    trainer = Trainer(cfg, spec, None, ml=MLPerfLogger(None), console=Console(quiet=True), env=env)
    trainer.data = SyntheticData(seq_len=32, vocab_size=256, eval_samples=4)
    trainer.setup()
    facts = trainer.facts(platform="gloo")
    events = dict(disclosure_events(facts, config_filename="config_0.json"))
    return {**events, "gradient_accumulation_steps": facts.grad_accumulation}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layouts", required=True, help="JSON: name -> list of overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo", init_method=f"file://{args.store}", rank=rank, world_size=world,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    env = DistEnv(rank=rank, world_size=world, local_rank=rank)
    results = {}
    for name, overrides in json.loads(args.layouts).items():
        try:
            results[name] = facts_of(name, overrides, env)
        except Exception:  # the other ranks cannot go on with the collectives either
            results[name] = {"error": traceback.format_exc()}
            break
    if rank == 0:
        Path(args.out).write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
