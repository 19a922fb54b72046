"""Cross entropy with the reductions the benchmarks score with.

Every batch is ``(inputs, labels)`` of shape (B, T) where ``labels[b, t]`` is the token to predict
after ``inputs[b, :t + 1]``, or -100 where nothing is scored (prompt tokens, padding).

- ``"token"`` (llama31_8b log perplexity): the mean over every scored token of the whole set.
- ``"sample"`` (llama2_70b_lora eval_loss): each sample's mean over its scored tokens, then the
  mean over samples; this is what HF ``Trainer`` reports with one sample per device and step.

``loss_terms`` returns a sum and a count so that micro-batches, ranks and evaluation batches can be
added up before the one division that gives the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
REDUCTIONS = ("token", "sample")


def loss_terms(
    logits: torch.Tensor, labels: torch.Tensor, *, reduction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of the loss of one batch: logits (B, T, V), labels (B, T).

    token: (sum of the scored tokens' cross entropy, number of scored tokens);
    sample: (sum over samples of each one's mean, number of samples with a scored token).
    Computed in float32 whatever the logits' dtype; the count is a float32 tensor too.
    """
    B, T, V = logits.shape
    per_token = F.cross_entropy(
        logits.float().reshape(B * T, V),
        labels.reshape(B * T),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(B, T)
    scored = (labels != IGNORE_INDEX).float()  # (B, T)
    if reduction == "token":
        return per_token.sum(), scored.sum()
    if reduction == "sample":
        n = scored.sum(dim=1)  # (B,)
        has = n > 0
        means = per_token.sum(dim=1) / n.clamp(min=1.0)
        return (means * has).sum(), has.float().sum()
    raise ValueError(f"loss reduction {reduction!r} must be one of {REDUCTIONS}")


def count_units(labels: torch.Tensor, *, reduction: str) -> float:
    """The count ``loss_terms`` would return for these labels, without a forward pass."""
    scored = labels != IGNORE_INDEX
    if reduction == "token":
        return float(scored.sum())
    return float(scored.any(dim=1).sum())
