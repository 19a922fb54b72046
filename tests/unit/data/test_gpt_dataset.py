"""GPTDataset semantics: overlapping windows over a shuffled document stream; unshuffled eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainperf.data import gpt_dataset
from trainperf.data.gpt_dataset import GPTEvalDataset, GPTTrainDataset, get_batch
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

SEQ_LEN = 8
# Includes an empty document and documents shorter and longer than one window.
SIZES = [13, 3, 0, 25, 7, 1, 40, 9, 16, 5, 11]


@pytest.fixture
def dataset(tmp_path: Path) -> IndexedDataset:
    # Token values identify their place: document d, offset k -> 1000 * d + k (all distinct).
    docs = [1000 * d + np.arange(n) for d, n in enumerate(SIZES)]
    write_indexed_dataset(tmp_path / "d", docs, dtype=np.dtype(np.uint16))
    return IndexedDataset(tmp_path / "d")


def get_stream(dataset: IndexedDataset, document_index: np.ndarray) -> np.ndarray:
    return np.concatenate([dataset.get(int(d)) for d in document_index]).astype(np.int64)


def samples_per_epoch(dataset: IndexedDataset) -> int:
    return (dataset.num_tokens - 1) // SEQ_LEN


def test_windows_overlap_by_one_and_reproduce_the_stream(dataset: IndexedDataset) -> None:
    ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=1234, num_samples=40)
    assert ds.num_epochs > 1
    stream = get_stream(dataset, ds.document_index)
    for i in range(len(ds)):
        sample = ds[i]
        assert sample.shape == (SEQ_LEN + 1,) and sample.dtype == np.int64
        j = int(ds.shuffle_index[i])
        np.testing.assert_array_equal(sample, stream[j * SEQ_LEN : j * SEQ_LEN + SEQ_LEN + 1])
    unshuffled = {int(j): ds[i] for i, j in enumerate(ds.shuffle_index[: len(ds)])}
    for j in unshuffled:
        if j + 1 in unshuffled:
            assert unshuffled[j][-1] == unshuffled[j + 1][0]


def test_epochs_are_shuffled_as_one_block(dataset: IndexedDataset) -> None:
    # Megatron _build_document_index: every document once per epoch overall, but the epochs are
    # shuffled together, so a document may come twice before another comes once.
    ds = GPTTrainDataset(
        dataset, seq_len=SEQ_LEN, seed=7, num_samples=3 * samples_per_epoch(dataset)
    )
    n = len(SIZES)
    assert ds.num_epochs == 3 and ds.document_index.dtype == np.int32
    counts = np.bincount(ds.document_index, minlength=n)
    assert counts.tolist() == [3] * n
    first_epoch = ds.document_index[:n]
    assert sorted(first_epoch.tolist()) != list(range(n))  # seed 7 mixes the epochs


def test_every_window_start_covers_the_stream_once(dataset: IndexedDataset) -> None:
    # All windows together tile the whole multi-epoch stream: each stream token is the start
    # part (first seq_len tokens) of exactly one window.
    ds = GPTTrainDataset(
        dataset, seq_len=SEQ_LEN, seed=11, num_samples=2 * samples_per_epoch(dataset)
    )
    total = len(ds.shuffle_index)
    assert sorted(ds.shuffle_index.tolist()) == list(range(total))
    stream = get_stream(dataset, ds.document_index)
    for j in range(total):
        position, offset = ds.sample_index[j]
        start = int(np.asarray(dataset.sizes)[ds.document_index[:position]].sum()) + int(offset)
        assert start == j * SEQ_LEN
    assert len(stream) - total * SEQ_LEN <= SEQ_LEN


def test_chunked_sample_index_equals_one_pass(
    dataset: IndexedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=5, num_samples=40)
    monkeypatch.setattr(gpt_dataset, "_CHUNK_DOCUMENTS", 3)
    chunked = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=5, num_samples=40)
    np.testing.assert_array_equal(whole.sample_index, chunked.sample_index)


def test_indices_are_cached_and_reused(dataset: IndexedDataset, tmp_path: Path) -> None:
    cache = tmp_path / "index_cache"
    first = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=3, num_samples=30, cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 4 and not any(".tmp-" in f for f in files)
    assert any(f.endswith("-description.json") for f in files)
    again = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=3, num_samples=30, cache_dir=cache)
    assert isinstance(again.shuffle_index, np.memmap)  # loaded, not rebuilt
    for a, b in zip(
        (first.document_index, first.sample_index, first.shuffle_index),
        (again.document_index, again.sample_index, again.shuffle_index),
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(get_batch(first, range(30)), get_batch(again, range(30)))
    GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=4, num_samples=30, cache_dir=cache)
    assert len(list(cache.iterdir())) == 8  # another seed is another entry


def test_incomplete_cache_entry_is_rebuilt(dataset: IndexedDataset, tmp_path: Path) -> None:
    cache = tmp_path / "index_cache"
    ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=3, num_samples=30, cache_dir=cache)
    shuffle = next(cache.glob("*-shuffle_index.npy"))
    shuffle.write_bytes(b"\x93NUMPY truncated")
    again = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=3, num_samples=30, cache_dir=cache)
    np.testing.assert_array_equal(ds.shuffle_index, again.shuffle_index)


def test_seed_decides_the_order(dataset: IndexedDataset) -> None:
    def make(seed: int) -> np.ndarray:
        ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=seed, num_samples=12)
        return get_batch(ds, range(len(ds))).numpy()

    np.testing.assert_array_equal(make(1), make(1))
    assert not np.array_equal(make(1), make(2))


def test_one_epoch_covers_every_token_once(dataset: IndexedDataset) -> None:
    n = samples_per_epoch(dataset)
    ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=3, num_samples=n)
    assert ds.num_epochs == 1
    assert sorted(ds.shuffle_index.tolist()) == list(range(n))
    covered = np.concatenate([ds[i][:-1] for i in range(n)])  # non-overlapping parts
    assert len(np.unique(covered)) == len(covered) == n * SEQ_LEN
    stream = get_stream(dataset, ds.document_index)
    assert set(covered.tolist()) == set(stream[: n * SEQ_LEN].tolist())
    assert dataset.num_tokens - n * SEQ_LEN <= SEQ_LEN  # only a sub-window tail is dropped


def test_separate_final_epoch(dataset: IndexedDataset) -> None:
    # Megatron: a final epoch needed for < 80% of its samples is shuffled on its own.
    per_epoch = samples_per_epoch(dataset)
    ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=5, num_samples=per_epoch + 2)
    assert ds.num_epochs == 2
    before_final = (dataset.num_tokens - 1) // SEQ_LEN
    assert sorted(ds.shuffle_index[:before_final].tolist()) == list(range(before_final))
    assert ds.shuffle_index[before_final:].min() == before_final


def test_eval_is_in_document_order_without_seed(dataset: IndexedDataset) -> None:
    num_samples = samples_per_epoch(dataset)
    ds = GPTEvalDataset(dataset, seq_len=SEQ_LEN, num_samples=num_samples)
    stream = get_stream(dataset, np.arange(len(SIZES)))
    for i in range(num_samples):
        np.testing.assert_array_equal(ds[i], stream[i * SEQ_LEN : i * SEQ_LEN + SEQ_LEN + 1])
    again = GPTEvalDataset(dataset, seq_len=SEQ_LEN, num_samples=3)
    np.testing.assert_array_equal(get_batch(again, [0, 1, 2]).numpy(), get_batch(ds, [0, 1, 2]))
    assert ds[0][0] == 0 and ds[1][0] == SEQ_LEN  # starts at document 0, offset 0
    with pytest.raises(IndexError):
        ds[num_samples]


def test_eval_too_few_tokens(dataset: IndexedDataset) -> None:
    fit = samples_per_epoch(dataset)
    match = rf"has {dataset.num_tokens} tokens: {fit} windows of seq_len \+ 1 = 9 fit"
    with pytest.raises(ValueError, match=match):
        GPTEvalDataset(dataset, seq_len=SEQ_LEN, num_samples=fit + 1)


def test_train_too_few_tokens(dataset: IndexedDataset) -> None:
    with pytest.raises(ValueError, match="fewer than one window"):
        GPTTrainDataset(dataset, seq_len=dataset.num_tokens, seed=0, num_samples=1)


def test_get_batch(dataset: IndexedDataset) -> None:
    ds = GPTTrainDataset(dataset, seq_len=SEQ_LEN, seed=0, num_samples=10)
    batch = get_batch(ds, [3, 0, 9])
    assert batch.shape == (3, SEQ_LEN + 1) and batch.dtype == torch.int64
    np.testing.assert_array_equal(batch[1].numpy(), ds[0])
    with pytest.raises(IndexError):
        ds[10]
