"""Context parallel's attention cost per rank against full causal attention, on one GPU.

    python bench/cp_attention.py        # Llama 3.1 8B and Llama 2 70B heads, 8192 tokens, bf16

For each shape: forward + backward time of full causal SDPA over 8192 tokens (the backend
trainperf picks: cuDNN first on Hopper) and, for cp = 2 and 4, of one cp rank's share
(``attend_chunks``: its two query chunks over all 8192 keys, FlashAttention's lower-right causal
mask), eager and compiled. Ideal is full / cp. One JSON line per measurement (CUDA events,
median of 20 after 5 warm-ups). The all-gather of K/V is not in these figures.
"""

import json

import torch
import torch.nn.functional as F

from trainperf.parallel.attention import set_attention_backend
from trainperf.parallel.cp import attend_chunks, cp_chunks, cp_positions

SEQ, D = 8192, 128
SHAPES = {"llama3.1-8b": (32, 8), "llama2-70b": (64, 8)}


def time_ms(fn, *args, warmup: int = 5, iters: int = 20, **kwargs) -> float:
    for _ in range(warmup):
        fn(*args, **kwargs)
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args, **kwargs)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def full_step(q, k, v) -> None:
    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).sum().backward()


def share_step(attend, q, k, v, *, cp: int) -> None:
    pos = cp_positions(SEQ, cp=cp, rank=0, device="cuda")
    attend(q[:, :, pos], k, v, chunks=cp_chunks(cp=cp, rank=0)).sum().backward()


def main() -> None:
    set_attention_backend("auto", torch.device("cuda"))
    for name, (hq, hkv) in SHAPES.items():
        q, k, v = (
            torch.randn(1, h, SEQ, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for h in (hq, hkv, hkv)
        )
        base = time_ms(full_step, q, k, v)
        print(json.dumps({"shape": name, "variant": "full causal", "ms": round(base, 3)}))
        for cp in (2, 4):
            for compiled in (False, True):
                attend = torch.compile(attend_chunks) if compiled else attend_chunks
                ms = time_ms(share_step, attend, q, k, v, cp=cp)
                row = {"shape": name, "variant": f"cp{cp} rank share", "compiled": compiled}
                row |= {"ms": round(ms, 3), "ideal_ms": round(base / cp, 3)}
                print(json.dumps(row | {"vs_ideal": round(ms / (base / cp), 2)}), flush=True)


if __name__ == "__main__":
    main()
