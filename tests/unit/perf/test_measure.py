"""What `trainperf perf` measures on when it has no data: synthetic token batches."""

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.perf.measure import SyntheticData, describe_features


def test_synthetic_data_is_the_same_per_index_and_scores_every_token() -> None:
    data = SyntheticData(seq_len=16, vocab_size=50, eval_samples=4)
    inputs, labels = data.train_batch([3, 4])
    again, _ = data.train_batch([3])
    assert inputs.shape == labels.shape == (2, 16) and int(inputs.max()) < 50
    assert (inputs[0] == again[0]).all() and not (inputs[0] == inputs[1]).all()
    assert (inputs[:, 1:] == labels[:, :-1]).all()


def test_features_in_words() -> None:
    cfg = apply_overrides(
        get_default_config("llama31_8b", "full"),
        ["parallel.compile=true", "parallel.float8=tensorwise", "parallel.cp=2"],
    )
    assert describe_features(cfg) == "cp 2, AC none, compile, float8 tensorwise, chunked CE"


def test_synthetic_latents_feed_the_flux_task() -> None:
    import torch

    from trainperf.models.flux.model import Flux, get_flux_config
    from trainperf.perf.measure import SyntheticLatents
    from trainperf.train.tasks import FlowMatchingTask, StepLayout

    cfg = get_flux_config("flux-tiny")
    data = SyntheticLatents(cfg, eval_samples=8)
    batch = data.train_batch([1, 2, 1 + SyntheticLatents.POOL])
    assert batch["mean"].shape == (3, 16, 8, 8) and batch["t5"].shape == (3, 8, 32)
    assert torch.equal(batch["t5"][0], batch["t5"][2])  # the pool serves every index
    model = Flux(cfg)
    model.init_weights()
    loss, count = FlowMatchingTask().loss_terms(model, batch, StepLayout(torch.float32))
    assert count.item() == 3 and loss.item() > 0
    flux = get_default_config("flux1", "proxy")
    assert describe_features(flux) == "AC none"  # no cross entropy in a flow-matching loss
