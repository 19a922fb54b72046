"""Memory bandwidth of train.master_weights=optimizer's AdamW kernel on one GPU, by launch shape.

One gpt_oss_20b expert tensor (32 x 2880 x 5760 = 531 M elements): float32 master and moments,
bf16 gradient and copy (28 bytes per element moved), timed by CUDA events over 20 launches for
each (BLOCK, num_warps); beside it torch's fused AdamW on a float32 parameter of the same size
(28 bytes too) and a plain device copy (the ceiling). Prints one JSON line per variant and, last,
the fastest shape as {"best": [BLOCK, WARPS]}.

    python3 bench/adamw_kernel.py > adamw_kernel.json
"""

from __future__ import annotations

import json
import math

import torch

from trainperf.train import master as M

N = 32 * 2880 * 5760
SHAPES = [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16), (16384, 32)]


def timed(fn, reps: int = 20) -> float:
    """Seconds per call (median of `reps`, after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    dev = torch.device("cuda")
    master = torch.randn(N, device=dev)
    grad = torch.randn(N, device=dev).bfloat16()
    m, v = torch.zeros(N, device=dev), torch.zeros(N, device=dev)
    out = torch.empty(N, device=dev, dtype=torch.bfloat16)
    scale = torch.tensor(1.5, device=dev)
    hyper = M.StepScalars(beta1=0.9, beta2=0.95, eps=1e-8, decay=1 - 1e-5, step_size=1e-5,
                          bc2_sqrt=math.sqrt(0.05))  # fmt: skip
    moved = N * 28
    results = {}
    for block, warps in SHAPES:
        M.BLOCK, M.WARPS = block, warps
        s = timed(lambda: M.adamw_triton(master, grad, m, v, out, scale, hyper))
        results[(block, warps)] = s
        row = {"kernel": "adamw_triton", "block": block, "warps": warps, "ms": round(s * 1e3, 3)}
        print(json.dumps({**row, "tb_s": round(moved / s / 1e12, 3)}), flush=True)
    p = torch.nn.Parameter(master.clone())
    p.grad = grad.float()
    opt = torch.optim.AdamW([p], lr=1e-5, fused=True)
    opt.grad_scale = scale
    s = timed(opt.step)
    print(json.dumps({"kernel": "torch fused AdamW (fp32 grad)", "ms": round(s * 1e3, 3),
                      "tb_s": round(moved / s / 1e12, 3)}), flush=True)  # fmt: skip
    del opt, p
    src = torch.empty(N * 7, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    s = timed(lambda: dst.copy_(src))
    print(json.dumps({"kernel": "copy (ceiling)", "ms": round(s * 1e3, 3),
                      "tb_s": round(2 * src.numel() * 4 / s / 1e12, 3)}), flush=True)  # fmt: skip
    best = min(results, key=results.get)
    print(json.dumps({"best": list(best)}))


if __name__ == "__main__":
    main()
