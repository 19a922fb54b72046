"""Megatron indexed dataset: round trip, exact header bytes, and the error messages."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from trainperf.data.indexed import (
    INDEX_MAGIC,
    IndexedDataset,
    best_fitting_dtype,
    write_indexed_dataset,
)


def make_documents(*, vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=n) for n in (5, 1, 0, 17, 3)]


def test_best_fitting_dtype() -> None:
    assert best_fitting_dtype(2048) == np.uint16
    assert best_fitting_dtype(65499) == np.uint16
    assert best_fitting_dtype(65500) == np.int32
    assert best_fitting_dtype(128256) == np.int32  # Llama 3.1


@pytest.mark.parametrize(("vocab", "dtype"), [(2048, np.uint16), (128256, np.int32)])
def test_round_trip(tmp_path: Path, vocab: int, dtype: type) -> None:
    docs = make_documents(vocab=vocab)
    write_indexed_dataset(tmp_path / "d", iter(docs), dtype=np.dtype(dtype))
    ds = IndexedDataset(tmp_path / "d")
    assert len(ds) == len(docs)
    assert ds.dtype == dtype
    assert ds.num_tokens == sum(len(d) for d in docs)
    assert ds.sizes.tolist() == [len(d) for d in docs]
    assert ds.document_indices.tolist() == list(range(len(docs) + 1))
    itemsize = np.dtype(dtype).itemsize
    assert (
        ds.pointers.tolist() == (np.cumsum([0] + [len(d) for d in docs[:-1]]) * itemsize).tolist()
    )
    for i, doc in enumerate(docs):
        np.testing.assert_array_equal(ds.get(i), doc)
    np.testing.assert_array_equal(ds.get(3, offset=2, length=4), docs[3][2:6])
    np.testing.assert_array_equal(ds.get(3, offset=10), docs[3][10:])
    with pytest.raises(IndexError):
        ds.get(3, offset=15, length=4)
    with pytest.raises(IndexError):
        ds.get(len(docs))


def test_header_bytes(tmp_path: Path) -> None:
    write_indexed_dataset(tmp_path / "d", [np.arange(3), np.arange(4)], dtype=np.dtype(np.uint16))
    raw = (tmp_path / "d.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, n, d = struct.unpack("<QBQQ", raw[9:34])
    assert (version, code, n, d) == (1, 8, 2, 3)  # 8 = uint16
    assert np.frombuffer(raw[34:42], "<i4").tolist() == [3, 4]
    assert np.frombuffer(raw[42:58], "<i8").tolist() == [0, 6]
    assert np.frombuffer(raw[58:82], "<i8").tolist() == [0, 1, 2]
    assert len(raw) == 82
    assert (tmp_path / "d.bin").read_bytes() == np.array([0, 1, 2, 0, 1, 2, 3], "<u2").tobytes()
    write_indexed_dataset(tmp_path / "e", [np.arange(3)], dtype=np.dtype(np.int32))
    assert struct.unpack("<B", (tmp_path / "e.idx").read_bytes()[17:18]) == (4,)  # 4 = int32


def test_empty_dataset(tmp_path: Path) -> None:
    write_indexed_dataset(tmp_path / "d", [], dtype=np.dtype(np.uint16))
    ds = IndexedDataset(tmp_path / "d")
    assert len(ds) == 0 and ds.num_tokens == 0


def test_pickle_reopens(tmp_path: Path) -> None:
    import pickle

    write_indexed_dataset(tmp_path / "d", [np.arange(3)], dtype=np.dtype(np.uint16))
    ds = pickle.loads(pickle.dumps(IndexedDataset(tmp_path / "d")))
    assert ds.get(0).tolist() == [0, 1, 2]


@pytest.fixture
def written(tmp_path: Path) -> Path:
    write_indexed_dataset(tmp_path / "d", make_documents(vocab=100), dtype=np.dtype(np.uint16))
    return tmp_path / "d"


@pytest.mark.parametrize("suffix", [".idx", ".bin"])
def test_missing_file(written: Path, suffix: str) -> None:
    path = Path(f"{written}{suffix}")
    path.unlink()
    with pytest.raises(ValueError, match=rf"missing {path}.*trainperf prepare"):
        IndexedDataset(written)


def test_bad_magic(written: Path) -> None:
    idx = Path(f"{written}.idx")
    idx.write_bytes(b"NOTMAGIC!" + idx.read_bytes()[9:])
    with pytest.raises(ValueError, match=r"not a Megatron indexed dataset.*trainperf prepare"):
        IndexedDataset(written)


def test_bad_version_and_dtype_code(written: Path) -> None:
    idx = Path(f"{written}.idx")
    raw = idx.read_bytes()
    idx.write_bytes(raw[:9] + struct.pack("<Q", 2) + raw[17:])
    with pytest.raises(ValueError, match=r"index version 2"):
        IndexedDataset(written)
    idx.write_bytes(raw[:17] + struct.pack("<B", 9) + raw[18:])
    with pytest.raises(ValueError, match=r"unknown dtype code 9"):
        IndexedDataset(written)


@pytest.mark.parametrize("keep", [20, 60])
def test_truncated_idx(written: Path, keep: int) -> None:
    idx = Path(f"{written}.idx")
    idx.write_bytes(idx.read_bytes()[:keep])
    with pytest.raises(ValueError, match=rf"truncated \.idx {idx}.*trainperf prepare"):
        IndexedDataset(written)


def test_truncated_bin(written: Path) -> None:
    binary = Path(f"{written}.bin")
    raw = binary.read_bytes()
    binary.write_bytes(raw[:-3])
    expected = rf"truncated \.bin {binary}: expected {len(raw)} bytes, found {len(raw) - 3}; re-run"
    with pytest.raises(ValueError, match=expected):
        IndexedDataset(written)


def test_no_partial_files_after_failed_write(tmp_path: Path) -> None:
    def documents():
        yield np.arange(10)
        raise RuntimeError("tokenizer crashed")

    with pytest.raises(RuntimeError, match="tokenizer crashed"):
        write_indexed_dataset(tmp_path / "d", documents(), dtype=np.dtype(np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_does_not_leave_a_complete_looking_pair(written: Path) -> None:
    def documents():
        yield np.arange(10)
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        write_indexed_dataset(written, documents(), dtype=np.dtype(np.uint16))
    # The old, complete pair is untouched and no temporary file is left behind.
    assert sorted(p.name for p in written.parent.iterdir()) == ["d.bin", "d.idx"]
    assert len(IndexedDataset(written)) == 5


def test_tokens_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="best_fitting_dtype"):
        write_indexed_dataset(tmp_path / "d", [np.array([70000])], dtype=np.dtype(np.uint16))
    assert list(tmp_path.iterdir()) == []
    assert INDEX_MAGIC == b"MMIDIDX\x00\x00"
