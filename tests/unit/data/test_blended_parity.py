"""Our blend against megatron-core's BlendedDataset itself (skipped without megatron-core).

The llama31_405b reference (NeMo) hands megatron-core ``["50", en_6, "50", en_7]`` for its
training split; ``BlendedMegatronDatasetBuilder`` sizes one GPTDataset per prefix and blends them.
``BlendedTrainDataset`` must give the same samples in the same order for the same prefixes,
weights, seed, sequence length and sample count: equal and unequal pairs, and three prefixes.
"""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():  # megatron warns that Apex / Transformer Engine are absent
    warnings.simplefilter("ignore")
    mgpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
    mbuilder = pytest.importorskip("megatron.core.datasets.blended_megatron_dataset_builder")
    mhelpers = pytest.importorskip("megatron.core.datasets.helpers")

from trainperf.data import blended
from trainperf.data.blended import BlendedTrainDataset, build_blending_indices, normalize_weights
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

SEQ_LEN = 16


@pytest.fixture(scope="module")
def prefixes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small C4-like files of different lengths (en_6 and en_7 of the reference, and one
    more); empty and multi-window documents."""
    folder = tmp_path_factory.mktemp("c4")
    out = []
    for number, documents in ((6, 101), (7, 67), (8, 43)):
        rng = np.random.default_rng(number)
        sizes = rng.integers(0, 60, size=documents)
        sizes[[3, 20]] = 0
        path = folder / f"c4-train.en_{number}_text_document"
        docs = [rng.integers(0, 120_000, size=n) for n in sizes]
        write_indexed_dataset(path, docs, dtype=np.dtype(np.int32))
        out.append(path)
    return out


def _megatron_blend(prefixes: list[Path], weights: list[float], *, seed: int, num_samples: int):
    """What NeMo's PreTrainingDataModule builds from ``paths={"train": [w, prefix, ...]}``."""
    tokenizer = types.SimpleNamespace(
        vocab_size=128256, eod=0, pad=None, unique_identifiers={"class": "stub"}
    )
    config = mgpt.GPTDatasetConfig(
        random_seed=seed,
        sequence_length=SEQ_LEN,
        blend_per_split=[([str(p) for p in prefixes], weights), None, None],
        path_to_cache=None,  # GPTDataset: beside the prefix; BlendedDataset: not cached
        reset_position_ids=False,  # the reference's PreTrainingDataModule settings
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer=tokenizer,
    )
    builder = mbuilder.BlendedMegatronDatasetBuilder(
        mgpt.GPTDataset, [num_samples, None, None], lambda: True, config
    )
    return builder.build()[0]


@pytest.mark.parametrize(
    ("weights", "seed", "epochs"),
    [([50, 50], 1234, 1.7), ([50, 50], 7, 0.4), ([30, 70], 99, 2.3), ([20, 30, 50], 5, 1.1)],
    ids=["equal-pair", "equal-pair-part-epoch", "unequal-pair", "three-prefixes"],
)
def test_same_samples_in_the_same_order(
    prefixes: list[Path], weights: list[int], seed: int, epochs: float
) -> None:
    tokens = [IndexedDataset(p) for p in prefixes[: len(weights)]]
    num_samples = int(epochs * sum((ds.num_tokens - 1) // SEQ_LEN for ds in tokens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _megatron_blend(
            prefixes[: len(weights)], weights, seed=seed, num_samples=num_samples
        )
    ours = BlendedTrainDataset(tokens, weights, seq_len=SEQ_LEN, seed=seed, num_samples=num_samples)
    assert len(ours) == len(theirs) >= num_samples
    np.testing.assert_array_equal(theirs.dataset_index, ours.dataset_index)
    np.testing.assert_array_equal(theirs.dataset_sample_index, ours.dataset_sample_index)
    for mine, megatron in zip(ours.datasets, theirs.datasets, strict=True):
        assert mine.num_samples == megatron.num_samples  # the 0.5% surplus over each share
        np.testing.assert_array_equal(megatron.shuffle_index, mine.shuffle_index)
    for i in range(len(ours)):
        sample, window = theirs[i], ours[i]
        np.testing.assert_array_equal(sample["tokens"].numpy(), window[:-1])
        np.testing.assert_array_equal(sample["labels"].numpy(), window[1:])


@pytest.mark.parametrize("weights", [[1, 1], [3, 7], [1, 999], [2, 3, 5], [0.1, 0.7, 0.15, 0.05]])
def test_blending_indices_match_megatrons_helper(
    weights: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blended, "_CHUNKS", 64)  # passes of 64 x 1024 steps
    w = normalize_weights(weights)
    size = 300_003  # five passes of the chunked build, a partial last chunk
    dataset_index = np.zeros(size, dtype=np.int16)
    dataset_sample_index = np.zeros(size, dtype=np.int64)
    mhelpers.build_blending_indices(
        dataset_index, dataset_sample_index, np.asarray(w), len(w), size, False
    )
    ours = build_blending_indices(w, size)
    np.testing.assert_array_equal(dataset_index, ours.dataset_index)
    np.testing.assert_array_equal(dataset_sample_index, ours.dataset_sample_index)
