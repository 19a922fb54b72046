"""A benchmark's task: what the model is trained on and what evaluation measures.

The trainer adds up ``(loss sum, count)`` terms over micro-batches, ranks and evaluation batches
and divides once; a task says how one batch gives its terms (``loss_terms``) and how many units
a batch counts before any forward pass (``count_units``, the divisor of a step). Tasks know the
forward signature of the models they train, never a model class.

- `CausalLMTask` (llama31_8b, llama31_405b, llama2_70b_lora): next-token cross entropy over
  ``(inputs, labels)`` token batches, reduced per token (log perplexity) or per sample (HF
  Trainer's eval_loss), with context parallel's part of every sequence and the chunked cross
  entropy that never builds the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # torch is imported when a task computes, so a spec stays cheap to read
    import torch
    from torch import nn

REDUCTIONS = ("token", "sample")


@dataclass(frozen=True)
class StepLayout:
    """How this rank computes a batch: its share of the sequence and the loss head."""

    dtype: torch.dtype
    """Compute dtype (autocast)."""
    cp: int = 1
    """Context-parallel degree; this rank holds 1/cp of each sequence's tokens."""
    cp_rank: int = 0
    chunked_cross_entropy: bool = False
    """Loss from the hidden states a chunk of tokens at a time (no (B, T, V) logits)."""
    compile: bool = False
    """Compile the chunked loss's kernels too."""


class Task(Protocol):
    metric: str
    """What eval_accuracy measures, in words ('log perplexity', 'eval loss', ...)."""

    def count_units(self, batch: Any) -> float:
        """The count a batch's ``loss_terms`` will return, without a forward pass."""
        ...

    def loss_terms(
        self, model: nn.Module, batch: Any, layout: StepLayout
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, count) of one batch on this rank (under the trainer's autocast)."""
        ...


@dataclass(frozen=True)
class CausalLMTask:
    reduction: str
    """'token' (the mean over every scored token of the set) or 'sample' (each sample's mean
    over its scored tokens, then the mean over samples)."""
    metric: str = "log perplexity"

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"loss reduction {self.reduction!r} must be one of {REDUCTIONS}")

    def count_units(self, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        from trainperf.train.loss import count_units

        return count_units(batch[1], reduction=self.reduction)

    def loss_terms(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], layout: StepLayout
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With context parallel: this rank's part of the sum and 1/cp of the count, so that
        the cp ranks' terms add up to the batch's."""
        from trainperf.parallel.cp import cp_positions
        from trainperf.train.loss import LossTargets, chunked_loss_head, weighted_loss_terms

        inputs, labels = batch
        targets = LossTargets.of(labels, reduction=self.reduction)  # weights of whole sequences
        positions = None
        if layout.cp > 1:
            positions = cp_positions(
                inputs.shape[1], cp=layout.cp, rank=layout.cp_rank, device=inputs.device
            )
            inputs = inputs.index_select(1, positions)
            targets = targets.select(positions, share=1 / layout.cp)
        if layout.chunked_cross_entropy:  # (sum, count) without the (B, T, V) logits
            head = chunked_loss_head(targets, dtype=layout.dtype, compile=layout.compile)
            return model(inputs, positions=positions, head=head)
        logits = model(inputs, positions=positions)  # (B, T, vocab)
        return weighted_loss_terms(logits, targets)
