"""A benchmark's task: what the model is trained on and what evaluation measures.

The trainer adds up ``(loss sum, count)`` terms over micro-batches, ranks and evaluation batches
and divides once; a task says how one batch gives its terms (``loss_terms``) and how many units
a batch counts before any forward pass (``count_units``, the divisor of a step). Tasks know the
forward signature of the models they train, never a model class.

- `CausalLMTask` (llama31_8b, llama31_405b, llama2_70b_lora): next-token cross entropy over
  ``(inputs, labels)`` token batches, reduced per token (log perplexity) or per sample (HF
  Trainer's eval_loss), with context parallel's part of every sequence and the chunked cross
  entropy that never builds the logits.
- `FlowMatchingTask` (flux1): the rectified-flow velocity loss on VAE latents, the mean squared
  error per sample; the evaluation at the validation set's fixed timesteps reduces the same way.
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


@dataclass(frozen=True)
class FlowMatchingTask:
    """Rectified flow on VAE latents, as the flux1 reference trains and evaluates (torchtitan
    flux ``train_step`` / ``eval_step``; mlcommons/training ``text_to_image`` README):

    - the clean latent is a sample of the VAE posterior, ``z = mean + exp(logvar / 2) * eps``,
      scaled ``x0 = (z - shift) * scale`` (the FLUX.1 autoencoder's 0.1159 and 0.3611);
    - ``x_t = (1 - t) x0 + t noise``, the model predicts the velocity ``noise - x0`` from the
      packed ``x_t``, the text tokens, the pooled text vector and t;
    - a sample's loss is the mean squared error over its latent elements, the batch's terms
      are (sum over samples, number of samples).

    The batch (``trainperf.data.flux``) carries every random draw (eps, noise, t, the dropped
    captions), made per sample from the run seed, so the loss of a sample does not depend on the
    ranks or micro-batches it was computed on. The validation set holds as many samples of each
    of its 8 timesteps, so the mean over samples is the reference's mean over timesteps of the
    per-timestep means.
    """

    shift: float = 0.1159
    scale: float = 0.3611
    metric: str = "eval loss"

    def count_units(self, batch: dict[str, torch.Tensor]) -> float:
        return float(batch["t"].shape[0])

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], layout: StepLayout
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        from trainperf.models.flux.model import (
            image_position_ids,
            pack_latents,
            text_position_ids,
        )

        if layout.cp > 1:
            raise ValueError("flux1 has no context parallel; set parallel.cp=1")
        z = batch["mean"] + torch.exp(0.5 * batch["logvar"]) * batch["eps"]
        x0 = (z - self.shift) * self.scale  # (B, C, H, W) float32
        noise, t = batch["noise"], batch["t"]
        tt = t.view(-1, 1, 1, 1)
        x_t = (1.0 - tt) * x0 + tt * noise
        height, width = x0.shape[-2:]
        device = x0.device
        pred = model(
            pack_latents(x_t),
            image_position_ids(height, width, device=device),
            batch["t5"],
            text_position_ids(batch["t5"].shape[1], device=device),
            t,
            batch["clip"],
        )
        target = pack_latents(noise - x0)
        per_sample = (pred.float() - target).pow(2).mean(dim=(1, 2))
        # torch.full fills on the device; torch.tensor(..., device=cuda) would copy from the
        # host and make it wait for the GPU's queue in the middle of every step
        return per_sample.sum(), torch.full((), float(t.shape[0]), device=device)
