"""Our Megatron formats and sample order against megatron-core itself (skipped without it).

megatron-core is what the MLPerf llama31_8b reference (NeMo) runs: its ``IndexedDataset`` reads
our ``.idx``/``.bin``, ours reads its builder's, and ``GPTDataset`` gives the same training windows
in the same order as ``GPTTrainDataset`` for the same seed, sequence length and sample count,
across one epoch, a separately shuffled final epoch and several epochs shuffled as one block.
"""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

with warnings.catch_warnings():  # megatron warns that Apex / Transformer Engine are absent
    warnings.simplefilter("ignore")
    mgpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
    mindexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    from megatron.core.datasets.utils import Split

from trainperf.data.gpt_dataset import GPTTrainDataset
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

SEQ_LEN = 16


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 60, size=101)  # empty, short and multi-window documents
    sizes[[3, 50]] = 0
    docs = [rng.integers(0, 120_000, size=n) for n in sizes]
    path = tmp_path_factory.mktemp("c4") / "c4-train.en_6_text_document"
    write_indexed_dataset(path, docs, dtype=np.dtype(np.int32))
    return path


def _megatron_dataset(prefix: Path, *, seed: int, num_samples: int, cache: Path):
    tokenizer = types.SimpleNamespace(
        vocab_size=128256, eod=0, pad=None, unique_identifiers={"class": "stub"}
    )
    config = mgpt.GPTDatasetConfig(
        random_seed=seed,
        sequence_length=SEQ_LEN,
        split="1,0,0",
        path_to_cache=str(cache),
        reset_position_ids=False,  # the reference's PreTrainingDataModule settings
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer=tokenizer,
    )
    low = mindexed.IndexedDataset(str(prefix))
    docs = np.arange(len(low), dtype=np.int32)
    return mgpt.GPTDataset(low, str(prefix), docs, num_samples, Split.train, config)


def test_megatron_reads_our_files(prefix: Path) -> None:
    theirs = mindexed.IndexedDataset(str(prefix))
    ours = IndexedDataset(prefix)
    assert len(theirs) == len(ours)
    np.testing.assert_array_equal(theirs.sequence_lengths, ours.sizes)
    np.testing.assert_array_equal(theirs.document_indices, ours.document_indices)
    for i in range(len(ours)):
        np.testing.assert_array_equal(theirs[i], ours[i])


def test_we_read_megatrons_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    builder = mindexed.IndexedDatasetBuilder(str(tmp_path / "m.bin"), dtype=np.uint16)
    docs = [rng.integers(0, 60_000, size=int(n)) for n in rng.integers(1, 40, size=30)]
    for doc in docs:
        builder.add_item(torch.from_numpy(doc))
        builder.end_document()
    builder.finalize(str(tmp_path / "m.idx"))
    ours = IndexedDataset(tmp_path / "m")
    assert ours.dtype == np.uint16 and len(ours) == len(docs)
    for i, doc in enumerate(docs):
        np.testing.assert_array_equal(ours[i], doc)


@pytest.mark.parametrize(
    ("seed", "epochs"),
    [(1234, 0.5), (7, 1.0), (99, 1.2), (5, 2.9), (42, 4.3)],
    ids=["part-epoch", "one-epoch", "separate-final-epoch", "block-3-epochs", "5-epochs"],
)
def test_same_windows_in_the_same_order(
    prefix: Path, tmp_path: Path, seed: int, epochs: float
) -> None:
    per_epoch = (IndexedDataset(prefix).num_tokens - 1) // SEQ_LEN
    num_samples = max(1, int(epochs * per_epoch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _megatron_dataset(prefix, seed=seed, num_samples=num_samples, cache=tmp_path)
    ours = GPTTrainDataset(
        IndexedDataset(prefix), seq_len=SEQ_LEN, seed=seed, num_samples=num_samples
    )
    np.testing.assert_array_equal(theirs.document_index, ours.document_index)
    np.testing.assert_array_equal(theirs.shuffle_index, ours.shuffle_index)
    for i in range(num_samples):
        sample = theirs[i]
        window = ours[i]
        np.testing.assert_array_equal(sample["tokens"].numpy(), window[:-1])
        np.testing.assert_array_equal(sample["labels"].numpy(), window[1:])
        assert bool(sample["loss_mask"].all())  # every token scored, as in our loss
