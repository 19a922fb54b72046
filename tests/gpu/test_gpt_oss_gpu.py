"""On a CUDA GPU: the gpt-oss kernels that only run there equal their CPU definitions.

- Attention: FlexAttention with its log-sum-exp turned into the sinks' renormalisation
  (out x sigmoid(lse - sink)), causal and sliding (gpt-oss's 128 keys), against the explicit
  softmax over [scores, sink] (the CPU path, HF's eager), outputs and q/k/v/sink gradients, at
  gpt-oss-20b's heads (64 query, 8 K/V, head_dim 64), 1024 tokens. Float32 inputs; flex computes
  in float32 too, so the bound is float32 rounding over 1024-key sums (~1e-5 relative).
- Experts: bf16 grouped GEMM (`F.grouped_mm`) against one float32 matmul per expert, with
  empty experts; bf16 rounding of inputs and outputs bounds it (~1e-2 relative).
"""

from __future__ import annotations

import pytest
import torch

from trainperf.models.gpt_oss.model import SinkAttention, grouped_mm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
SEQ, HQ, HKV, D = 1024, 64, 8, 64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("window", [None, 128])
@pytest.mark.parametrize("sinks", [True, False])
def test_flex_attention_with_sinks_matches_the_explicit_softmax(window, sinks) -> None:
    torch.manual_seed(0)
    shapes = [(1, HQ, SEQ, D), (1, HKV, SEQ, D), (1, HKV, SEQ, D)]
    q, k, v = (torch.randn(s, device="cuda").requires_grad_() for s in shapes)
    sink = (torch.randn(HQ, device="cuda") * 2).requires_grad_() if sinks else None
    kernel = SinkAttention(window)
    inputs = [t for t in (q, k, v, sink) if t is not None]
    flex = kernel(q, k, v, sink)
    explicit = kernel._explicit(q, k, v, sink)
    assert rel_err(flex, explicit) < 1e-5
    grad = torch.randn_like(flex)
    got = torch.autograd.grad(flex, inputs, grad)
    want = torch.autograd.grad(explicit, inputs, grad)
    for name, g, w in zip("qkvs", got, want):
        assert rel_err(g, w) < 1e-4, name


def test_grouped_mm_matches_a_matmul_per_expert() -> None:
    torch.manual_seed(0)
    E, dim, out = 8, 2880, 5760
    counts = torch.tensor([300, 0, 17, 1024, 0, 5, 700, 2], device="cuda")
    x = torch.randn(int(counts.sum()), dim, device="cuda")
    w = torch.randn(E, dim, out, device="cuda") / dim**0.5
    offs = counts.cumsum(0, dtype=torch.int32)
    got = grouped_mm(x.bfloat16(), w.bfloat16(), offs)
    want = torch.cat([part @ w[e] for e, part in enumerate(x.split(counts.tolist()))])
    assert got.dtype == torch.bfloat16 and rel_err(got, want) < 1e-2
