"""Prove the full-scale llama31_8b path with C4 read from disk on the GPUs of one machine.

The MLPerf C4 (~80 GB) cannot be downloaded here, so this writes C4-shaped Megatron files in the
layout `trainperf prepare` produces (DATA_DIR/data/c4-train.en_6_text_document and the
validation file, int32 tokens of the Llama 3.1 vocabulary, C4-like document lengths), checks them
with `trainperf prepare llama31_8b --scale full --verify`, and runs the unmodified user command

    trainperf run llama31_8b --scale full --data-dir D --nproc N train.max_steps=S \
        train.warmup_steps=1 log.log_every_steps=1

i.e. Llama 3.1 8B from random init, FSDP2 over N GPUs, GBS 32 at micro-batch 1, sequence 8192,
megatron-order windows of the data on disk. Step times come from the MLLOG train_loss
timestamps. Prints one JSON object; writes it to --out too.

    python bench/c4_full_scale.py --nproc 2 --steps 8 --out $OUT/c4_8b.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loader_throughput import write_corpus
from lora_full_scale import step_times

from trainperf.data import c4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--train-tokens", type=int, default=200_000_000)
    ap.add_argument("--vocab", type=int, default=128_256, help="token ids drawn below this")
    ap.add_argument("--work", type=Path, default=Path("/tmp/c4-8b"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="more section.key=value overrides")
    args = ap.parse_args()
    data = args.work / "data"
    t0 = time.perf_counter()
    if not Path(f"{data / c4.TRAIN_PREFIX}.idx").exists():
        data.mkdir(parents=True, exist_ok=True)
        write_corpus(data / c4.VALID_PREFIX, tokens=9_000_000, seed=1, vocab=args.vocab)
        write_corpus(data / c4.TRAIN_PREFIX, tokens=args.train_tokens, seed=0, vocab=args.vocab)
    data_s = time.perf_counter() - t0
    base = [sys.executable, "-m", "trainperf"]
    verify = subprocess.run(
        [*base, "prepare", "llama31_8b", "--scale", "full", "--data-dir", str(args.work),
         "--verify"], capture_output=True, text=True,
    )  # fmt: skip
    print(verify.stdout + verify.stderr, flush=True)
    results = args.work / f"results-{time.time_ns()}"
    cmd = [
        *base, "run", "llama31_8b", "--scale", "full", "--data-dir", str(args.work),
        "--nproc", str(args.nproc), "--results", str(results), "--no-progress", "--seed", "1",
        f"train.max_steps={args.steps}", "train.warmup_steps=1", "log.log_every_steps=1",
        *args.extra,
    ]  # fmt: skip
    print(" ".join(cmd), flush=True)
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t1
    sys.stdout.write(proc.stdout[-3000:])
    sys.stderr.write(proc.stderr[-5000:])
    log = results / "result_0.txt"
    deltas = step_times(log) if log.exists() else []
    steady = deltas[1:] or deltas
    peak = re.findall(r"peak GPU memory ([\d.]+) GiB", proc.stdout + proc.stderr)
    median = statistics.median(steady) if steady else None
    report = {
        "command": " ".join(cmd),
        "verify_exit_code": verify.returncode,
        "exit_code": proc.returncode,
        "synthetic_data_s": round(data_s, 1),
        "wall_s": round(wall, 1),
        "step_times_s": [round(d, 3) for d in deltas],
        "median_step_s": round(median, 3) if median else None,
        "tokens_per_s_per_gpu": round(32 * 8192 / median / args.nproc, 1) if median else None,
        "peak_memory_gib_rank0": float(peak[-1]) if peak else None,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
