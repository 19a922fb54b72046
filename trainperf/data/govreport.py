"""The MLPerf GovReport files of llama2_70b_lora: parquet and .npy readers, writers, sample order.

Two published formats hold the same rows (mlperf_spec.md §2.2):

- parquet, ``train-00000-of-00001.parquet`` / ``validation-00000-of-00001.parquet`` (the
  reference's ``scrolls_gov_report_8k``; on the HF hub as
  ``regisss/scrolls_gov_report_preprocessed_mlperf_2``): list columns ``input_ids`` and
  ``labels``, labels equal to the input ids where the loss counts (the summary), -100 on the
  prompt;
- ``.npy`` of the NVIDIA and AMD submissions (``train.npy`` / ``validation.npy``): ``np.save`` of a
  list of dicts ``{"input_ids", "loss_mask": [int(l != -100)], "seq_start_id": [0]}``. Reading it
  unpickles Python objects: open only files from a source you trust.

Both read into ``TokenRows``: (N, L) token ids and the aligned loss mask. ``get_batch`` turns rows
into next-token ``(inputs, labels)`` exactly as HF ``LlamaForCausalLM`` shifts its labels.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

IGNORE_INDEX = -100
SPLITS = ("train", "validation")
PREPARE_HINT = "run `trainperf prepare llama2_70b_lora --data-dir D`"


def parquet_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def npy_name(split: str) -> str:
    return f"{split}.npy"


@dataclass(frozen=True)
class TokenRows:
    """Rows of one split, right-padded to the longest."""

    input_ids: np.ndarray
    """(N, L) int32 token ids, padded with 0."""
    loss_mask: np.ndarray
    """(N, L) bool: True where the token at that position is scored (labels != -100)."""
    lengths: np.ndarray
    """(N,) int32 tokens per row."""
    source: Path

    def __len__(self) -> int:
        return len(self.lengths)


def _pack(ids: list[np.ndarray], masks: list[np.ndarray], source: Path) -> TokenRows:
    if not ids:
        raise ValueError(f"{source} holds no rows; {PREPARE_HINT}")
    lengths = np.array([len(x) for x in ids], dtype=np.int32)
    width = int(lengths.max())
    input_ids = np.zeros((len(ids), width), dtype=np.int32)
    loss_mask = np.zeros((len(ids), width), dtype=bool)
    for i, (x, m) in enumerate(zip(ids, masks)):
        input_ids[i, : len(x)] = x
        loss_mask[i, : len(m)] = m
    return TokenRows(input_ids, loss_mask, lengths, source)


def _check_length(path: Path, i: int, n: int, max_seq_len: int) -> None:
    if n > max_seq_len:
        raise ValueError(
            f"{path}: row {i} has {n} tokens, more than the sequence length {max_seq_len}; "
            "use data prepared for this sequence length (or raise train.seq_len)"
        )


def read_parquet(path: Path, *, max_seq_len: int) -> TokenRows:
    """Rows of a GovReport parquet file (columns input_ids and labels)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; {PREPARE_HINT}") from None
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(
            f"cannot read {path} (corrupt or truncated parquet: {exc}); delete it and "
            f"{PREPARE_HINT}"
        ) from None
    missing = {"input_ids", "labels"} - set(table.column_names)
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {sorted(missing)} (found {table.column_names}); a "
            "GovReport file has input_ids and labels"
        )
    try:
        x_col = table.column("input_ids").combine_chunks()
        y_col = table.column("labels").combine_chunks()
        x_len = pc.list_value_length(x_col).to_numpy(zero_copy_only=False)
        y_len = pc.list_value_length(y_col).to_numpy(zero_copy_only=False)
        x_flat = x_col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        y_flat = y_col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: input_ids and labels must be lists of integers ({exc})"
        ) from None
    ids, masks = [], []
    starts = np.concatenate([[0], np.cumsum(x_len)])
    for i in range(len(x_len)):
        if x_len[i] != y_len[i]:
            raise ValueError(
                f"{path}: row {i} has {x_len[i]} input_ids but {y_len[i]} labels; they must match"
            )
        _check_length(path, i, int(x_len[i]), max_seq_len)
        x, y = x_flat[starts[i] : starts[i + 1]], y_flat[starts[i] : starts[i + 1]]
        scored = y != IGNORE_INDEX
        if not np.array_equal(y[scored], x[scored]):
            t = int(np.flatnonzero(scored & (y != x))[0])
            raise ValueError(
                f"{path}: row {i} position {t} has label {y[t]} but input id {x[t]}; labels "
                "must be the input ids, or -100 where the loss does not count"
            )
        ids.append(x.astype(np.int32))
        masks.append(scored)
    return _pack(ids, masks, path)


def read_npy(path: Path, *, max_seq_len: int) -> TokenRows:
    """Rows of an NVIDIA/AMD GovReport .npy file (dicts of input_ids, loss_mask, seq_start_id)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=True)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; {PREPARE_HINT}") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(
            f"cannot read {path} (corrupt or truncated .npy: {exc}); delete it and {PREPARE_HINT}"
        ) from None
    ids, masks = [], []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not {"input_ids", "loss_mask"} <= set(row):
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"{path}: row {i} is not a dict with input_ids and loss_mask (found {found})"
            )
        if len(row.get("seq_start_id", [0])) > 1:
            raise ValueError(
                f"{path}: row {i} packs {len(row['seq_start_id'])} sequences (seq_start_id); "
                "only one sequence per row is supported, as in the MLPerf files"
            )
        x = np.asarray(row["input_ids"], dtype=np.int64)
        m = np.asarray(row["loss_mask"]).astype(bool)
        if len(x) != len(m):
            raise ValueError(
                f"{path}: row {i} has {len(x)} input_ids but {len(m)} loss_mask entries"
            )
        _check_length(path, i, len(x), max_seq_len)
        ids.append(x.astype(np.int32))
        masks.append(m)
    return _pack(ids, masks, path)


def read_split(folder: Path, split: str, *, max_seq_len: int) -> TokenRows:
    """One split of a GovReport folder: the parquet file if present, else the .npy file."""
    assert split in SPLITS, split
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"data folder {folder} does not exist; {PREPARE_HINT}")
    parquet, npy = folder / parquet_name(split), folder / npy_name(split)
    if parquet.exists():
        return read_parquet(parquet, max_seq_len=max_seq_len)
    if npy.exists():
        return read_npy(npy, max_seq_len=max_seq_len)
    raise ValueError(
        f"no {split} data in {folder}: expected {parquet.name} or {npy.name}; {PREPARE_HINT}"
    )


# ---- sample order -------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """A permutation of range(n) that depends only on (seed, epoch): each row once per epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def sample_at(index: int, *, n: int, seed: int) -> int:
    """The row of global sample ``index`` (epoch = index // n)."""
    epoch, position = divmod(index, n)
    return int(epoch_order(n, seed=seed, epoch=epoch)[position])


def get_batch(
    rows: TokenRows, indices: Sequence[int], *, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (B, seq_len) and next-token labels (B, seq_len), int64.

    ``labels[b, t] = input_ids[row, t + 1]`` where that token is scored, else -100; the last
    position and the padding are -100 (what HF LlamaForCausalLM computes from shifted labels).
    """
    idx = np.asarray(indices, dtype=np.int64)
    width = rows.input_ids.shape[1]
    if width > seq_len:
        raise ValueError(f"rows of {width} tokens do not fit seq_len {seq_len}")
    inputs = np.zeros((len(idx), seq_len), dtype=np.int64)
    labels = np.full((len(idx), seq_len), IGNORE_INDEX, dtype=np.int64)
    ids, mask = rows.input_ids[idx], rows.loss_mask[idx]
    inputs[:, :width] = ids
    nxt = np.where(mask[:, 1:], ids[:, 1:], IGNORE_INDEX)
    labels[:, : width - 1] = nxt
    return torch.from_numpy(inputs), torch.from_numpy(labels)


# ---- writers ------------------------------------------------------------------------------------


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_parquet(
    path: Path, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> None:
    """A GovReport parquet file (list<int64> columns input_ids and labels), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.table(
        {
            "input_ids": pa.array(input_ids, type=pa.list_(pa.int64())),
            "labels": pa.array(labels, type=pa.list_(pa.int64())),
        }
    )
    tmp = _tmp(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_npy(
    path: Path, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> None:
    """A GovReport .npy file in the NVIDIA format, written atomically."""
    path = Path(path)
    rows = [
        {
            "input_ids": list(map(int, x)),
            "loss_mask": [int(v != IGNORE_INDEX) for v in y],
            "seq_start_id": [0],
        }
        for x, y in zip(input_ids, labels)
    ]
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.array(rows, dtype=object), allow_pickle=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def convert_parquet_to_npy(src: Path, dst: Path, *, max_seq_len: int = 1 << 30) -> None:
    """Write the .npy files of the NVIDIA/AMD submissions from a parquet GovReport folder."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = read_parquet(Path(src) / parquet_name(split), max_seq_len=max_seq_len)
        ids = [rows.input_ids[i, :n] for i, n in enumerate(rows.lengths)]
        labels = [
            np.where(rows.loss_mask[i, :n], rows.input_ids[i, :n], IGNORE_INDEX)
            for i, n in enumerate(rows.lengths)
        ]
        write_npy(Path(dst) / npy_name(split), ids, labels)


# ---- verification -------------------------------------------------------------------------------


def verify_split(
    folder: Path, split: str, *, expected_samples: int | None, max_seq_len: int
) -> str:
    rows = read_split(folder, split, max_seq_len=max_seq_len)
    if expected_samples is not None and len(rows) != expected_samples:
        raise ValueError(
            f"expected {expected_samples} {split} samples, found {len(rows)} in {rows.source}; "
            f"delete it and {PREPARE_HINT}"
        )
    scored = rows.loss_mask.sum(axis=1)
    return (
        f"{rows.source.name}: {len(rows)} samples, {int(rows.lengths.min())}-"
        f"{int(rows.lengths.max())} tokens, scored tokens per sample {int(scored.min())}-"
        f"{int(scored.max())} (mean {float(scored.mean()):.0f})"
    )


def verify_dataset(
    folder: Path, *, train_samples: int | None, eval_samples: int | None, max_seq_len: int
) -> list[str]:
    """One line per split; ValueError when a count or shape is wrong."""
    return [
        verify_split(folder, "train", expected_samples=train_samples, max_seq_len=max_seq_len),
        verify_split(folder, "validation", expected_samples=eval_samples, max_seq_len=max_seq_len),
    ]
