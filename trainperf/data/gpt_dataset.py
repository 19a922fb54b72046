"""Training and validation samples with the semantics of Megatron's GPTDataset.

The MLPerf llama31_8b reference (NeMo ``PreTrainingDataModule`` over megatron-core's
``GPTDataset``, ``pretrain_llama31.py::get_data``) reads C4 as one token stream: documents are
concatenated with no separator (``reset_attention_mask=False``: attention crosses document
boundaries), every token is in the loss (``eod_mask_loss=False``), and the stream is cut into
windows of ``seq_len + 1`` tokens (``add_extra_token_to_sequence``: inputs ``[:-1]``, labels
``[1:]``) where consecutive windows share one token. Three index arrays reproduce megatron-core's
``GPTDataset._build_document_sample_shuffle_indices`` draw for draw:

- document index (int32): the documents tiled once per epoch and shuffled as one block by
  ``numpy.random.RandomState(seed)`` (megatron ``_build_document_index``), the final epoch
  shuffled on its own when it is needed for fewer than 80% of its samples;
- sample index: where each window starts, as (position in the document index, token offset)
  (megatron ``helpers.build_sample_idx``; ours stores the starts only, the window length is
  fixed);
- shuffle index: the order windows are visited in, drawn after the document index from the same
  RandomState (megatron ``_build_shuffle_index``).

``tests/unit/data/test_megatron_parity.py`` checks every window against megatron-core itself.
The reference asks for ``trainer.max_steps x GBS`` samples (1,200,000 x GBS at full scale, about
17 epochs of shard en_6), so the indices reach gigabytes: they are built in chunks and cached as
``.npy`` files (memory-mapped on reuse), as megatron caches them in ``index_mapping_dir``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from trainperf.atomic import atomic_path
from trainperf.data.indexed import IndexedDataset

# Megatron: when the last epoch is needed for fewer than 80% of its samples, its samples are
# shuffled separately, so the run sees every full epoch's samples before the partial epoch's.
SEPARATE_FINAL_EPOCH_THRESHOLD = 0.80
_CHUNK_DOCUMENTS = 1 << 24  # documents per step of the chunked sample-index build
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


class GPTIndices(NamedTuple):
    document_index: np.ndarray  # (epochs * documents,) int32: stream order of the documents
    sample_index: np.ndarray  # (samples, 2): (document-index position, offset) of each start
    shuffle_index: np.ndarray  # (samples,): visiting order of the windows


def get_num_epochs(tokens_per_epoch: int, *, seq_len: int, num_samples: int) -> int:
    """Megatron ``_get_num_epochs``: the fewest epochs whose tokens hold ``num_samples`` windows
    (``num_samples * seq_len + 1`` tokens, the +1 being the last window's extra label token)."""
    return max(1, -(-(num_samples * seq_len + 1) // tokens_per_epoch))


def build_document_index(
    num_documents: int, *, num_epochs: int, rng: np.random.RandomState, separate_final: bool
) -> np.ndarray:
    """Megatron ``_build_document_index``: ``num_epochs`` copies of ``0..num_documents-1`` shuffled
    as one block (a document may come twice before another comes once), or the first
    ``num_epochs - 1`` copies as one block followed by the final epoch shuffled alone."""
    if separate_final and num_epochs > 1:
        first = build_document_index(
            num_documents, num_epochs=num_epochs - 1, rng=rng, separate_final=False
        )
        last = build_document_index(num_documents, num_epochs=1, rng=rng, separate_final=False)
        return np.concatenate([first, last])
    index = np.tile(np.arange(num_documents, dtype=np.int32), num_epochs)
    rng.shuffle(index)  # same draws as megatron's shuffle of its int32 copy
    return index


def build_sample_index(
    doc_sizes: np.ndarray, document_index: np.ndarray, *, seq_len: int, num_samples: int
) -> np.ndarray:
    """(num_samples, 2): (document-index position, offset) where window ``i`` starts.

    ``doc_sizes[d]`` is the token count of document ``d``. Window ``i`` starts at stream token
    ``i * seq_len`` and spans ``seq_len + 1`` tokens; a start on a document boundary belongs to
    the next non-empty document, as in megatron's ``build_sample_idx``. Walks the document index
    in chunks, so memory stays bounded for billions of stream positions.
    """
    dtype = np.int32 if len(document_index) < 2**31 else np.int64
    out = np.empty((num_samples, 2), dtype=dtype)
    base = 0  # stream position where the chunk starts
    done = 0  # windows placed so far
    for first in range(0, len(document_index), _CHUNK_DOCUMENTS):
        if done == num_samples:
            break
        sizes = doc_sizes[document_index[first : first + _CHUNK_DOCUMENTS]].astype(np.int64)
        ends = base + np.cumsum(sizes)
        stop = int(ends[-1]) if len(ends) else base
        # windows starting in [base, stop): i * seq_len in that range
        last = min(num_samples, -(-stop // seq_len))
        starts = np.arange(done, last, dtype=np.int64) * seq_len
        local = np.searchsorted(ends, starts, side="right")
        out[done:last, 0] = first + local
        out[done:last, 1] = starts - (ends[local] - sizes[local])
        done, base = last, stop
    assert done == num_samples, "document stream too short for the requested windows"
    return out


def build_shuffle_index(num_samples: int, total: int, rng: np.random.RandomState) -> np.ndarray:
    """Megatron ``_build_shuffle_index``: ``0..num_samples-1`` shuffled, then (when the final
    epoch is separate) ``num_samples..total-1`` shuffled after it."""
    dtype = np.uint32 if total < np.iinfo(np.uint32).max - 1 else np.int64
    first = np.arange(num_samples, dtype=dtype)
    rng.shuffle(first)
    if num_samples == total:
        return first
    last = np.arange(num_samples, total, dtype=dtype)
    rng.shuffle(last)
    return np.concatenate([first, last])


def build_indices(sizes: np.ndarray, *, seq_len: int, seed: int, num_samples: int) -> GPTIndices:
    """The three GPTDataset indices for ``num_samples`` training windows over documents of
    ``sizes`` tokens, seeded by the run seed (megatron ``config.random_seed``)."""
    tokens_per_epoch = int(sizes.sum(dtype=np.int64))
    num_epochs = get_num_epochs(tokens_per_epoch, seq_len=seq_len, num_samples=num_samples)
    per_epoch = (tokens_per_epoch - 1) // seq_len
    before_final = ((num_epochs - 1) * tokens_per_epoch - 1) // seq_len
    separate = num_epochs > 1 and num_samples - before_final < int(
        SEPARATE_FINAL_EPOCH_THRESHOLD * per_epoch
    )
    rng = np.random.RandomState(seed)
    document_index = build_document_index(
        len(sizes), num_epochs=num_epochs, rng=rng, separate_final=separate
    )
    total = (num_epochs * tokens_per_epoch - 1) // seq_len
    sample_index = build_sample_index(sizes, document_index, seq_len=seq_len, num_samples=total)
    shuffle_index = build_shuffle_index(before_final if separate else total, total, rng)
    return GPTIndices(document_index, sample_index, shuffle_index)


def load_or_build_indices(
    dataset: IndexedDataset,
    *,
    seq_len: int,
    seed: int,
    num_samples: int,
    cache_dir: Path | None,
) -> GPTIndices:
    """``build_indices`` for ``dataset``, cached in ``cache_dir`` (None: not cached).

    Files are named by a hash of what determines them (data files, seq_len, seed, num_samples) and
    written under temporary names then renamed, the description last: a crash never leaves a
    cache entry that looks complete. Reuse memory-maps them.
    """
    if cache_dir is None:
        return build_indices(dataset.sizes, seq_len=seq_len, seed=seed, num_samples=num_samples)
    description = _describe(dataset, seq_len=seq_len, seed=seed, num_samples=num_samples)
    key = hashlib.md5(json.dumps(description, sort_keys=True).encode()).hexdigest()
    base = Path(cache_dir) / f"{key}-{dataset.prefix.name}"
    names = [Path(f"{base}-{field}.npy") for field in GPTIndices._fields]
    described = Path(f"{base}-description.json")
    if described.is_file() and all(p.is_file() for p in names):
        try:
            return GPTIndices(*(np.load(p, mmap_mode="r") for p in names))
        except (ValueError, OSError):
            pass  # unreadable cache entry: rebuild it below
    indices = build_indices(dataset.sizes, seq_len=seq_len, seed=seed, num_samples=num_samples)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    for path, array in zip([*names, described], [*indices, None]):
        with atomic_path(path) as tmp:
            if array is None:
                tmp.write_text(json.dumps(description, indent=1, sort_keys=True))
            else:
                with open(tmp, "wb") as f:
                    np.save(f, array)
    return indices


def _describe(dataset: IndexedDataset, *, seq_len: int, seed: int, num_samples: int) -> dict:
    stat = dataset.index_path.stat()
    return {
        "format": _CACHE_FORMAT,
        "class": "GPTTrainDataset",
        "index_file": str(dataset.index_path.resolve()),
        "index_bytes": stat.st_size,
        "index_mtime_ns": stat.st_mtime_ns,
        "sequences": len(dataset),
        "tokens": int(dataset.num_tokens),
        "seq_len": seq_len,
        "seed": seed,
        "num_samples": num_samples,
    }


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

    Sample ``i`` is megatron GPTDataset's sample ``i`` for the same seed, seq_len and
    ``num_samples`` (the reference passes ``max_steps x global_batch_size``). Enough epochs are
    built to cover ``num_samples``. ``cache_dir`` keeps the indices between runs.
    """

    def __init__(
        self,
        dataset: IndexedDataset,
        *,
        seq_len: int,
        seed: int,
        num_samples: int,
        cache_dir: Path | None = None,
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
        self.num_epochs = get_num_epochs(tokens_per_epoch, seq_len=seq_len, num_samples=num_samples)
        self.document_index, self.sample_index, self.shuffle_index = load_or_build_indices(
            dataset, seq_len=seq_len, seed=seed, num_samples=num_samples, cache_dir=cache_dir
        )

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

    The MLPerf llama31_8b README: "we are using the first 1024 sequences ... from the validation
    dataset ... We do not shuffle the validation dataset". (A megatron GPTDataset would build a
    seeded shuffle for the validation split too; the README's rule wins, so the evaluation set is
    the same for every seed.) Windows are built exactly like training windows: seq_len + 1
    tokens over the documents in file order, overlapping by one.
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
            dataset.sizes, self.document_index, seq_len=seq_len, num_samples=num_samples
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
