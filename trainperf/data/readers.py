"""What a run reads: (inputs, labels) batches of a benchmark's training and eval sets.

Both kinds of data give ``(inputs, labels)`` pairs of shape (B, T), labels already shifted to the
next token and -100 where nothing is scored, so the trainer and the loss do not care which
benchmark they serve:

- ``PretrainData`` (llama31_8b, llama31_405b): Megatron GPTDataset windows of seq_len + 1 tokens,
  from one file or a BlendedDataset of several (llama31_405b); every token is scored.
- ``FinetuneData`` (llama2_70b_lora): GovReport-format rows (parquet or .npy), one sample per
  row, each row once per epoch in a seeded order; only the summary tokens are scored.

A benchmark spec names its reader (`read_pretraining`, `read_finetuning`); torch and the format
modules are imported when a reader is built, so reading a spec stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trainperf.config import Config
from trainperf.data.prepare import DataPaths, index_cache_dir

if TYPE_CHECKING:
    import torch

    from trainperf.data.blended import BlendedTrainDataset
    from trainperf.data.gpt_dataset import GPTTrainDataset
    from trainperf.data.indexed import IndexedDataset

Batch = tuple["torch.Tensor", "torch.Tensor"]  # inputs (B, T) int64, labels (B, T) int64


class BenchmarkData(Protocol):
    train_samples: int
    """MLLOG train_samples: samples in one pass over the training data."""
    eval_size: int
    """Samples in one evaluation."""

    def train_batch(self, indices: Sequence[int]) -> Any: ...

    def eval_batch(self, indices: Sequence[int]) -> Any: ...

    def begin_eval(self) -> None:
        """Called before each evaluation pass (flux1 draws fresh evaluation noise per pass)."""
        ...


def _split(batch: torch.Tensor) -> Batch:
    return batch[:, :-1], batch[:, 1:]


class PretrainData:
    """Pretraining on Megatron indexed datasets (C4 or the built-in corpus): one prefix read as
    megatron's GPTDataset, several (llama31_405b: en_6 + en_7) as its BlendedDataset."""

    def __init__(self, cfg: Config, paths: DataPaths, *, vocab_size: int | None = None) -> None:
        from trainperf.data.gpt_dataset import GPTEvalDataset
        from trainperf.data.indexed import IndexedDataset

        t = cfg.train
        self.vocab_size = vocab_size
        train_tokens = [IndexedDataset(p) for p in paths.train_prefixes or (paths.train_prefix,)]
        valid_tokens = IndexedDataset(paths.valid_prefix)
        self.train = _train_dataset(cfg, train_tokens, cache_dir=index_cache_dir(paths))
        self.eval = GPTEvalDataset(valid_tokens, seq_len=t.seq_len, num_samples=t.eval_samples)
        # sequences in one pass over the training tokens (every file of a blend)
        self.train_samples = sum((ds.num_tokens - 1) // t.seq_len for ds in train_tokens)
        self.eval_size = t.eval_samples

    def train_batch(self, indices: Sequence[int]) -> Batch:
        from trainperf.data.gpt_dataset import get_batch

        batch = get_batch(self.train, indices)  # type: ignore[arg-type]  # a blend reads alike
        return _split(self._checked(batch, lambda row: self._train_source(int(indices[row]))))

    def eval_batch(self, indices: Sequence[int]) -> Batch:
        from trainperf.data.gpt_dataset import get_batch

        return _split(self._checked(get_batch(self.eval, indices), lambda _: self.eval.dataset))

    def begin_eval(self) -> None:
        """Nothing: every evaluation reads the same fixed windows."""

    def _train_source(self, i: int) -> IndexedDataset:
        from trainperf.data.blended import BlendedTrainDataset

        if isinstance(self.train, BlendedTrainDataset):
            return self.train.source(i)  # a blend: the file sample i comes from
        return self.train.dataset

    def _checked(
        self, batch: torch.Tensor, source: Callable[[int], IndexedDataset]
    ) -> torch.Tensor:
        # On the CPU batch, before it reaches the embedding (where it would be a device assert).
        top = int(batch.max())
        if self.vocab_size is not None and top >= self.vocab_size:
            row = int(batch.amax(dim=1).argmax())  # source(row): the file the bad sample is from
            raise ValueError(
                f"{source(row).bin_path} holds token id {top}, outside the model's "
                f"vocabulary of {self.vocab_size}: the data was tokenized for another model; "
                "prepare it with the benchmark's tokenizer or pick the matching model.flavor"
            )
        return batch


def _train_dataset(
    cfg: Config, tokens: list[IndexedDataset], *, cache_dir: Path
) -> GPTTrainDataset | BlendedTrainDataset:
    """The training windows: what the reference's PreTrainingDataModule asks megatron for,
    max_steps x GBS samples, from one file or from a blend of several with equal weights (the
    llama31_405b reference's ``["50", en_6, "50", en_7]``)."""
    from trainperf.data.blended import BlendedTrainDataset
    from trainperf.data.gpt_dataset import GPTTrainDataset

    t = cfg.train
    num_samples = t.max_steps * t.global_batch_size
    if len(tokens) == 1:
        return GPTTrainDataset(
            tokens[0], seq_len=t.seq_len, seed=t.seed, num_samples=num_samples, cache_dir=cache_dir
        )
    return BlendedTrainDataset(
        tokens,
        [1.0] * len(tokens),
        seq_len=t.seq_len,
        seed=t.seed,
        num_samples=num_samples,
        cache_dir=cache_dir,
    )


class FinetuneData:
    """Fine-tuning on GovReport-format rows: input_ids plus the mask of the scored tokens."""

    def __init__(self, cfg: Config, paths: DataPaths) -> None:
        from trainperf.data import govreport

        t = cfg.train
        assert t.seed is not None, "resolve the seed first"
        self.seq_len = t.seq_len
        self.seed = t.seed
        self.train = govreport.read_split(paths.root, "train", max_seq_len=t.seq_len)
        self.eval = govreport.read_split(paths.root, "validation", max_seq_len=t.seq_len)
        if len(self.eval) < t.eval_samples:
            raise ValueError(
                f"{self.eval.source} has {len(self.eval)} validation samples but "
                f"train.eval_samples is {t.eval_samples}; re-run `trainperf prepare` or lower "
                "train.eval_samples"
            )
        self.train_samples = len(self.train)
        self.eval_size = t.eval_samples

    def train_batch(self, indices: Sequence[int]) -> Batch:
        from trainperf.data import govreport

        n = len(self.train)
        rows = [govreport.sample_at(int(i), n=n, seed=self.seed) for i in indices]
        return govreport.get_batch(self.train, rows, seq_len=self.seq_len)

    def eval_batch(self, indices: Sequence[int]) -> Batch:
        from trainperf.data import govreport

        return govreport.get_batch(self.eval, list(indices), seq_len=self.seq_len)

    def begin_eval(self) -> None:
        """Nothing: every evaluation reads the same fixed windows."""


def read_pretraining(cfg: Config, paths: DataPaths, model_cfg: Any) -> BenchmarkData:
    """A benchmark spec's reader for token windows (checked against the model's vocabulary)."""
    return PretrainData(cfg, paths, vocab_size=getattr(model_cfg, "vocab_size", None))


def read_finetuning(cfg: Config, paths: DataPaths, model_cfg: Any) -> BenchmarkData:
    """A benchmark spec's reader for GovReport-format rows."""
    return FinetuneData(cfg, paths)
