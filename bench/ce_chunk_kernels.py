"""GPU time of one chunk of the chunked cross entropy (trainperf.train.loss.chunk_loss_and_grad)
compiled with and without inductor's split reductions, at gpt-oss/Llama 3.1's vocabulary.

Usage (a CUDA GPU): python bench/ce_chunk_kernels.py [--rows 1024] [--vocab 128256]
Prints one JSON line: milliseconds per chunk for each, and whether their outputs are equal.
"""

from __future__ import annotations

import argparse
import json

import torch

from trainperf.train.loss import chunk_loss_and_grad


def time_ms(fn, *args, reps: int = 50) -> float:
    for _ in range(3):
        fn(*args)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=128256)
    args = ap.parse_args()
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (4 * torch.randn(args.rows, args.vocab, device="cuda", generator=g)).bfloat16()
    labels = torch.randint(0, args.vocab, (args.rows,), device="cuda", generator=g)
    w = torch.ones(args.rows, device="cuda")
    out = {"rows": args.rows, "vocab": args.vocab}
    results = {}
    for split in (True, False):
        fn = torch.compile(chunk_loss_and_grad, fullgraph=True, options={"split_reductions": split})
        results[split] = fn(logits, labels, w, True)
        out[f"ms_split_{split}"] = round(time_ms(fn, logits, labels, w, True), 4)
    (t1, g1), (t2, g2) = results[True], results[False]
    out["loss_rel_diff"] = float((t1 - t2).abs() / t1.abs())
    out["grad_max_abs_diff"] = float((g1.float() - g2.float()).abs().max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
