"""On a CUDA GPU: context-parallel attention's chunks equal full causal attention.

Llama 3.1 8B attention shapes (32 query heads, 8 K/V heads, head_dim 128), 4096 tokens, bf16:
each cp rank's two query chunks over the whole K/V (what the all-gather hands it) through
FlashAttention's lower-right causal mask, eager and compiled, against full causal SDPA's rows
of that rank, and the K/V gradients summed over the ranks against full attention's. One process:
the all-gather itself is tested on gloo (tests/distributed) and runs over NCCL in `perf`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainperf.parallel.cp import attend_chunks, cp_chunks, cp_positions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
SEQ, HQ, HKV, D = 4096, 32, 8, 128


def _inputs():
    torch.manual_seed(0)
    make = lambda h: torch.randn(1, h, SEQ, D, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    return [t.requires_grad_() for t in (make(HQ), make(HKV), make(HKV))]


@pytest.mark.parametrize("cp", [2, 4])
@pytest.mark.parametrize("compiled", [False, True])
def test_cp_chunks_match_full_causal_attention(cp: int, compiled: bool) -> None:
    q, k, v = _inputs()
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    grad_out = torch.randn_like(full)
    ref = torch.autograd.grad(full, (q, k, v), grad_out)
    attend = torch.compile(attend_chunks, fullgraph=True) if compiled else attend_chunks
    grads = [torch.zeros_like(t, dtype=torch.float32) for t in (q, k, v)]
    for rank in range(cp):
        pos = cp_positions(SEQ, cp=cp, rank=rank, device="cuda")
        out = attend(q[:, :, pos], k, v, chunks=cp_chunks(cp=cp, rank=rank))
        torch.testing.assert_close(out, full[:, :, pos], atol=2e-2, rtol=2e-2)
        for g, new in zip(grads, torch.autograd.grad(out, (q, k, v), grad_out[:, :, pos])):
            g += new.float()
    for name, g, r in zip("qkv", grads, ref):
        err = (g - r.float()).abs().max() / r.float().abs().max()
        assert err < 2e-2, f"d{name}: {err:.3g}"
