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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainperf.train.tasks import REDUCTIONS

IGNORE_INDEX = -100


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


def chunk_loss_and_grad(
    logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: (sum_i w_i * CE_i, d/d logits in logits' dtype or None); logits (n, V).

    Log-sum-exp and softmax in float32. With ``compile`` on, ``chunked_loss_head`` runs this
    through torch.compile, which fuses it into a couple of passes over the chunk's logits.
    """
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)  # (n,)
    scored = labels != IGNORE_INDEX
    index = labels.clamp(min=0).unsqueeze(1)  # (n, 1)
    ce = torch.where(scored, lse - x.gather(1, index).squeeze(1), 0.0)
    total = (ce * w).sum()
    if not with_grad:
        return total, None
    # d CE / d logits = softmax - onehot(label), weighted; zero for unscored tokens
    scale = (w * scored).unsqueeze(1)  # (n, 1)
    grad = torch.exp(x - lse.unsqueeze(1)).scatter_add(1, index, -scored.float().unsqueeze(1))
    return total, (grad * scale).to(logits.dtype)


_compiled_chunk_loss_and_grad = None


def compiled_chunk_loss_and_grad():
    """``chunk_loss_and_grad`` through torch.compile (built once per process)."""
    global _compiled_chunk_loss_and_grad
    if _compiled_chunk_loss_and_grad is None:
        _compiled_chunk_loss_and_grad = torch.compile(chunk_loss_and_grad, fullgraph=True)
    return _compiled_chunk_loss_and_grad


def scaled_to(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in `dtype` times `scale` (PyTorch computes the product in float32, then rounds it to
    `dtype`)."""
    return x.to(dtype) * scale


_compiled_scaled_to = None


def compiled_scaled_to():
    """``scaled_to`` through torch.compile: one pass (read x, write the result) instead of a
    cast and a multiply (built once per process)."""
    global _compiled_scaled_to
    if _compiled_scaled_to is None:
        _compiled_scaled_to = torch.compile(scaled_to, fullgraph=True, dynamic=False)
    return _compiled_scaled_to


class ChunkedCrossEntropy(torch.autograd.Function):
    """sum_i w_i * CE(hidden_i @ weight.T, label_i), without materialising float32 logits.

    A chunk of ``chunk`` tokens at a time: logits = hidden_c @ weight.T in ``dtype`` (as
    autocast's F.linear computes them), log-sum-exp, softmax and the gradient in float32
    (``chunk_fn``, by default ``chunk_loss_and_grad``). The loss is the last operation of the
    step, so its gradients are computed right there in the forward: each chunk's d/d logits is
    stored in ``dtype`` into one (N, V) buffer, the same tensor plain autocast training keeps,
    and after the loop grad_hidden = G @ W and grad_weight = G.T @ hidden are one GEMM each, as
    in plain training (float32 accumulation inside the GEMM, one rounding). Backward only scales
    them by the incoming scalar. Extra memory: G in ``dtype`` plus one chunk's float32 logits;
    never the (N, V) float32 logits, their softmax or their gradient. Per-token weights w carry
    the reduction (see ``chunked_loss_head``); labels of IGNORE_INDEX contribute nothing.
    Without ``with_grad`` (evaluation) only the loss is computed.
    """

    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        labels,
        w,
        chunk: int,
        dtype: torch.dtype,
        with_grad: bool,
        chunk_fn,
        scale_fn=None,
    ):
        # hidden (N, D), weight (V, D), labels (N,), w (N,) float32 -> scalar float32
        chunk_fn = chunk_fn or chunk_loss_and_grad
        wt, h = weight.to(dtype), hidden.to(dtype)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        n = hidden.shape[0]
        grads = (
            torch.empty((n, weight.shape[0]), device=hidden.device, dtype=dtype)
            if with_grad
            else None
        )
        for start in range(0, n, chunk):
            logits = h[start : start + chunk] @ wt.t()  # (chunk, V) in dtype
            part, grad = chunk_fn(
                logits, labels[start : start + chunk], w[start : start + chunk], with_grad
            )
            total += part
            if with_grad:
                grads[start : start + chunk] = grad
        if with_grad:
            # kept in the GEMMs' dtype; backward casts and scales them in one pass. A frozen
            # output layer (LoRA) gets no gradient: its GEMM is skipped.
            need_hidden, need_weight = ctx.needs_input_grad[:2]
            ctx.save_for_backward(
                grads @ wt if need_hidden else None,  # (N, D)
                grads.t() @ h if need_weight else None,  # (V, D)
            )
            ctx.dtypes = (hidden.dtype, weight.dtype)
            ctx.scale_fn = scale_fn or scaled_to
        return total

    @staticmethod
    def backward(ctx, grad_total):
        scale = grad_total.float()
        grads = [
            None if g is None else ctx.scale_fn(g, scale, dtype)
            for g, dtype in zip(ctx.saved_tensors, ctx.dtypes)
        ]
        return *grads, *([None] * 7)


def token_weights(labels: torch.Tensor, *, reduction: str) -> torch.Tensor:
    """w (B, T) such that sum(w * per-token CE) is ``reduce_per_token``'s sum."""
    scored = (labels != IGNORE_INDEX).float()  # (B, T)
    if reduction == "token":
        return scored
    if reduction == "sample":
        return scored / scored.sum(dim=1, keepdim=True).clamp(min=1.0)
    raise ValueError(f"loss reduction {reduction!r} must be one of {REDUCTIONS}")


@dataclass(frozen=True)
class LossTargets:
    """What the loss of one batch needs: labels (B, T), token weights w (B, T) with
    sum(w * per-token CE) the batch's loss sum, and the count that sum is divided by (a 0-d
    float32 tensor): ``reduce_per_token``'s two terms, ready to be cut along the sequence."""

    labels: torch.Tensor
    weights: torch.Tensor
    count: torch.Tensor

    @classmethod
    def of(cls, labels: torch.Tensor, *, reduction: str) -> LossTargets:
        scored = labels != IGNORE_INDEX
        count = scored.float().sum() if reduction == "token" else scored.any(dim=1).float().sum()
        return cls(labels, token_weights(labels, reduction=reduction), count)

    def select(self, positions: torch.Tensor, *, share: float) -> LossTargets:
        """The targets of the tokens at `positions` (dim 1), with `share` of the count: for
        context parallel, whose ranks' sums (and count shares) add up to the batch's."""
        return LossTargets(
            self.labels.index_select(1, positions),
            self.weights.index_select(1, positions),
            self.count * share,
        )


def weighted_loss_terms(
    logits: torch.Tensor, targets: LossTargets
) -> tuple[torch.Tensor, torch.Tensor]:
    """``loss_terms`` from the logits (B, T, V) and prepared targets: (sum(w * CE), count)."""
    B, T, V = logits.shape
    per_token = F.cross_entropy(
        logits.float().reshape(B * T, V),
        targets.labels.reshape(B * T),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return (per_token * targets.weights.reshape(B * T)).sum(), targets.count


def chunked_loss_head(
    labels: torch.Tensor | LossTargets,
    *,
    reduction: str | None = None,
    dtype: torch.dtype,
    chunk: int = 1024,
    compile: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A ``head`` for ``Llama.forward``: (hidden (B, T, D), output weight (V, D)) -> (sum, count).

    The same values as ``loss_terms(model(tokens), labels)``, through ``ChunkedCrossEntropy``;
    with ``compile`` each chunk's loss and gradient run as torch.compile-fused kernels.
    `labels` with `reduction`, or prepared ``LossTargets`` (reduction None).
    """
    if chunk < 1:
        raise ValueError(f"cross-entropy chunk({chunk}) must be >= 1 tokens")
    if isinstance(labels, LossTargets):
        assert reduction is None, "LossTargets carry their reduction in their weights"
        targets = labels
    else:
        assert reduction is not None, "give the reduction of the labels"
        targets = LossTargets.of(labels, reduction=reduction)
    labels, w, count = targets.labels, targets.weights, targets.count

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
            compiled_chunk_loss_and_grad() if compile else None,
            compiled_scaled_to() if compile else None,
        )
        return loss_sum, count

    return head
