"""Chunked cross entropy equals the plain one: values and gradients, both reductions."""

from __future__ import annotations

import pytest
import torch

from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.train.loss import ChunkedCrossEntropy, chunked_loss_head, loss_terms


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    cfg = get_llama_config("debug")
    model = Llama(cfg)
    model.init_weights()
    x = torch.randint(0, cfg.vocab_size, (3, 20))
    y = torch.randint(0, cfg.vocab_size, (3, 20))
    y[0, :7] = -100  # a prompt
    y[2] = -100  # a sample with nothing scored
    return model, x, y


def grads_of(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("reduction", ["token", "sample"])
@pytest.mark.parametrize("chunk", [1, 7, 60, 4096])  # one token, uneven, exact, one chunk
def test_chunked_equals_plain(model_and_batch, reduction: str, chunk: int) -> None:
    model, x, y = model_and_batch
    s, c = loss_terms(model(x), y, reduction=reduction)
    ref = grads_of(model, s / c)
    head = chunked_loss_head(y, reduction=reduction, dtype=torch.float32, chunk=chunk)
    s2, c2 = model(x, head=head)
    got = grads_of(model, s2 / c2)
    assert c2.item() == c.item()
    torch.testing.assert_close(s2, s, rtol=1e-6, atol=1e-6)
    for name in ref:  # float32, summed in another order: relative to the tensor's scale
        rel = ((got[name] - ref[name]).abs().max() / ref[name].abs().max()).item()
        assert rel < 1e-5, (name, rel)


def test_bf16_chunked_matches_autocast_logits() -> None:
    """In bf16 the logits are rounded as autocast's F.linear rounds them; grads come back in
    the input dtypes."""
    torch.manual_seed(1)
    h = torch.randn(50, 32, requires_grad=True)
    w = torch.randn(300, 32, requires_grad=True)
    labels = torch.randint(0, 300, (50,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(h, w)
    ref = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
    ones = torch.ones(50)
    got = ChunkedCrossEntropy.apply(h, w, labels, ones, 16, torch.bfloat16, True, None)
    torch.testing.assert_close(got, ref.sum(), rtol=1e-5, atol=1e-4)
    (gh, gw) = torch.autograd.grad(got, (h, w))
    (rh, rw) = torch.autograd.grad(ref.sum(), (h, w))
    assert gh.dtype == h.dtype and gw.dtype == w.dtype
    torch.testing.assert_close(gh, rh, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_compiled_chunks_equal_eager(model_and_batch, reduction: str) -> None:
    """parallel.compile fuses each chunk's loss and gradient; the numbers stay the same."""
    model, x, y = model_and_batch
    eager = chunked_loss_head(y, reduction=reduction, dtype=torch.float32, chunk=16)
    s, c = model(x, head=eager)
    ref = grads_of(model, s / c)
    fused = chunked_loss_head(y, reduction=reduction, dtype=torch.float32, chunk=16, compile=True)
    s2, c2 = model(x, head=fused)
    got = grads_of(model, s2 / c2)
    torch.testing.assert_close(s2, s, rtol=1e-6, atol=1e-6)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-7)


def test_no_grad_forward_for_evaluation(model_and_batch) -> None:
    model, x, y = model_and_batch
    with torch.no_grad():
        s, c = model(x, head=chunked_loss_head(y, reduction="sample", dtype=torch.float32))
        s2, c2 = loss_terms(model(x), y, reduction="sample")
    torch.testing.assert_close(s / c, s2 / c2)


def test_bad_chunk_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk"):
        chunked_loss_head(
            torch.zeros(1, 1, dtype=torch.long), reduction="token", dtype=torch.float32, chunk=0
        )


@pytest.mark.parametrize("out", [torch.float32, torch.bfloat16])
def test_compiled_backward_scaling_is_the_eager_one_bit_for_bit(out: torch.dtype) -> None:
    """Backward turns the saved bf16 gradients into the parameters' dtype times the incoming
    scalar in one compiled pass; the same bits as the eager cast and multiply."""
    from trainperf.train.loss import compiled_scaled_to, scaled_to

    g = torch.randn(64, 48, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    scale = torch.tensor(1 / 3000.0)
    got, ref = compiled_scaled_to()(g, scale, out), scaled_to(g, scale, out)
    assert got.dtype == ref.dtype == out
    assert torch.equal(got, ref)


def test_a_frozen_output_layer_gets_no_gradient_and_the_hidden_one_is_unchanged() -> None:
    """LoRA freezes the output layer: its (V, D) gradient GEMM is skipped, the hidden states'
    gradient is the same as when the weight is trained."""
    torch.manual_seed(2)
    h = torch.randn(40, 16, requires_grad=True)
    w = torch.randn(200, 16)
    labels, ones = torch.randint(0, 200, (40,)), torch.ones(40)
    frozen = ChunkedCrossEntropy.apply(h, w, labels, ones, 16, torch.float32, True, None)
    (g_frozen,) = torch.autograd.grad(frozen, (h,))
    w_trained = w.clone().requires_grad_(True)
    trained = ChunkedCrossEntropy.apply(h, w_trained, labels, ones, 16, torch.float32, True, None)
    g_hidden, g_weight = torch.autograd.grad(trained, (h, w_trained))
    assert torch.equal(g_frozen, g_hidden) and g_weight.shape == w.shape
