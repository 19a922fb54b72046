"""The MLPerf GovReport files of llama2_70b_lora: parquet and .npy readers, writers, sample order.

Two published formats hold the same rows (mlperf_spec.md §2.2):

- parquet, ``train-00000-of-00001.parquet`` / ``validation-00000-of-00001.parquet`` (the
  reference's ``scrolls_gov_report_8k``; on the HF hub as
  ``regisss/scrolls_gov_report_preprocessed_mlperf_2``): list columns ``input_ids`` and
  ``labels``, labels equal to the input ids where the loss counts (the summary), -100 on the
  prompt;
- ``.npy`` of the NVIDIA and AMD submissions (``train.npy`` / ``validation.npy``): ``np.save`` of a
  list of dicts ``{"input_ids", "loss_mask": [int(l != -100)], "seq_start_id": [0]}``. Reading it
  unpickles Python objects, which can run code: open only files from a source you trust.

Both read into ``TokenRows``: (N, L) token ids and the aligned loss mask. ``get_batch`` turns rows
into next-token ``(inputs, labels)`` exactly as HF ``LlamaForCausalLM`` shifts its labels.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
import torch

from trainperf.atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

IGNORE_INDEX = -100
PAD_ID = 0
SPLITS = ("train", "validation")
Split = Literal["train", "validation"]
PREPARE_HINT = "re-run `trainperf prepare llama2_70b_lora --data-dir D`"
_SPLIT_WORDS = {"train": "training", "validation": "validation"}


def parquet_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def npy_name(split: str) -> str:
    return f"{split}.npy"


@dataclass(frozen=True, eq=False)
class TokenRows:
    """Rows of one split, right-padded to the longest."""

    input_ids: np.ndarray
    """(N, L) int32 token ids, padded with ``PAD_ID``."""
    loss_mask: np.ndarray
    """(N, L) bool: True where the token at that position counts for the loss (labels != -100);
    False on the prompt and the padding (NVIDIA's ``loss_mask``)."""
    lengths: np.ndarray
    """(N,) int32 tokens per row."""
    source: Path
    """The file the rows were read from."""

    def __len__(self) -> int:
        return len(self.lengths)


def _pack(ids: list[np.ndarray], masks: list[np.ndarray], source: Path) -> TokenRows:
    lengths = np.array([len(x) for x in ids], dtype=np.int32)
    width = int(lengths.max())
    input_ids = np.full((len(ids), width), PAD_ID, dtype=np.int32)
    loss_mask = np.zeros((len(ids), width), dtype=bool)
    for i, (x, m) in enumerate(zip(ids, masks)):
        input_ids[i, : len(x)] = x
        loss_mask[i, : len(m)] = m
    return TokenRows(input_ids, loss_mask, lengths, source)


def _check_rows(path: Path, lengths: np.ndarray, max_seq_len: int) -> None:
    """At least one row, none over ``max_seq_len``."""
    if len(lengths) == 0:
        raise ValueError(f"{path} holds no rows; delete it and {PREPARE_HINT}")
    if (too_long := np.flatnonzero(lengths > max_seq_len)).size:
        i = int(too_long[0])
        raise ValueError(
            f"{path}: row {i} has {int(lengths[i])} tokens, more than the sequence length "
            f"{max_seq_len}; use data prepared for this sequence length (or raise train.seq_len)"
        )


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["no detail"])[0][:200]


def _row_and_position(lengths: np.ndarray, k: int) -> tuple[int, int]:
    """(row, position) of element ``k`` of the concatenated rows."""
    ends = np.cumsum(lengths, dtype=np.int64)
    i = int(np.searchsorted(ends, k, side="right"))
    return i, k - int(ends[i] - lengths[i])


def _read_list_column(table: pa.Table, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (N,), flat values) of an integer list column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    t = col.type
    listish = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if not listish or not pa.types.is_integer(t.value_type):
        raise ValueError(f"{path}: column {name} is {t}, not a list of integers")
    flat = pc.list_flatten(col)
    if col.null_count or flat.null_count:
        raise ValueError(f"{path}: column {name} holds null values; {PREPARE_HINT}")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths, flat.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def read_parquet(path: Path, *, max_seq_len: int) -> TokenRows:
    """Rows of a GovReport parquet file (list columns ``input_ids`` and ``labels``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; {PREPARE_HINT}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ValueError(
            f"cannot read {path}: corrupt or truncated parquet ({_line(exc)}); delete it and "
            f"{PREPARE_HINT}"
        ) from None
    missing = [c for c in ("input_ids", "labels") if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {missing} (found {table.column_names}); a GovReport file "
            f"has list columns input_ids and labels; {PREPARE_HINT}"
        )
    x_len, x = _read_list_column(table, "input_ids", path)
    y_len, y = _read_list_column(table, "labels", path)
    if (diff := np.flatnonzero(x_len != y_len)).size:
        i = int(diff[0])
        raise ValueError(
            f"{path}: row {i} has {x_len[i]} input_ids but {y_len[i]} labels; they must match"
        )
    _check_rows(path, x_len, max_seq_len)
    if (bad := np.flatnonzero((x < 0) | (x > np.iinfo(np.int32).max))).size:
        i, t = _row_and_position(x_len, int(bad[0]))
        raise ValueError(f"{path}: row {i} position {t} has token id {x[bad[0]]}, out of range")
    scored = y != IGNORE_INDEX
    # The reference's labels are the input ids with -100 on the prompt: anything else would train
    # a different task, so one flat comparison over all rows checks it.
    if (wrong := np.flatnonzero(scored & (y != x))).size:
        k = int(wrong[0])
        i, t = _row_and_position(x_len, k)
        raise ValueError(
            f"{path}: row {i} position {t} has label {y[k]} but input id {x[k]}; labels must be "
            "the input ids, or -100 where the loss does not count"
        )
    ends = np.cumsum(x_len)
    starts = ends - x_len
    ids = [x[s:e] for s, e in zip(starts, ends)]
    return _pack(ids, [scored[s:e] for s, e in zip(starts, ends)], path)


def _npy_row(path: Path, i: int, row: object) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(row, dict) or not {"input_ids", "loss_mask"} <= row.keys():
        found = sorted(map(str, row)) if isinstance(row, dict) else type(row).__name__
        raise ValueError(
            f"{path}: row {i} is not a dict with input_ids and loss_mask (found {found}); "
            f"{PREPARE_HINT}"
        )
    if len(starts := row.get("seq_start_id", [0])) > 1:
        raise ValueError(
            f"{path}: row {i} packs {len(starts)} sequences (seq_start_id {list(starts)[:4]}); "
            "only one sequence per row is supported, as in the MLPerf GovReport files"
        )
    x = np.asarray(row["input_ids"])
    m = np.asarray(row["loss_mask"])
    if x.ndim != 1 or m.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{path}: row {i} input_ids/loss_mask are not lists of integers")
    if len(x) != len(m):
        raise ValueError(f"{path}: row {i} has {len(x)} input_ids but {len(m)} loss_mask entries")
    if len(x) and (x.min() < 0 or x.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{path}: row {i} holds a token id out of range ({x.min()}-{x.max()})")
    if m.dtype != bool and ((m != 0) & (m != 1)).any():
        raise ValueError(f"{path}: row {i} loss_mask holds values other than 0 and 1")
    return x.astype(np.int64, copy=False), m.astype(bool, copy=False)


def read_npy(path: Path, *, max_seq_len: int) -> TokenRows:
    """Rows of an NVIDIA/AMD GovReport .npy file (dicts of input_ids, loss_mask, seq_start_id).

    The file is unpickled (``allow_pickle=True``), which can run code: read only trusted files.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; {PREPARE_HINT}")
    try:
        data = np.load(path, allow_pickle=True)
    except Exception as exc:  # unpickling damaged bytes can raise almost any exception type
        raise ValueError(
            f"cannot read {path}: corrupt or truncated .npy ({type(exc).__name__}: {_line(exc)}); "
            f"delete it and {PREPARE_HINT}"
        ) from None
    if not isinstance(data, np.ndarray) or data.ndim != 1:
        shape = getattr(data, "shape", type(data).__name__)
        raise ValueError(f"{path} holds {shape}, not a list of rows; {PREPARE_HINT}")
    rows = [_npy_row(path, i, row) for i, row in enumerate(data)]
    ids, masks = [x for x, _ in rows], [m for _, m in rows]
    _check_rows(path, np.array([len(x) for x in ids], dtype=np.int64), max_seq_len)
    return _pack(ids, masks, path)


def read_split(folder: Path, split: Split, *, max_seq_len: int) -> TokenRows:
    """One split of a GovReport folder: the parquet file if present, else the .npy file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    folder = Path(folder)
    parquet, npy = folder / parquet_name(split), folder / npy_name(split)
    if parquet.is_file():
        return read_parquet(parquet, max_seq_len=max_seq_len)
    if npy.is_file():
        return read_npy(npy, max_seq_len=max_seq_len)
    where = "does not exist" if not folder.is_dir() else "holds neither"
    raise ValueError(
        f"no {split} data: {folder} {where} {parquet.name} nor {npy.name}; {PREPARE_HINT}"
    )


# ---- sample order -------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """A read-only permutation of range(n) that depends only on (seed, epoch)."""
    if n <= 0 or seed < 0 or epoch < 0:
        raise ValueError(f"need n > 0, seed >= 0, epoch >= 0; got n={n} seed={seed} epoch={epoch}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    order.setflags(write=False)  # shared through the cache
    return order


def sample_at(index: int, *, n: int, seed: int) -> int:
    """The row of global sample ``index``: epoch ``index // n`` visits each row exactly once."""
    epoch, position = divmod(index, n)
    return int(epoch_order(n, seed=seed, epoch=epoch)[position])


def get_batch(
    rows: TokenRows, indices: Sequence[int], *, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (B, seq_len) and next-token labels (B, seq_len), int64.

    ``labels[b, t] = input_ids[row, t + 1]`` where that token counts for the loss, else -100; the
    last position and the padding are -100. This is the shift HF ``LlamaForCausalLM`` applies to
    its ``labels``, so a per-sample cross-entropy with ignore_index=-100 reproduces HF's loss.
    """
    idx = np.asarray(indices, dtype=np.int64)
    width = rows.input_ids.shape[1]
    if width > seq_len:
        raise ValueError(f"{rows.source}: rows of {width} tokens do not fit seq_len {seq_len}")
    ids, mask = rows.input_ids[idx], rows.loss_mask[idx]  # (B, L)
    inputs = np.full((len(idx), seq_len), PAD_ID, dtype=np.int64)
    labels = np.full((len(idx), seq_len), IGNORE_INDEX, dtype=np.int64)
    inputs[:, :width] = ids
    labels[:, : max(width - 1, 0)] = np.where(mask[:, 1:], ids[:, 1:], IGNORE_INDEX)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


# ---- writers ------------------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a partial file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _check_pairs(path: Path, input_ids: Sequence, labels: Sequence) -> None:
    if len(input_ids) != len(labels):
        raise ValueError(f"{path}: {len(input_ids)} input_ids rows but {len(labels)} labels rows")
    for i, (x, y) in enumerate(zip(input_ids, labels)):
        if len(x) != len(y):
            raise ValueError(f"{path}: row {i} has {len(x)} input_ids but {len(y)} labels")


def write_parquet(
    path: Path, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> None:
    """A GovReport parquet file (list<int64> columns input_ids and labels), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_pairs(Path(path), input_ids, labels)
    table = pa.table(
        {
            "input_ids": pa.array(list(input_ids), type=pa.list_(pa.int64())),
            "labels": pa.array(list(labels), type=pa.list_(pa.int64())),
        }
    )
    _write_atomic(path, lambda f: pq.write_table(table, f))


def write_npy(
    path: Path, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> None:
    """A GovReport .npy file in the NVIDIA format (``convert_dataset.py``), written atomically."""
    _check_pairs(Path(path), input_ids, labels)
    rows = [
        {
            "input_ids": np.asarray(x, dtype=np.int64).tolist(),
            "loss_mask": (np.asarray(y) != IGNORE_INDEX).astype(np.int64).tolist(),
            "seq_start_id": [0],
        }
        for x, y in zip(input_ids, labels)
    ]
    data = np.empty(len(rows), dtype=object)  # 1-D array of dicts, as np.save(list_of_dicts)
    data[:] = rows
    _write_atomic(path, lambda f: np.save(f, data, allow_pickle=True))


def convert_parquet_to_npy(src_folder: Path, dst_folder: Path) -> None:
    """Write ``train.npy`` / ``validation.npy`` (NVIDIA/AMD format) from a parquet folder."""
    Path(dst_folder).mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = read_parquet(Path(src_folder) / parquet_name(split), max_seq_len=sys.maxsize)
        ids = [rows.input_ids[i, :n] for i, n in enumerate(rows.lengths)]
        masks = [rows.loss_mask[i, :n] for i, n in enumerate(rows.lengths)]
        labels = [np.where(m, x, IGNORE_INDEX) for x, m in zip(ids, masks)]
        write_npy(Path(dst_folder) / npy_name(split), ids, labels)


# ---- verification -------------------------------------------------------------------------------


def verify_split(
    folder: Path, split: Split, *, expected_samples: int | None, max_seq_len: int
) -> str:
    """One human line about a split; ValueError when its count or shape is wrong."""
    rows = read_split(folder, split, max_seq_len=max_seq_len)
    word = _SPLIT_WORDS[split]
    if expected_samples is not None and len(rows) != expected_samples:
        raise ValueError(
            f"expected {expected_samples} {word} samples, found {len(rows)} in {rows.source}; "
            f"{PREPARE_HINT}"
        )
    # Position 0 is never a next-token target: a row needs a labelled token after it, else its
    # mean loss is 0/0.
    targets = rows.loss_mask[:, 1:].sum(axis=1)
    if (empty := np.flatnonzero(targets == 0)).size:
        raise ValueError(
            f"{rows.source}: row {int(empty[0])} has no labelled token after position 0, so its "
            f"loss is undefined ({empty.size} such rows); {PREPARE_HINT}"
        )
    labelled = rows.loss_mask.sum(axis=1)
    return (
        f"{word}: {rows.source.name}: {len(rows)} samples, shape {tuple(rows.input_ids.shape)}, "
        f"{int(rows.lengths.min())}-{int(rows.lengths.max())} tokens per sample, "
        f"{int(labelled.min())}-{int(labelled.max())} labelled (total {int(labelled.sum())})"
    )


def verify_dataset(
    folder: Path, *, train_samples: int | None, eval_samples: int | None, max_seq_len: int
) -> list[str]:
    """One line per split (train, validation); ValueError when a count or shape is wrong.

    The expected counts are parameters (the benchmark module owns them: 3901 and 173 for the
    MLPerf files, sequence length 8192).
    """
    return [
        verify_split(folder, "train", expected_samples=train_samples, max_seq_len=max_seq_len),
        verify_split(folder, "validation", expected_samples=eval_samples, max_seq_len=max_seq_len),
    ]
