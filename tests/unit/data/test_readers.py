"""What the pretraining reader hands the trainer: megatron-order windows, checked against the
model's vocabulary."""

from pathlib import Path

import numpy as np
import pytest

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.data import c4
from trainperf.data.gpt_dataset import GPTTrainDataset
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset
from trainperf.data.prepare import data_paths, index_cache_dir
from trainperf.data.readers import PretrainData


def c4_folder(tmp_path: Path, top: int) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for prefix, n in ((c4.TRAIN_PREFIX, 300), (c4.VALID_PREFIX, 50)):
        docs = [rng.integers(0, top, size=int(s)) for s in rng.integers(1, 90, size=n)]
        write_indexed_dataset(data / prefix, docs, dtype=np.dtype(np.int32))
    return tmp_path


def config(folder: Path, seed: int = 5):
    cfg = get_default_config("llama31_8b", "full")
    return apply_overrides(
        cfg,
        [f"data.data_dir={folder}", "train.seq_len=16", "train.global_batch_size=4",
         "train.max_steps=40", "train.warmup_steps=2", "train.eval_samples=8",
         f"train.seed={seed}"],
    )  # fmt: skip


def test_train_batches_are_megatron_windows_in_order(tmp_path: Path) -> None:
    cfg = config(c4_folder(tmp_path, top=1000))
    paths = data_paths(cfg)
    assert paths.train_prefix == tmp_path / "data" / c4.TRAIN_PREFIX
    data = PretrainData(cfg, paths, vocab_size=1000)
    reference = GPTTrainDataset(
        IndexedDataset(paths.train_prefix), seq_len=16, seed=5, num_samples=40 * 4
    )
    inputs, labels = data.train_batch([0, 1, 2, 3])
    for i in range(4):
        np.testing.assert_array_equal(inputs[i].numpy(), reference[i][:-1])
        np.testing.assert_array_equal(labels[i].numpy(), reference[i][1:])
    assert (labels != -100).all()  # every token scored
    assert any(index_cache_dir(paths).glob("*-shuffle_index.npy"))  # cached beside the data
    inputs, _ = data.eval_batch([0])
    np.testing.assert_array_equal(inputs[0].numpy(), IndexedDataset(paths.valid_prefix).tokens[:16])


def test_tokens_outside_the_vocabulary_are_a_clear_error(tmp_path: Path) -> None:
    cfg = config(c4_folder(tmp_path, top=5000))
    data = PretrainData(cfg, data_paths(cfg), vocab_size=2048)
    with pytest.raises(ValueError, match=r"c4-train.en_6_text_document.bin holds token id \d+, "
                       r"outside the model's vocabulary of 2048"):  # fmt: skip
        data.train_batch(range(4))


def test_c4_files_are_found_where_downloads_put_them(tmp_path: Path) -> None:
    # directly in --data-dir, in DATA_DIR/data (prepare's layout), or one folder below data/
    for where in (tmp_path / "a", tmp_path / "b" / "data", tmp_path / "c" / "data" / "c4"):
        for prefix in (c4.TRAIN_PREFIX, c4.VALID_PREFIX):
            write_indexed_dataset(where / prefix, [np.arange(5)], dtype=np.dtype(np.int32))
    for folder, expected in (("a", "a"), ("b", "b/data"), ("c", "c/data/c4")):
        paths = data_paths(config(tmp_path / folder))
        assert paths.train_prefix == tmp_path / expected / c4.TRAIN_PREFIX
    assert data_paths(config(tmp_path / "empty")).root == tmp_path / "empty" / "data"
