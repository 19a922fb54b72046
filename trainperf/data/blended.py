"""Training samples drawn from several Megatron datasets by weight: megatron-core's BlendedDataset.

The MLPerf llama31_405b reference (``pretrain_llama31.py::get_data``) passes NeMo's
``PreTrainingDataModule`` ``paths={"train": ["50", en_6, "50", en_7], ...}``, so megatron-core's
``BlendedMegatronDatasetBuilder`` builds the training split from a blend (here as in
megatron-core 0.16.1, ``blend_per_split``):

- the weights are normalized (``w / sum(w)``);
- each prefix becomes one ``GPTDataset`` over its whole file, with the run seed, asked for
  ``ceil(ceil(N * w) * (1 + 0.005))`` samples (``_get_size_per_split_per_dataset`` with the
  ``mid_level_dataset_surplus`` margin), ``N`` being the split's request (``max_steps x GBS``);
- the blend holds ``sum(ceil(N * w))`` samples (at least ``N``); its sample ``i`` is sample
  ``dataset_sample_index[i]`` of dataset ``dataset_index[i]``, two arrays built by
  ``helpers.build_blending_indices``: step ``i`` takes the dataset furthest behind its share,
  the largest ``w[d] * max(i, 1) - taken[d]`` in float64 (the first on ties), and its next sample.
  The blend shuffles nothing itself: each dataset's samples come in its own shuffled order.

Megatron builds no blend for one prefix, only its ``GPTDataset`` of ``N`` samples: a
``BlendedTrainDataset`` of one prefix gives those samples (the reader uses ``GPTTrainDataset``).
``tests/unit/data/test_blended_parity.py`` checks every sample against megatron-core itself.
The greedy is sequential, so the indices are built chunk-parallel: every chunk of ``_CHUNK``
steps is run from a guess of its starting counts, all chunks at once in numpy; each chunk whose
guess was wrong is then re-run one step at a time from its true start until it meets its guessed
run (the greedy forgets a wrong start within a few steps). At 1.4 billion samples (the 405B
reference at GBS 1152) that takes about 90 s on two CPU cores and 14 GB of ``.npy`` files, as
megatron's; they are cached beside GPTDataset's indices and memory-mapped on reuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trainperf.atomic import atomic_path
from trainperf.data.gpt_dataset import GPTTrainDataset
from trainperf.data.indexed import IndexedDataset

# megatron BlendedMegatronDatasetConfig.mid_level_dataset_surplus: each dataset is built for a
# 0.5% margin over its share, so the blend never asks one for more samples than it holds.
MID_LEVEL_DATASET_SURPLUS = 0.005
_CHUNK = 1024  # greedy steps per chunk, run from a guessed start
_CHUNKS = 1 << 15  # chunks run at once (32 M samples per pass)
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


class BlendIndices(NamedTuple):
    dataset_index: np.ndarray  # (size,) int16: which dataset sample i comes from
    dataset_sample_index: np.ndarray  # (size,) int64: that dataset's sample number


def normalize_weights(weights: Sequence[float]) -> list[float]:
    """Megatron ``utils.normalize``: ``w / sum(w)`` in float64; ValueError unless every weight is
    a positive finite number."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise ValueError(
            f"blend weights {list(weights)} must be one or more positive numbers, e.g. [50, 50] "
            "for an equal blend of two prefixes"
        )
    return (w / w.sum()).tolist()


def get_blend_sizes(
    weights: Sequence[float], num_samples: int, *, surplus: float = 0.0
) -> list[int]:
    """Megatron ``_get_size_per_split_per_dataset`` for one split: each dataset's share of
    ``num_samples``, ``ceil(ceil(num_samples * w) * (1 + surplus))`` (``weights`` normalized)."""
    return [math.ceil(math.ceil(num_samples * w) * (1 + surplus)) for w in weights]


def build_blending_indices(weights: Sequence[float], size: int) -> BlendIndices:
    """Megatron ``helpers.build_blending_indices`` for normalized ``weights``: ``size`` samples,
    step ``i`` taking the next sample of the dataset with the largest ``w[d] * max(i, 1) -
    taken[d]``."""
    out = BlendIndices(np.empty(size, dtype=np.int16), np.empty(size, dtype=np.int64))
    fill_blending_indices(weights, out)
    return out


def fill_blending_indices(weights: Sequence[float], out: BlendIndices) -> np.ndarray:
    """``build_blending_indices`` into ``out`` (arrays or memory maps of one length); returns the
    samples taken from each dataset."""
    w = np.asarray(weights, dtype=np.float64)
    assert 0 < len(w) < np.iinfo(np.int16).max, "megatron stores dataset numbers as int16"
    size = len(out.dataset_index)
    taken = np.zeros(len(w), dtype=np.int64)
    for base in range(0, size, _CHUNK * _CHUNKS):
        n = min(_CHUNK * _CHUNKS, size - base)
        starts = base + np.arange(-(-n // _CHUNK), dtype=np.int64) * _CHUNK
        guess = _guess_taken(w, starts)
        picks, samples, ends = _run_chunks(w, starts, guess)
        lengths = np.minimum(_CHUNK, base + n - starts)
        true_starts = np.concatenate([taken[:, None], ends[:, :-1]], axis=1)
        _repair(w, starts, lengths, guess, true_starts, picks, samples)
        taken = true_starts[:, -1] + np.bincount(picks[: lengths[-1], -1], minlength=len(w))
        out.dataset_index[base : base + n] = picks.T.reshape(-1)[:n]
        out.dataset_sample_index[base : base + n] = samples.T.reshape(-1)[:n]
    return taken.astype(np.int64)


def _guess_taken(w: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(datasets, chunks) float64: samples taken from each dataset before each start, guessed as
    the share ``floor(w * i)`` plus what is left over to the largest remainders."""
    ideal = w[:, None] * starts[None, :].astype(np.float64)
    guess = np.floor(ideal)
    left = starts - guess.sum(axis=0)
    rank = np.argsort(np.argsort(guess - ideal, axis=0, kind="stable"), axis=0)
    return guess + (rank < left[None, :])


def _run_chunks(
    w: np.ndarray, starts: np.ndarray, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy for ``_CHUNK`` steps from every start at once, from ``taken`` (datasets,
    chunks) float64: the picks (steps, chunks) int16, the sample numbers taken (steps, chunks)
    int64 and the counts after the last step (datasets, chunks)."""
    taken = taken.copy()
    flat = taken.reshape(-1)
    columns = np.arange(len(starts))
    first = starts.astype(np.float64)
    picks = np.empty((_CHUNK, len(starts)), dtype=np.int16)
    samples = np.empty((_CHUNK, len(starts)), dtype=np.int64)
    for t in range(_CHUNK):
        s = np.maximum(first + t, 1.0)  # megatron: max(sample_idx, 1) as a double
        best = w[0] * s - taken[0]
        pick = np.zeros(len(starts), dtype=np.intp)
        for d in range(1, len(w)):  # the first largest error wins, as in megatron's loop
            error = w[d] * s - taken[d]
            pick[error > best] = d
            best = np.maximum(best, error)
        at = pick * len(starts) + columns
        picks[t] = pick
        samples[t] = flat[at]
        flat[at] += 1
    return picks, samples, taken


def _repair(
    w: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    guess: np.ndarray,
    true_starts: np.ndarray,
    picks: np.ndarray,
    samples: np.ndarray,
) -> None:
    """Re-run, in order, each chunk whose guessed start is not its true start (``true_starts``:
    the previous chunk's end, corrected here when a re-run chunk never met its guessed run)."""
    rerun = (guess != true_starts).any(axis=0).tolist()
    weights = w.tolist()
    for j in range(len(starts)):
        if not rerun[j]:
            continue
        end = _replay(weights, int(starts[j]), true_starts[:, j], guess[:, j],
                      picks[: lengths[j], j], samples[: lengths[j], j])  # fmt: skip
        if end is not None and j + 1 < len(starts):  # its end is not the guessed run's
            true_starts[:, j + 1] = end
            rerun[j + 1] = end != guess[:, j + 1].tolist()


def _replay(
    weights: list[float],
    first: int,
    start: np.ndarray,
    guess: np.ndarray,
    picks: np.ndarray,
    samples: np.ndarray,
) -> list[float] | None:
    """One chunk stepped from its true ``start`` (views of its picks and samples, rewritten)
    until its counts equal those of the run from ``guess`` at the same step, after which the two
    runs are the same. Returns the true end counts, or None when the runs met."""
    taken, guessed = start.tolist(), guess.tolist()
    for t in range(len(picks)):
        if taken == guessed:
            return None
        guessed[picks[t]] += 1
        s = float(max(first + t, 1))
        errors = [weight * s - count for weight, count in zip(weights, taken)]
        d = errors.index(max(errors))  # the first largest, as in megatron's loop
        picks[t], samples[t] = d, taken[d]
        taken[d] += 1
    return None if taken == guessed else taken


def load_or_build_blending_indices(
    weights: Sequence[float], size: int, *, cache_dir: Path | None
) -> tuple[BlendIndices, list[int]]:
    """``build_blending_indices`` and the samples taken per dataset, cached in ``cache_dir``
    (None: not cached) under a hash of the weights and size (all they depend on). The arrays are
    built straight into temporary ``.npy`` files, renamed when complete, the description (which
    holds the counts) last; reuse memory-maps them."""
    if cache_dir is None:
        out = BlendIndices(np.empty(size, dtype=np.int16), np.empty(size, dtype=np.int64))
        return out, fill_blending_indices(weights, out).tolist()
    description = {
        "format": _CACHE_FORMAT,
        "class": "BlendedTrainDataset",
        "weights": list(weights),
        "size": size,
    }
    key = hashlib.md5(json.dumps(description, sort_keys=True).encode()).hexdigest()
    names = [Path(cache_dir) / f"{key}-blend-{field}.npy" for field in BlendIndices._fields]
    described = Path(cache_dir) / f"{key}-blend-description.json"
    if described.is_file() and all(p.is_file() for p in names):
        try:
            taken = json.loads(described.read_text())["taken"]
            return BlendIndices(*(np.load(p, mmap_mode="r") for p in names)), taken
        except (ValueError, OSError, KeyError):
            pass  # unreadable cache entry: rebuild it below
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) for p in names]
        dtypes = (np.int16, np.int64)
        out = BlendIndices(
            *(
                np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(size,))
                for tmp, dtype in zip(tmps, dtypes)
            )
        )
        taken = fill_blending_indices(weights, out).tolist()
        for array in out:
            array.flush()
        del out
    with atomic_path(described) as tmp:
        tmp.write_text(json.dumps({**description, "taken": taken}, indent=1, sort_keys=True))
    return BlendIndices(*(np.load(p, mmap_mode="r") for p in names)), taken


class BlendedTrainDataset:
    """Training windows drawn from ``datasets`` by ``weights``: ``ds[i]`` is (seq_len + 1,) int64.

    Sample ``i`` is megatron BlendedDataset's sample ``i`` for the same prefixes, weights, seed,
    seq_len and ``num_samples`` (the reference's ``max_steps x global_batch_size``); the blend
    holds ``len(ds) >= num_samples`` samples. ``cache_dir`` keeps every index between runs.
    """

    def __init__(
        self,
        datasets: Sequence[IndexedDataset],
        weights: Sequence[float],
        *,
        seq_len: int,
        seed: int,
        num_samples: int,
        cache_dir: Path | None = None,
    ) -> None:
        if len(datasets) != len(weights):
            raise ValueError(
                f"a blend of {len(datasets)} datasets needs {len(datasets)} weights, got "
                f"{len(weights)} ({list(weights)}); give one weight per prefix"
            )
        if num_samples <= 0:
            raise ValueError(f"num_samples({num_samples}) must be positive")
        # normalized once by the builder (the datasets' sizes), again by BlendedDataset (its index)
        shares = normalize_weights(weights)
        self.weights = normalize_weights(shares)
        targets = get_blend_sizes(shares, num_samples)
        sizes = get_blend_sizes(shares, num_samples, surplus=MID_LEVEL_DATASET_SURPLUS)
        if len(datasets) == 1:  # megatron: no blend, the one GPTDataset of num_samples
            sizes = targets
        self.datasets = [
            GPTTrainDataset(ds, seq_len=seq_len, seed=seed, num_samples=n, cache_dir=cache_dir)
            for ds, n in zip(datasets, sizes)
        ]
        self.seq_len = seq_len
        self.num_samples = sum(targets)
        indices, taken = load_or_build_blending_indices(
            self.weights, self.num_samples, cache_dir=cache_dir
        )
        for ds, count in zip(self.datasets, taken):
            assert count <= len(ds), f"the blend takes {count} samples of {ds.dataset.prefix}"
        self.dataset_index, self.dataset_sample_index = indices

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} out of range for {self.num_samples} samples")
        ds = self.datasets[int(self.dataset_index[i])]
        return ds[int(self.dataset_sample_index[i])]

    def source(self, i: int) -> IndexedDataset:
        """The indexed dataset sample ``i`` comes from."""
        return self.datasets[int(self.dataset_index[i])].dataset
