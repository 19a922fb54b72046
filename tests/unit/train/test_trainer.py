"""The Trainer: its model from a family (random init or a checkpoint), its device, and the
facts of the run header it reports from the model as built."""

import pytest
from rich.console import Console

from trainperf.benchmarks import get_benchmark
from trainperf.config import apply_overrides
from trainperf.data.prepare import prepare_data
from trainperf.train import trainer as T

SPEC = get_benchmark("llama31_8b")


def resolved(cfg):
    return SPEC.resolve(cfg)


def test_missing_gpu_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(T.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is visible; use train.device=cpu"):
        T.local_device("cuda")
    assert T.local_device("auto").type == "cpu"


def test_start_from_hf_checkpoint(tmp_path, small, run):
    """model.checkpoint loads an HF-format checkpoint instead of the random init; a checkpoint
    of another shape is refused before training with the field that differs."""
    from trainperf.models.llama.hf import save_hf_checkpoint

    cfg = small(tmp_path, "train.seed=2", "train.max_steps=3")
    paths = prepare_data(cfg, progress=False)
    source = T.Trainer(
        resolved(cfg), SPEC, paths, ml=None, console=Console(quiet=True)
    ).build_model()
    save_hf_checkpoint(source, tmp_path / "ckpt")
    cfg = apply_overrides(cfg, [f"model.checkpoint={tmp_path / 'ckpt'}", "train.seed=9"])
    loaded = T.Trainer(
        resolved(cfg), SPEC, paths, ml=None, console=Console(quiet=True)
    ).build_model()
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert a.equal(b), name
    result = run(cfg)
    assert result.steps == 3
    bad = apply_overrides(cfg, ["data.vocab_size=1024"])
    with pytest.raises(ValueError, match="vocab_size"):
        T.Trainer(
            resolved(bad),
            SPEC,
            prepare_data(bad, progress=False),
            ml=None,
            console=Console(quiet=True),
        ).build_model()


# --- the run header's disclosure keys (mandatory from ruleset 6.1.0) ----------------------------

LAYOUTS = {
    # overrides -> (linear, attn, comm) precisions on one CPU process
    "fp32": ([], ("fp32", "fp32", "fp32")),
    "bf16": (["train.dtype=bfloat16"], ("bfloat16", "bfloat16", "bfloat16")),
    "bf16_master": (["train.master_dtype=bfloat16"], ("bfloat16", "bfloat16", "bfloat16")),
    "float8": (["parallel.float8=tensorwise"], ("fp8", "fp32", "fp32")),
    "float8_bf16": (
        ["parallel.float8=tensorwise", "train.dtype=bfloat16"],
        ("fp8", "bfloat16", "bfloat16"),
    ),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_header_discloses_the_layout_as_built(tmp_path, name: str, small) -> None:
    pytest.importorskip("torchao")
    from mlperf_logging.mllog import constants as C

    from trainperf.mlperf.events import disclosure_events
    from trainperf.mlperf.logger import MLPerfLogger
    from trainperf.perf.measure import SyntheticData

    overrides, (linear, attn, comm) = LAYOUTS[name]
    cfg = resolved(small(tmp_path, "train.seed=3", "model.flavor=debug", *overrides))
    trainer = T.Trainer(cfg, SPEC, None, ml=MLPerfLogger(None), console=Console(quiet=True))
    trainer.data = SyntheticData(seq_len=32, vocab_size=512, eval_samples=4)
    trainer.setup()
    facts = trainer.facts(platform="1xCPU")
    events = dict(disclosure_events(facts, config_filename="config_0.json"))
    assert events[C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR] == linear
    assert events[C.LOWEST_NUMERICAL_PRECISION_IN_ATTN] == attn
    assert events[C.LOWEST_NUMERICAL_PRECISION_IN_COMM] == comm
    par = cfg.parallel
    assert events[C.TENSOR_PARALLELISM] == par.tp and events[C.CONTEXT_PARALLELISM] == par.cp
    assert events[C.PIPELINE_PARALLELISM] == events[C.EXPERT_PARALLELISM] == 1
    assert events[C.MICRO_BATCH_SIZE] == cfg.train.micro_batch_size == 2
    assert facts.grad_accumulation == 2  # GBS 4 = 1 rank x micro-batch 2 x 2
    assert events[C.CONFIG_FILENAME] == "config_0.json"
    assert (trainer.applied.float8_linears > 0) == (linear == "fp8")


def test_bf16_master_weights_train_in_bf16_with_half_the_memory(tmp_path, small) -> None:
    """train.master_dtype=bfloat16: weights, gradients and AdamW states in bf16 (auto compute
    follows them, even on CPU); the memory estimate counts 2 bytes for each."""
    import torch

    from trainperf.mlperf.logger import MLPerfLogger
    from trainperf.perf.measure import SyntheticData
    from trainperf.perf.memory import estimate_config_memory

    cfg = resolved(small(tmp_path, "train.seed=3", "model.flavor=debug"))
    bf16 = apply_overrides(cfg, ["train.master_dtype=bfloat16"])
    trainer = T.Trainer(bf16, SPEC, None, ml=MLPerfLogger(None), console=Console(quiet=True))
    trainer.data = SyntheticData(seq_len=32, vocab_size=512, eval_samples=4)
    trainer.setup()
    assert trainer.dtype == torch.bfloat16
    losses = [float(trainer.train_step()) for _ in range(3)]
    assert all(p.dtype == torch.bfloat16 for p in trainer.model.parameters())
    states = [v for s in trainer.optimizer.state.values() for v in s.values() if v.ndim]
    assert states and all(v.dtype == torch.bfloat16 for v in states)
    assert all(torch.isfinite(torch.tensor(x)) for x in losses)
    shape = trainer.family.shape(trainer.model_cfg)
    full, half = (estimate_config_memory(c, shape, world=1) for c in (cfg, bf16))
    assert half.weights_gib == pytest.approx(full.weights_gib / 2)
    assert half.optimizer_gib == pytest.approx(full.optimizer_gib / 2)
    with pytest.raises(ValueError, match="train.master_dtype=bfloat16 computes in bf16"):
        apply_overrides(cfg, ["train.master_dtype=bfloat16", "train.dtype=float32"])
