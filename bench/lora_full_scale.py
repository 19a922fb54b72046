"""Prove the full-scale llama2_70b_lora path on the GPUs of one machine: a few steps, measured.

The real Llama-2-70B and GovReport cannot be downloaded here, so this writes GovReport-shaped
synthetic data (3901 / 173 parquet rows of 8192 tokens, the prompt masked with -100 and the last
``--summary`` tokens scored, as in the real files) and runs the unmodified command a user runs,

    trainperf run llama2_70b_lora --scale full --data-dir D --nproc N model.checkpoint=random \
        train.max_steps=S

i.e. Llama-2-70B (fused QKV) built on meta, LoRA r16 on wqkv/wo, FSDP2 over N GPUs with the
frozen base stored in bf16 and fp32 adapters, full activation checkpointing, GBS 8 at micro-batch
1. The step time comes from the MLLOG train_loss timestamps (logged every step at full scale),
the peak memory from the run's own report. Prints one JSON object; writes it to --out too.

    python bench/lora_full_scale.py --nproc 2 --steps 5 --out $OUT/lora70b.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from trainperf.data.govreport import write_parquet
from trainperf.data.prepare import GOVREPORT_DIRNAME


def write_synthetic_govreport(root: Path, *, seq_len: int, summary: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = root / GOVREPORT_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", 3901), ("validation", 173)):
        ids = rng.integers(3, 32000, size=(rows, seq_len), dtype=np.int64)
        labels = ids.copy()
        labels[:, : seq_len - summary] = -100
        write_parquet(
            folder / f"{split}-00000-of-00001.parquet", list(ids.tolist()), list(labels.tolist())
        )


def step_times(log: Path) -> list[float]:
    times = []
    for line in log.read_text().splitlines():
        if ":::MLLOG" not in line:
            continue
        rec = json.loads(line.split(":::MLLOG ", 1)[1])
        if rec["key"] == "train_loss":
            times.append(rec["time_ms"] / 1000)
    return [b - a for a, b in zip(times, times[1:])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--summary", type=int, default=1024, help="scored tokens per row")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lora70b"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="more section.key=value overrides")
    args = ap.parse_args()
    t0 = time.perf_counter()
    write_synthetic_govreport(args.work / "data", seq_len=args.seq, summary=args.summary)
    data_s = time.perf_counter() - t0
    results = args.work / f"results-{os.getpid()}"
    cmd = [
        sys.executable, "-m", "trainperf", "run", "llama2_70b_lora", "--scale", "full",
        "--data-dir", str(args.work / "data"), "--nproc", str(args.nproc),
        "--results", str(results), "--no-progress", "--seed", "1",
        "model.checkpoint=random", f"train.max_steps={args.steps}", *args.extra,
    ]  # fmt: skip
    print(" ".join(cmd), flush=True)
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t1
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-6000:])
    log = results / "result_0.txt"
    deltas = step_times(log) if log.exists() else []
    peak = re.findall(r"peak GPU memory ([\d.]+) GiB", proc.stdout + proc.stderr)
    tokens_per_step = 8 * args.seq
    steady = deltas[1:] or deltas
    report = {
        "command": " ".join(cmd),
        "exit_code": proc.returncode,
        "synthetic_data_s": round(data_s, 1),
        "wall_s": round(wall, 1),
        "step_times_s": [round(d, 3) for d in deltas],
        "median_step_s": round(statistics.median(steady), 3) if steady else None,
        "tokens_per_s_per_gpu": round(tokens_per_step / statistics.median(steady) / args.nproc, 1)
        if steady
        else None,
        "peak_memory_gib_rank0": float(peak[-1]) if peak else None,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
