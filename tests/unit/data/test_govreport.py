"""GovReport readers: both formats agree, masking and shifting, sample order, bad files."""

import numpy as np
import pytest
import torch

from trainperf.data import govreport as G


def make_rows(n=6, seed=0, lengths=None):
    rng = np.random.default_rng(seed)
    lengths = lengths or [int(rng.integers(12, 24)) for _ in range(n)]
    ids, labels = [], []
    for length in lengths:
        x = rng.integers(1, 500, size=length).tolist()
        prompt = int(rng.integers(4, length - 3))
        ids.append(x)
        labels.append([-100] * prompt + x[prompt:])
    return ids, labels


@pytest.fixture
def folders(tmp_path):
    ids, labels = make_rows()
    pq, npy = tmp_path / "pq", tmp_path / "npy"
    pq.mkdir()
    for split in G.SPLITS:
        G.write_parquet(pq / G.parquet_name(split), ids, labels)
    G.convert_parquet_to_npy(pq, npy)
    return ids, labels, pq, npy


def test_parquet_and_npy_give_the_same_rows_and_batches(folders):
    ids, labels, pq, npy = folders
    a = G.read_split(pq, "train", max_seq_len=32)
    b = G.read_split(npy, "train", max_seq_len=32)
    assert a.source.suffix == ".parquet" and b.source.suffix == ".npy"
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.loss_mask, b.loss_mask)
    np.testing.assert_array_equal(a.lengths, [len(x) for x in ids])
    for i, y in enumerate(labels):
        assert a.loss_mask[i, : len(y)].tolist() == [v != -100 for v in y]
        assert not a.loss_mask[i, len(y) :].any()
    for got in (G.get_batch(a, [3, 1], seq_len=32), G.get_batch(b, [3, 1], seq_len=32)):
        torch.testing.assert_close(got[0], G.get_batch(a, [3, 1], seq_len=32)[0])
        torch.testing.assert_close(got[1], G.get_batch(a, [3, 1], seq_len=32)[1])


def test_labels_are_hf_shifted_labels(folders):
    """labels[t] is the token at t+1 where scored: what LlamaForCausalLM derives from `labels`."""
    ids, labels, pq, _ = folders
    rows = G.read_split(pq, "validation", max_seq_len=32)
    inputs, shifted = G.get_batch(rows, [0], seq_len=32)
    x, y = ids[0], labels[0]
    assert inputs[0, : len(x)].tolist() == x and not inputs[0, len(x) :].any()
    expected = y[1:] + [-100] * (32 - len(y) + 1)
    assert shifted[0].tolist() == expected


def test_each_sample_once_per_epoch_seeded():
    n = 37
    for epoch in range(3):
        rows = [G.sample_at(epoch * n + i, n=n, seed=5) for i in range(n)]
        assert sorted(rows) == list(range(n))
    e0 = [G.sample_at(i, n=n, seed=5) for i in range(n)]
    e1 = [G.sample_at(n + i, n=n, seed=5) for i in range(n)]
    other = [G.sample_at(i, n=n, seed=6) for i in range(n)]
    assert e0 != e1 and e0 != other
    assert e0 == [G.sample_at(i, n=n, seed=5) for i in range(n)]


def test_verify_counts(folders):
    _, _, pq, _ = folders
    lines = G.verify_dataset(pq, train_samples=6, eval_samples=6, max_seq_len=32)
    assert "6 samples" in lines[0]
    with pytest.raises(ValueError, match="expected 3901 train samples, found 6"):
        G.verify_dataset(pq, train_samples=3901, eval_samples=173, max_seq_len=32)


def bad(tmp_path, name="train-00000-of-00001.parquet"):
    return tmp_path / name


def test_bad_files_name_the_file_and_the_fix(tmp_path, folders):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, labels, good, _ = folders
    with pytest.raises(ValueError, match="does not exist"):
        G.read_split(tmp_path / "nowhere", "train", max_seq_len=32)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="expected train-00000-of-00001.parquet or train.npy"):
        G.read_split(empty, "train", max_seq_len=32)
    with pytest.raises(ValueError, match="more than the sequence length 8"):
        G.read_split(good, "train", max_seq_len=8)
    path = bad(tmp_path)
    pq.write_table(pa.table({"input_ids": ids}), path)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['labels'\]"):
        G.read_parquet(path, max_seq_len=32)
    G.write_parquet(path, ids, [y[:-1] for y in labels])
    with pytest.raises(ValueError, match="row 0 has .* input_ids but .* labels"):
        G.read_parquet(path, max_seq_len=32)
    wrong = [list(y) for y in labels]
    wrong[2][-1] = wrong[2][-1] + 1
    G.write_parquet(path, ids, wrong)
    with pytest.raises(ValueError, match="row 2 position .* has label"):
        G.read_parquet(path, max_seq_len=32)
    data = (good / "train-00000-of-00001.parquet").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated parquet"):
        G.read_parquet(path, max_seq_len=32)
    npy = bad(tmp_path, "train.npy")
    G.write_npy(npy, ids, labels)
    blob = npy.read_bytes()
    npy.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated .npy"):
        G.read_npy(npy, max_seq_len=32)


def test_packed_npy_rows_are_refused(tmp_path):
    path = tmp_path / "train.npy"
    rows = [{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 1], "seq_start_id": [0, 2]}]
    np.save(path, np.array(rows, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="packs 2 sequences"):
        G.read_npy(path, max_seq_len=32)


def test_writers_leave_no_temporary_files(tmp_path):
    ids, labels = make_rows(3)
    G.write_parquet(tmp_path / "a.parquet", ids, labels)
    G.write_npy(tmp_path / "a.npy", ids, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.parquet"]
