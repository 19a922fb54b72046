"""Cross entropy with the reductions the benchmarks score with.

Every batch is ``(inputs, labels)`` of shape (B, T) where ``labels[b, t]`` is the token to predict
after ``inputs[b, :t + 1]``, or -100 where nothing is scored (prompt tokens, padding).

- ``"token"`` (llama31_8b log perplexity): the mean over every scored token of the whole set.
- ``"sample"`` (llama2_70b_lora eval_loss): each sample's mean over its scored tokens, then the
  mean over samples; this is what HF ``Trainer`` reports with one sample per device and step.

``loss_terms`` returns a sum and a count so that micro-batches, ranks and evaluation batches can be
added up before the one division that gives the mean.

``ChunkedCrossEntropy`` gives the same per-token values straight from the final hidden states and
the output weight, a chunk of tokens at a time: the (B, T, V) logits (and their float32 copy and
gradient) never exist at once. For Llama 3.1 at 8192 tokens and a 128,256 vocabulary those are
2 GiB in bf16 plus 4 GiB in float32 per sample, and 3 more tensors of that size in backward.
"""

from __future__ import annotations

from collections.abc import Callable

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
    return reduce_per_token(per_token, labels, reduction=reduction)


def reduce_per_token(
    per_token: torch.Tensor, labels: torch.Tensor, *, reduction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) from per-token cross entropy (B, T), 0 where labels are IGNORE_INDEX."""
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


class ChunkedCrossEntropy(torch.autograd.Function):
    """sum_i w_i * CE(hidden_i @ weight.T, label_i), without materialising all the logits.

    A chunk of ``chunk`` tokens at a time: logits = hidden_c @ weight.T in ``dtype`` (as
    autocast's F.linear computes them), log-sum-exp and the label's logit in float32. The loss
    is the last operation of the step, so its gradients are computed right there in the
    forward, chunk by chunk: grad_logits = (softmax - onehot) * w, then grad_hidden and
    grad_weight (accumulated in float32, stored in the weight's dtype); backward only scales them
    by the incoming scalar. No logits are recomputed and none are kept: peak extra memory is one
    chunk's float32 logits (512 MiB at chunk 1024, V 128,256) plus the weight's gradient.
    Per-token weights w carry the reduction (see ``chunked_loss_head``); labels of IGNORE_INDEX
    contribute nothing. Without ``with_grad`` (evaluation) only the loss is computed.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, w, chunk: int, dtype: torch.dtype, with_grad: bool):
        # hidden (N, D), weight (V, D), labels (N,), w (N,) float32 -> scalar float32
        wt = weight.to(dtype)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if with_grad else None
        grad_weight = torch.zeros(weight.shape, device=weight.device) if with_grad else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk].to(dtype)
            lab, wc = labels[start : start + chunk], w[start : start + chunk]
            logits = (h @ wt.t()).float()  # (n, V)
            ce = F.cross_entropy(logits, lab, ignore_index=IGNORE_INDEX, reduction="none")
            total += (ce * wc).sum()
            if not with_grad:
                continue
            grad = torch.softmax(logits, dim=-1)  # d CE / d logits = softmax - onehot
            del logits
            scored = lab != IGNORE_INDEX
            rows = torch.arange(lab.shape[0], device=lab.device)
            grad[rows, lab.clamp(min=0)] -= scored.float()
            grad *= (wc * scored).unsqueeze(1)
            grad = grad.to(dtype)
            grad_hidden[start : start + chunk] = grad @ wt
            grad_weight += (grad.t() @ h).float()
        if with_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_total, grad_weight * grad_total, None, None, None, None, None


def token_weights(labels: torch.Tensor, *, reduction: str) -> torch.Tensor:
    """w (B, T) such that sum(w * per-token CE) is ``reduce_per_token``'s sum."""
    scored = (labels != IGNORE_INDEX).float()  # (B, T)
    if reduction == "token":
        return scored
    if reduction == "sample":
        return scored / scored.sum(dim=1, keepdim=True).clamp(min=1.0)
    raise ValueError(f"loss reduction {reduction!r} must be one of {REDUCTIONS}")


def chunked_loss_head(
    labels: torch.Tensor, *, reduction: str, dtype: torch.dtype, chunk: int = 1024
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A ``head`` for ``Llama.forward``: (hidden (B, T, D), output weight (V, D)) -> (sum, count).

    The same values as ``loss_terms(model(tokens), labels)``, through ``ChunkedCrossEntropy``.
    """
    if chunk < 1:
        raise ValueError(f"cross-entropy chunk({chunk}) must be >= 1 tokens")
    w = token_weights(labels, reduction=reduction)
    scored = labels != IGNORE_INDEX
    count = scored.float().sum() if reduction == "token" else scored.any(dim=1).float().sum()

    def head(hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = hidden.shape
        with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
        loss_sum = ChunkedCrossEntropy.apply(
            hidden.reshape(B * T, D),
            weight,
            labels.reshape(B * T),
            w.reshape(B * T),
            chunk,
            dtype,
            with_grad,
        )
        return loss_sum, count

    return head
