"""Megatron indexed dataset (``<prefix>.bin`` + ``<prefix>.idx``): the format of the MLPerf C4 data.

``.bin`` is the flat token array of all sequences back to back. ``.idx`` is, little endian:

    magic            b"MMIDIDX\\x00\\x00"     9 bytes
    version          <Q                     = 1
    dtype code       <B                     see DTYPE_CODES
    sequence count   <Q                     n
    document count   <Q                     d (= n + 1 entries of document_indices)
    sizes            int32[n]               tokens per sequence
    pointers         int64[n]               byte offset of each sequence in .bin
    document_indices int64[d]               sequence index where each document starts, then n

This is ``megatron.core.datasets.indexed_dataset`` (``_IndexWriter`` / ``_IndexReader``), which
NeMo uses for the MLPerf llama31_8b reference. Our writer makes every document one sequence.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from trainperf.atomic import atomic_path

INDEX_MAGIC = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
# Megatron's DType enum: the code stored in the .idx header for each token dtype.
DTYPE_CODES: dict[int, type[np.generic]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count
_PREPARE_HINT = "re-run trainperf prepare"


def best_fitting_dtype(vocab_size: int) -> np.dtype:
    """Token dtype for a vocabulary: uint16 below 65500 tokens, else int32 (Megatron's rule)."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size({vocab_size}) must be positive; pass the tokenizer's size")
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def get_dtype_code(dtype: np.dtype) -> int:
    """The .idx header code of ``dtype``; ValueError for a dtype the format cannot store."""
    for code, candidate in DTYPE_CODES.items():
        if np.dtype(candidate) == np.dtype(dtype):
            return code
    names = ", ".join(np.dtype(t).name for t in DTYPE_CODES.values())
    raise ValueError(
        f"dtype {np.dtype(dtype).name} cannot be stored in an indexed dataset; use one of {names}"
    )


def get_index_path(prefix: Path) -> Path:
    return Path(f"{prefix}.idx")


def get_bin_path(prefix: Path) -> Path:
    return Path(f"{prefix}.bin")


def write_indexed_dataset(
    prefix: Path, documents: Iterable[np.ndarray], *, dtype: np.dtype
) -> None:
    """Write ``documents`` (1-D integer arrays, streamed) as ``<prefix>.bin`` and ``<prefix>.idx``.

    Both files are written under temporary names and renamed into place only once complete, the
    old ``.idx`` is removed first: a crash leaves either nothing or a pair the reader rejects,
    never a pair that looks complete but is not.
    """
    dtype = np.dtype(dtype)
    code = get_dtype_code(dtype)
    prefix = Path(prefix)
    bin_path, idx_path = get_bin_path(prefix), get_index_path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # the .idx is what makes a pair look complete: it goes last, and away first
    with atomic_path(idx_path) as tmp_idx:
        with atomic_path(bin_path) as tmp_bin, open(tmp_bin, "wb") as f:
            sizes = [_write_document(f, doc, dtype, number) for number, doc in enumerate(documents)]
            idx_path.unlink(missing_ok=True)
        _write_index(tmp_idx, np.asarray(sizes, dtype=np.int64), dtype=dtype, code=code)


def _write_document(f: Any, doc: np.ndarray, dtype: np.dtype, number: int) -> int:
    doc = np.asarray(doc)
    if doc.ndim != 1:
        raise ValueError(f"document {number} has shape {doc.shape}; pass 1-D token arrays")
    if doc.size and doc.dtype.kind in "iu" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = int(doc.min()), int(doc.max())
        if low < info.min or high > info.max:
            raise ValueError(
                f"document {number} has tokens in [{low}, {high}] that do not fit "
                f"{dtype.name}; pick dtype=best_fitting_dtype(vocab_size)"
            )
    if doc.size >= 2**31:
        raise ValueError(
            f"document {number} has {doc.size} tokens, more than int32 sizes hold; "
            "split it into smaller documents"
        )
    f.write(doc.astype(dtype, copy=False).tobytes(order="C"))
    return int(doc.size)


def _write_index(path: Path, sizes: np.ndarray, *, dtype: np.dtype, code: int) -> None:
    n = len(sizes)
    pointers = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(sizes[:-1] * dtype.itemsize, out=pointers[1:])
    document_indices = np.arange(n + 1, dtype=np.int64)  # one sequence per document
    with open(path, "wb") as f:
        f.write(_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, code, n, len(document_indices)))
        f.write(sizes.astype("<i4").tobytes())
        f.write(pointers.astype("<i8").tobytes())
        f.write(document_indices.astype("<i8").tobytes())


class IndexedDataset:
    """Read-only, memory-mapped ``<prefix>.bin`` / ``<prefix>.idx`` pair.

    ``sizes`` (int32, tokens per sequence), ``pointers`` (int64, byte offsets into .bin) and
    ``document_indices`` (int64) come straight from the .idx; ``len()`` is the sequence count.
    Every inconsistency between header, .idx length and .bin length is a ValueError that names
    the file and the fix.
    """

    def __init__(self, prefix: Path | str) -> None:
        self.prefix = Path(prefix)
        self.index_path = get_index_path(self.prefix)
        self.bin_path = get_bin_path(self.prefix)
        for path in (self.index_path, self.bin_path):
            if not path.is_file():
                raise ValueError(
                    f"missing {path}; create it with trainperf prepare "
                    f"(or check the data path prefix {self.prefix})"
                )
        self._read_index()
        self._map_bin()

    def _read_index(self) -> None:
        path = self.index_path
        file_size = path.stat().st_size
        if file_size < _HEADER.size:
            raise ValueError(
                f"truncated .idx {path}: {file_size} bytes is shorter than the "
                f"{_HEADER.size}-byte header; {_PREPARE_HINT}"
            )
        with open(path, "rb") as f:
            magic, version, code, n, d = _HEADER.unpack(f.read(_HEADER.size))
        if magic != INDEX_MAGIC:
            raise ValueError(
                f"{path} is not a Megatron indexed dataset (magic {magic!r}, "
                f"expected {INDEX_MAGIC!r}); {_PREPARE_HINT}"
            )
        if version != INDEX_VERSION:
            raise ValueError(
                f"{path} has index version {version}, only {INDEX_VERSION} is "
                f"supported; {_PREPARE_HINT}"
            )
        if code not in DTYPE_CODES:
            raise ValueError(
                f"{path} has unknown dtype code {code} (known: "
                f"{sorted(DTYPE_CODES)}); {_PREPARE_HINT}"
            )
        expected = _HEADER.size + 4 * n + 8 * n + 8 * d
        if file_size < expected:
            raise ValueError(
                f"truncated .idx {path}: the header promises {n} sequences and {d} "
                f"document indices ({expected} bytes), found {file_size} bytes; "
                f"{_PREPARE_HINT}"
            )
        self.dtype = np.dtype(DTYPE_CODES[code])
        # frombuffer over one uint8 memmap: zero-length arrays work, and nothing is read yet.
        buffer = np.memmap(path, dtype=np.uint8, mode="r")
        offset = _HEADER.size
        self.sizes = np.frombuffer(buffer, dtype="<i4", count=n, offset=offset)
        offset += 4 * n
        self.pointers = np.frombuffer(buffer, dtype="<i8", count=n, offset=offset)
        offset += 8 * n
        self.document_indices = np.frombuffer(buffer, dtype="<i8", count=d, offset=offset)
        if d and (self.document_indices[0] != 0 or self.document_indices[-1] != n):
            raise ValueError(
                f"corrupt .idx {path}: document_indices must run from 0 to {n}, "
                f"found {self.document_indices[0]}..{self.document_indices[-1]}; "
                f"{_PREPARE_HINT}"
            )

    def _map_bin(self) -> None:
        path = self.bin_path
        found = path.stat().st_size
        itemsize = self.dtype.itemsize
        if len(self.sizes):
            ends = self.pointers.astype(np.int64) + self.sizes.astype(np.int64) * itemsize
            expected = int(ends.max())
        else:
            expected = 0
        if found < expected:
            raise ValueError(
                f"truncated .bin {path}: expected {expected} bytes, found {found}; {_PREPARE_HINT}"
            )
        self.num_tokens = int(self.sizes.sum(dtype=np.int64))
        if found == 0:  # mmap refuses empty files
            self._tokens = np.empty(0, dtype=self.dtype)
        else:
            usable = found - found % itemsize  # ignore a trailing partial token
            self._tokens = np.memmap(path, dtype=np.uint8, mode="r")[:usable].view(self.dtype)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def tokens(self) -> np.ndarray:
        """All tokens of the .bin as one read-only memory-mapped array."""
        return self._tokens[: self.num_tokens]

    def get(self, i: int, *, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of sequence ``i`` (to its end if length is None).

        Returns a read-only view into the memory map; copy it to keep or modify it.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sequence {i} out of range for {n} sequences in {self.prefix}")
        i = i % n
        size = int(self.sizes[i])
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(
                f"offset({offset}) + length({length}) outside sequence {i} of "
                f"{size} tokens in {self.prefix}"
            )
        start = int(self.pointers[i]) // self.dtype.itemsize + offset
        return np.asarray(self._tokens[start : start + length])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def __repr__(self) -> str:
        return (
            f"IndexedDataset({str(self.prefix)!r}, sequences={len(self)}, "
            f"tokens={self.num_tokens}, dtype={self.dtype.name})"
        )

    # Pickle by path, so DataLoader workers reopen the memory maps instead of copying them.
    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"])  # type: ignore[misc]
