"""The blend of several training files (llama31_405b: en_6 + en_7): the greedy index against a
line-by-line transcription of megatron's ``build_blending_indices``, its shares at every step,
the sizes megatron asks of each file, clear errors, the cache, and the reader that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.data import blended, c4
from trainperf.data.blended import (
    BlendedTrainDataset,
    build_blending_indices,
    get_blend_sizes,
    normalize_weights,
)
from trainperf.data.gpt_dataset import GPTTrainDataset
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset
from trainperf.data.prepare import data_paths, index_cache_dir, missing_files
from trainperf.data.readers import PretrainData

EN_7 = "c4-train.en_7_text_document"
WEIGHTS = [[1, 1], [3, 7], [1, 999], [1, 1, 1], [2, 3, 5], [0.1, 0.7, 0.15, 0.05]]


def megatron_loop(weights: list[float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """helpers.cpp ``build_blending_indices``, one step at a time."""
    taken = [0] * len(weights)
    index, sample = np.zeros(size, dtype=np.int16), np.zeros(size, dtype=np.int64)
    for i in range(size):
        s = float(max(i, 1))
        best, error = 0, weights[0] * s - taken[0]
        for d in range(1, len(weights)):
            if weights[d] * s - taken[d] > error:
                best, error = d, weights[d] * s - taken[d]
        index[i], sample[i] = best, taken[best]
        taken[best] += 1
    return index, sample


@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
@pytest.mark.parametrize("size", [1, 2, 1023, 1025, 70_001])
def test_same_index_as_megatrons_loop(
    weights: list[float], size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blended, "_CHUNKS", 16)  # several passes of 16 chunks of 1024 steps
    w = normalize_weights(weights)
    index, sample = megatron_loop(w, size)
    ours = build_blending_indices(w, size)
    np.testing.assert_array_equal(index, ours.dataset_index)
    np.testing.assert_array_equal(sample, ours.dataset_sample_index)


@pytest.mark.parametrize("shift", [1, 40, 10**6], ids=["off-by-one", "far-off", "hopeless"])
@pytest.mark.parametrize("weights", [[1, 1], [3, 7], [2, 3, 5]], ids=str)
def test_exact_whatever_the_guessed_starts(
    weights: list[float], shift: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wrong guesses are re-run until they meet the guessed run, or (never meeting it) to the
    # chunk's end, whose counts then start the next chunk: the result is exact either way.
    guess = blended._guess_taken

    def wrong(w: np.ndarray, starts: np.ndarray) -> np.ndarray:
        taken = guess(w, starts)
        taken[0] += shift
        taken[-1] = np.maximum(taken[-1] - shift, 0)
        return taken

    monkeypatch.setattr(blended, "_guess_taken", wrong)
    monkeypatch.setattr(blended, "_CHUNKS", 4)
    w = normalize_weights(weights)
    index, sample = megatron_loop(w, 9_000)
    ours = build_blending_indices(w, 9_000)
    np.testing.assert_array_equal(index, ours.dataset_index)
    np.testing.assert_array_equal(sample, ours.dataset_sample_index)


@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
def test_every_prefix_of_the_index_follows_the_weights(weights: list[float]) -> None:
    w = np.asarray(normalize_weights(weights))
    out = build_blending_indices(list(w), 50_000)
    onehot = np.eye(len(w), dtype=np.int64)[out.dataset_index]
    taken = np.cumsum(onehot, axis=0)  # (steps, datasets): samples taken after each step
    steps = np.arange(1, len(taken) + 1)[:, None]
    # two datasets: within one sample of the share at every step; more: within two
    assert np.abs(taken - w * steps).max() <= (1 if len(w) == 2 else 2)
    # each dataset's samples are taken in order 0, 1, 2, ...
    np.testing.assert_array_equal((taken - onehot)[steps[:, 0] - 1, out.dataset_index],
                                  out.dataset_sample_index)  # fmt: skip
    if weights == [1, 1]:  # an equal pair alternates, first file first
        np.testing.assert_array_equal(out.dataset_index[:6], [0, 1, 0, 1, 0, 1])


def test_sizes_are_megatrons() -> None:
    # the 405B reference: 1,200,000 steps x GBS 1152, en_6 and en_7 at 50 each
    shares = normalize_weights([50, 50])
    assert shares == [0.5, 0.5]
    assert get_blend_sizes(shares, 1_382_400_000) == [691_200_000, 691_200_000]
    assert get_blend_sizes(shares, 1_382_400_000, surplus=0.005) == [694_656_000] * 2
    assert get_blend_sizes(shares, 7) == [4, 4]  # the blend: 8 samples for a request of 7
    assert get_blend_sizes(shares, 7, surplus=0.005) == [5, 5]  # ceil(4 * 1.005)
    assert get_blend_sizes(normalize_weights([3, 7]), 10) == [3, 7]


@pytest.mark.parametrize(
    "weights", [[], [1, 0], [1, -2], [1, float("nan")], [float("inf"), 1]], ids=str
)
def test_weights_must_be_positive(weights: list[float]) -> None:
    with pytest.raises(
        ValueError, match=r"must be one or more positive numbers, e\.g\. \[50, 50\]"
    ):
        normalize_weights(weights)


def write_prefix(path: Path, *, seed: int, documents: int, top: int = 1000) -> Path:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, top, size=int(n)) for n in rng.integers(1, 60, size=documents)]
    write_indexed_dataset(path, docs, dtype=np.dtype(np.int32))
    return path


@pytest.fixture
def pair(tmp_path: Path) -> list[IndexedDataset]:
    return [
        IndexedDataset(write_prefix(tmp_path / c4.TRAIN_PREFIX, seed=6, documents=120)),
        IndexedDataset(write_prefix(tmp_path / EN_7, seed=7, documents=80)),
    ]


def test_bad_blends_are_clear_errors(pair: list[IndexedDataset]) -> None:
    with pytest.raises(ValueError, match=r"a blend of 2 datasets needs 2 weights, got 3"):
        BlendedTrainDataset(pair, [1, 1, 1], seq_len=16, seed=1, num_samples=10)
    with pytest.raises(ValueError, match=r"positive numbers"):
        BlendedTrainDataset(pair, [1, 0], seq_len=16, seed=1, num_samples=10)
    with pytest.raises(ValueError, match=r"num_samples\(0\) must be positive"):
        BlendedTrainDataset(pair, [1, 1], seq_len=16, seed=1, num_samples=0)


def test_samples_come_from_each_file_in_its_own_order(
    pair: list[IndexedDataset], tmp_path: Path
) -> None:
    cache = tmp_path / "index_cache"
    ds = BlendedTrainDataset(pair, [50, 50], seq_len=16, seed=3, num_samples=301, cache_dir=cache)
    assert len(ds) == 302 and [part.num_samples for part in ds.datasets] == [152, 152]
    for part, prefix in zip(ds.datasets, pair, strict=True):  # each file: its GPTDataset
        alone = GPTTrainDataset(prefix, seq_len=16, seed=3, num_samples=152)
        np.testing.assert_array_equal(part.shuffle_index, alone.shuffle_index)
    for i in range(len(ds)):
        d, j = int(ds.dataset_index[i]), int(ds.dataset_sample_index[i])
        assert (d, j) == (i % 2, i // 2) and ds.source(i) is pair[d]
        np.testing.assert_array_equal(ds[i], ds.datasets[d][j])
    with pytest.raises(IndexError, match="sample 302 out of range for 302"):
        ds[302]
    assert len(list(cache.glob("*-blend-*"))) == 3  # two index arrays and their description
    again = BlendedTrainDataset(pair, [1, 1], seq_len=16, seed=3, num_samples=301, cache_dir=cache)
    assert isinstance(again.dataset_index, np.memmap)  # the cached arrays, memory-mapped
    np.testing.assert_array_equal(again.dataset_sample_index, ds.dataset_sample_index)


def test_a_blend_of_one_file_is_its_gpt_dataset(pair: list[IndexedDataset]) -> None:
    one = BlendedTrainDataset(pair[:1], [10], seq_len=16, seed=2, num_samples=77)
    alone = GPTTrainDataset(pair[0], seq_len=16, seed=2, num_samples=77)
    assert len(one) == 77 and one.datasets[0].num_samples == 77  # no surplus: megatron's own
    for i in range(77):
        np.testing.assert_array_equal(one[i], alone[i])


def c4_blend_folder(tmp_path: Path, *, top7: int = 1000) -> Path:
    data = tmp_path / "data"
    write_prefix(data / c4.TRAIN_PREFIX, seed=6, documents=200)
    write_prefix(data / EN_7, seed=7, documents=150, top=top7)
    write_prefix(data / c4.VALID_PREFIX, seed=8, documents=50)
    return tmp_path


def blend_config(folder: Path):
    cfg = get_default_config("llama31_405b", "full")
    return apply_overrides(
        cfg,
        [f"data.data_dir={folder}", "train.seq_len=16", "train.global_batch_size=4",
         "train.max_steps=40", "train.warmup_steps=2", "train.eval_samples=8", "train.seed=5"],
    )  # fmt: skip


def test_the_405b_reader_reads_the_en6_en7_blend(tmp_path: Path) -> None:
    cfg = blend_config(c4_blend_folder(tmp_path))
    paths = data_paths(cfg)
    assert [p.name for p in paths.train_prefixes] == [c4.TRAIN_PREFIX, EN_7]
    data = PretrainData(cfg, paths, vocab_size=1000)
    tokens = [IndexedDataset(p) for p in paths.train_prefixes]
    reference = BlendedTrainDataset(tokens, [50, 50], seq_len=16, seed=5, num_samples=40 * 4)
    inputs, labels = data.train_batch([0, 1, 2, 3])
    for i in range(4):
        np.testing.assert_array_equal(inputs[i].numpy(), reference[i][:-1])
        np.testing.assert_array_equal(labels[i].numpy(), reference[i][1:])
    assert data.train_samples == sum((ds.num_tokens - 1) // 16 for ds in tokens)
    assert any(index_cache_dir(paths).glob("*-blend-dataset_index.npy"))


def test_a_bad_token_names_the_file_of_the_blend_it_is_in(tmp_path: Path) -> None:
    cfg = blend_config(c4_blend_folder(tmp_path, top7=5000))
    data = PretrainData(cfg, data_paths(cfg), vocab_size=2048)
    data.train_batch([0, 2, 4, 6])  # en_6 samples only: fine
    with pytest.raises(ValueError, match=rf"{EN_7}.bin holds token id \d+, outside the model's"):
        data.train_batch(range(8))


def test_missing_files_include_every_file_of_the_blend(tmp_path: Path) -> None:
    folder = c4_blend_folder(tmp_path)
    (folder / "data" / f"{EN_7}.bin").unlink()
    assert [p.name for p in missing_files(data_paths(blend_config(folder)))] == [f"{EN_7}.bin"]
    single = apply_overrides(get_default_config("llama31_8b", "full"), [f"data.data_dir={folder}"])
    assert [p.name for p in data_paths(single).train_prefixes] == [c4.TRAIN_PREFIX]
    assert not missing_files(data_paths(single))  # llama31_8b reads en_6 alone, as before
