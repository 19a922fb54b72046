"""Forward + backward time of causal SDPA at Llama shapes on each PyTorch attention backend.

    python bench/sdpa_backends.py     # Llama 3.1 8B: 32 query, 8 K/V heads, 8192 tokens
    python bench/sdpa_backends.py --heads 64 --kv-heads 8

GQA either through enable_gqa (K/V shared without a copy; not every backend takes it) or with
K/V expanded to all query heads first (repeat_interleave, counted in the time). Prints one JSON
line per backend and variant: milliseconds, attention TFLOP/s (causal: half of 4 B H T^2 D forward,
2.5x that for forward + backward), or the error that backend gave.
"""

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, reps: int = 10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--head-dim", type=int, default=128)
    a = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.bfloat16
    rep = a.heads // a.kv_heads
    q = torch.randn(1, a.heads, a.seq, a.head_dim, device=dev, dtype=dt, requires_grad=True)
    k = torch.randn(1, a.kv_heads, a.seq, a.head_dim, device=dev, dtype=dt, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    grad = torch.randn_like(q)
    flops = 2.5 * 4 * a.heads * a.seq**2 * a.head_dim / 2  # fwd + bwd, causal half

    def step(gqa: bool):
        if gqa:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
        out.backward(grad)

    for backend in (
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
    ):
        for gqa in (True, False):
            row = {"backend": backend.name, "gqa": "enable_gqa" if gqa else "expanded"}
            try:
                with sdpa_kernel([backend]):
                    ms = timed(lambda gqa=gqa: step(gqa))
                row.update(ms=round(ms, 3), tflops=round(flops / ms / 1e9, 1))
            except Exception as exc:  # report which backend refuses which variant
                row["error"] = repr(exc)[:160]
            print(json.dumps(row), flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
