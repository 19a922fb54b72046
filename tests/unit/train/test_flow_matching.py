"""FlowMatchingTask: the flux1 reference's rectified-flow loss, from the batch's own draws."""

import torch
from torch import nn

from trainperf.models.flux.model import Flux, get_flux_config, unpack_latents
from trainperf.train.tasks import FlowMatchingTask, StepLayout

SHIFT, SCALE = 0.1159, 0.3611  # FLUX.1-schnell autoencoder (torchtitan flux toml)


def _batch(b: int = 3, c: int = 16, hw: int = 8, tokens: int = 8, dim: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "mean": torch.randn(b, c, hw, hw, generator=g),
        "logvar": torch.randn(b, c, hw, hw, generator=g) - 3,
        "eps": torch.randn(b, c, hw, hw, generator=g),
        "noise": torch.randn(b, c, hw, hw, generator=g),
        "t": torch.rand(b, generator=g),
        "t5": torch.randn(b, tokens, dim, generator=g),
        "clip": torch.randn(b, dim, generator=g),
    }


class Recorder(nn.Module):
    """Returns a fixed prediction and keeps what the task passed in."""

    def __init__(self, pred: torch.Tensor) -> None:
        super().__init__()
        self.pred = pred

    def forward(self, img, img_ids, txt, txt_ids, timesteps, y):  # the Flux signature
        self.seen = (img, img_ids, txt, txt_ids, timesteps, y)
        return self.pred


def test_loss_is_the_per_sample_mse_to_the_velocity() -> None:
    batch = _batch()
    pred_latent = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    from trainperf.models.flux.model import pack_latents

    model = Recorder(pack_latents(pred_latent))
    loss_sum, count = FlowMatchingTask().loss_terms(model, batch, StepLayout(torch.float32))
    # by hand, in the reference's unpacked layout
    z = batch["mean"] + torch.exp(0.5 * batch["logvar"]) * batch["eps"]
    x0 = (z - SHIFT) * SCALE
    t = batch["t"].view(-1, 1, 1, 1)
    x_t = (1 - t) * x0 + t * batch["noise"]
    want = ((pred_latent - (batch["noise"] - x0)) ** 2).mean(dim=(1, 2, 3)).sum()
    torch.testing.assert_close(loss_sum, want, rtol=1e-6, atol=0)
    assert count.item() == 3
    img, img_ids, txt, txt_ids, timesteps, y = model.seen
    torch.testing.assert_close(unpack_latents(img, 8, 8), x_t, rtol=0, atol=0)
    assert img_ids.shape == (16, 3) and txt_ids.shape == (8, 3) and not txt_ids.any()
    assert timesteps is batch["t"] and y is batch["clip"] and txt is batch["t5"]


def test_terms_add_up_over_micro_batches() -> None:
    """Sum over samples, count in samples: split batches give the whole batch's mean."""
    torch.manual_seed(0)
    model = Flux(get_flux_config("flux-tiny"))
    model.init_weights()
    with torch.no_grad():  # non-zero output layers, so the prediction depends on the input
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    task, layout = FlowMatchingTask(), StepLayout(torch.float32)
    batch = _batch(b=4)
    whole = task.loss_terms(model, batch, layout)
    halves = [
        task.loss_terms(model, {k: v[i : i + 2] for k, v in batch.items()}, layout) for i in (0, 2)
    ]
    torch.testing.assert_close(whole[0], halves[0][0] + halves[1][0], rtol=1e-5, atol=0)
    assert whole[1] == halves[0][1] + halves[1][1] == task.count_units(batch)


def test_zero_initialised_model_predicts_zero() -> None:
    """At the reference's initialisation the output layer is 0: loss = E|noise - x0|^2."""
    model = Flux(get_flux_config("flux-tiny"))
    model.init_weights()
    batch = _batch()
    loss_sum, count = FlowMatchingTask().loss_terms(model, batch, StepLayout(torch.float32))
    z = batch["mean"] + torch.exp(0.5 * batch["logvar"]) * batch["eps"]
    x0 = (z - SHIFT) * SCALE
    want = ((batch["noise"] - x0) ** 2).mean(dim=(1, 2, 3)).sum()
    torch.testing.assert_close(loss_sum, want, rtol=1e-6, atol=0)
