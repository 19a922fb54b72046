"""The two loss reductions against HF Transformers' causal-LM loss on the same logits."""

import pytest
import torch

from trainperf.train.loss import count_units, loss_terms

transformers = pytest.importorskip("transformers")


def hf_loss(logits, hf_labels):
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits, hf_labels, vocab_size=logits.shape[-1])


def shifted(hf_labels):
    """Our labels from HF-style (unshifted) labels: position t predicts token t + 1."""
    out = torch.full_like(hf_labels, -100)
    out[:, :-1] = hf_labels[:, 1:]
    return out


def test_sample_reduction_is_hf_eval_loss_at_batch_size_one():
    torch.manual_seed(0)
    B, T, V = 3, 10, 17
    logits = torch.randn(B, T, V)
    hf_labels = torch.randint(0, V, (B, T))
    hf_labels[0, :6] = -100
    hf_labels[1, :2] = -100
    hf_labels[2, :8] = -100
    total, count = loss_terms(logits, shifted(hf_labels), reduction="sample")
    per_sample = [hf_loss(logits[i : i + 1], hf_labels[i : i + 1]) for i in range(B)]
    assert count == B == count_units(shifted(hf_labels), reduction="sample")
    torch.testing.assert_close(total / count, torch.stack(per_sample).mean())


def test_token_reduction_is_hf_loss_over_the_batch():
    torch.manual_seed(1)
    logits = torch.randn(2, 12, 9)
    hf_labels = torch.randint(0, 9, (2, 12))
    total, count = loss_terms(logits, shifted(hf_labels), reduction="token")
    assert count == 2 * 11 == count_units(shifted(hf_labels), reduction="token")
    torch.testing.assert_close(total / count, hf_loss(logits, hf_labels))


def test_unknown_reduction():
    with pytest.raises(ValueError, match="must be one of"):
        loss_terms(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), reduction="mean")
