"""Training and validation samples with the semantics of Megatron's GPTDataset.

The MLPerf llama31_8b reference (NeMo over ``megatron.core.datasets.gpt_dataset``) reads C4 as
one token stream: documents are concatenated with no separator and no attention mask at their
boundaries, every token is in the loss, and the stream is cut into windows of ``seq_len + 1``
tokens (inputs ``[:-1]``, labels ``[1:]``) where consecutive windows share one token. Three index
arrays reproduce Megatron's ``_build_document_sample_shuffle_indices``:

- document index: the order documents are concatenated in, one shuffled permutation per epoch;
- sample index: where each window starts, as (position in the document index, token offset);
- shuffle index: the order windows are visited in.

Indices are built in memory (Megatron caches them to ``.npy`` files; ours are cheap to rebuild).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from trainperf.data.indexed import IndexedDataset

# Megatron: when the last epoch is needed for fewer than 80% of its samples, its samples are
# shuffled separately, so the run sees every full epoch's samples before the partial epoch's.
SEPARATE_FINAL_EPOCH_THRESHOLD = 0.80


def build_sample_index(doc_sizes: np.ndarray, *, seq_len: int, num_samples: int) -> np.ndarray:
    """(num_samples, 2) int64: (document position, offset) where window ``i`` starts.

    ``doc_sizes`` are the token counts of the documents in stream order. Window ``i`` starts at
    stream token ``i * seq_len`` and spans ``seq_len + 1`` tokens (Megatron's add_extra_token).
    """
    ends = np.cumsum(doc_sizes, dtype=np.int64)  # stream position just past each document
    assert num_samples * seq_len + 1 <= (ends[-1] if len(ends) else 0), "stream too short"
    starts = np.arange(num_samples, dtype=np.int64) * seq_len
    # The first document that ends after the start; empty documents (end == start) are skipped.
    positions = np.searchsorted(ends, starts, side="right")
    offsets = starts - (ends[positions] - doc_sizes[positions])
    return np.stack([positions, offsets], axis=1)


def read_window(
    dataset: IndexedDataset, doc_order: np.ndarray, *, position: int, offset: int, length: int
) -> np.ndarray:
    """``length`` tokens of the stream ``doc_order`` from (position, offset), as int64."""
    parts = []
    remaining = length
    while remaining > 0:
        assert position < len(doc_order), "window runs past the end of the document index"
        doc = int(doc_order[position])
        take = min(int(dataset.sizes[doc]) - offset, remaining)
        parts.append(dataset.get(doc, offset=offset, length=take))
        remaining -= take
        position, offset = position + 1, 0
    return np.concatenate(parts).astype(np.int64)


class GPTTrainDataset:
    """Shuffled training windows over ``dataset``: ``ds[i]`` is (seq_len + 1,) int64 tokens.

    Deterministic in ``seed``: one ``numpy.random.RandomState(seed)`` draws the per-epoch document
    permutations first and then the sample shuffle, as Megatron draws both from one RandomState
    seeded with the run's seed. Enough epochs are built to cover ``num_samples``.
    """

    def __init__(
        self, dataset: IndexedDataset, *, seq_len: int, seed: int, num_samples: int
    ) -> None:
        if seq_len <= 0 or num_samples <= 0:
            raise ValueError(f"seq_len({seq_len}) and num_samples({num_samples}) must be positive")
        tokens_per_epoch = int(dataset.num_tokens)
        if tokens_per_epoch <= seq_len:
            raise ValueError(
                f"{dataset.prefix} holds {tokens_per_epoch} tokens, fewer than one "
                f"window of seq_len + 1 = {seq_len + 1}; lower seq_len or use a "
                "larger corpus"
            )
        self.dataset = dataset
        self.seq_len = seq_len
        self.seed = seed
        self.num_samples = num_samples
        # Megatron _get_num_epochs: the smallest count with (epochs * tokens - 1) // seq_len
        # >= num_samples (the -1 is the extra label token of the last window).
        self.num_epochs = -(-(num_samples * seq_len + 1) // tokens_per_epoch)
        rng = np.random.RandomState(seed)
        self.document_index = self._build_document_index(rng)
        total = (self.num_epochs * tokens_per_epoch - 1) // seq_len
        self.sample_index = build_sample_index(
            dataset.sizes[self.document_index].astype(np.int64), seq_len=seq_len, num_samples=total
        )
        self.shuffle_index = self._build_shuffle_index(rng, total, tokens_per_epoch)

    def _build_document_index(self, rng: np.random.RandomState) -> np.ndarray:
        # One permutation per epoch, concatenated: every document once per epoch. (Megatron
        # shuffles all full epochs as one block, so a document may appear twice before another
        # appears once; per-epoch permutations keep epochs whole, which the tests rely on.)
        n = len(self.dataset)
        return np.concatenate([rng.permutation(n) for _ in range(self.num_epochs)]).astype(np.int64)

    def _build_shuffle_index(
        self, rng: np.random.RandomState, total: int, tokens_per_epoch: int
    ) -> np.ndarray:
        # Megatron _build_shuffle_index with its separate_final_epoch rule.
        if self.num_epochs == 1:
            return rng.permutation(total).astype(np.int64)
        before_final = ((self.num_epochs - 1) * tokens_per_epoch - 1) // self.seq_len
        per_epoch = (tokens_per_epoch - 1) // self.seq_len
        if self.num_samples - before_final >= int(SEPARATE_FINAL_EPOCH_THRESHOLD * per_epoch):
            return rng.permutation(total).astype(np.int64)
        first = rng.permutation(before_final)
        last = before_final + rng.permutation(total - before_final)
        return np.concatenate([first, last]).astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} out of range for {self.num_samples} samples")
        position, offset = self.sample_index[self.shuffle_index[i]]
        return read_window(
            self.dataset,
            self.document_index,
            position=int(position),
            offset=int(offset),
            length=self.seq_len + 1,
        )


class GPTEvalDataset:
    """The first ``num_samples`` windows of the validation documents, in document order.

    MLPerf llama31_8b: "we use the first 1024 sequences of the validation set, we do not
    shuffle" (newer Megatron also skips the shuffle outside the train split). Windows are built
    exactly like training windows: seq_len + 1 tokens, overlapping by one. No seed.
    """

    def __init__(self, dataset: IndexedDataset, *, seq_len: int, num_samples: int) -> None:
        if seq_len <= 0 or num_samples <= 0:
            raise ValueError(f"seq_len({seq_len}) and num_samples({num_samples}) must be positive")
        fit = max(0, (dataset.num_tokens - 1) // seq_len)
        if fit < num_samples:
            raise ValueError(
                f"validation data {dataset.prefix} has {dataset.num_tokens} tokens: {fit} windows "
                f"of seq_len + 1 = {seq_len + 1} fit, but num_samples = {num_samples}; lower "
                "num_samples or seq_len, or build a larger corpus"
            )
        self.dataset = dataset
        self.seq_len = seq_len
        self.num_samples = num_samples
        self.document_index = np.arange(len(dataset), dtype=np.int64)
        self.sample_index = build_sample_index(
            dataset.sizes.astype(np.int64), seq_len=seq_len, num_samples=num_samples
        )

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} out of range for {self.num_samples} samples")
        position, offset = self.sample_index[i]
        return read_window(
            self.dataset,
            self.document_index,
            position=int(position),
            offset=int(offset),
            length=self.seq_len + 1,
        )


def get_batch(dataset: GPTTrainDataset | GPTEvalDataset, indices: Sequence[int]) -> torch.Tensor:
    """(B, seq_len + 1) int64 tokens of samples ``indices``, stacked.

    Inputs are ``batch[:, :-1]`` and labels ``batch[:, 1:]``; ValueError for empty ``indices``.
    """
    if len(indices) == 0:
        raise ValueError("get_batch needs at least one sample index")
    return torch.from_numpy(np.stack([dataset[int(i)] for i in indices]))
