"""GovReport readers: both formats agree, masking and shifting, sample order, bad files."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from trainperf.data import govreport as G

SEQ = 32


def make_rows(n=6, seed=0, vocab=500):
    """Rows like the reference's: labels are the input ids with -100 on a prompt prefix."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for length in rng.integers(12, 24, size=n).tolist():
        x = rng.integers(1, vocab, size=length).tolist()
        prompt = int(rng.integers(4, length - 3))
        ids.append(x)
        labels.append([-100] * prompt + x[prompt:])
    return ids, labels


@pytest.fixture
def folders(tmp_path):
    ids, labels = make_rows()
    pqdir, npydir = tmp_path / "pq", tmp_path / "npy"
    pqdir.mkdir()
    for split in G.SPLITS:
        G.write_parquet(pqdir / G.parquet_name(split), ids, labels)
    G.convert_parquet_to_npy(pqdir, npydir)
    return ids, labels, pqdir, npydir


def test_parquet_and_npy_give_the_same_rows_and_batches(folders):
    ids, labels, pqdir, npydir = folders
    assert sorted(p.name for p in npydir.iterdir()) == ["train.npy", "validation.npy"]
    a = G.read_split(pqdir, "train", max_seq_len=SEQ)
    b = G.read_split(npydir, "train", max_seq_len=SEQ)
    assert a.source.suffix == ".parquet" and b.source.suffix == ".npy" and len(a) == 6
    assert a.input_ids.dtype == np.int32 and a.loss_mask.dtype == bool
    assert a.lengths.dtype == np.int32 and a.input_ids.shape == (6, max(map(len, ids)))
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.loss_mask, b.loss_mask)
    np.testing.assert_array_equal(a.lengths, [len(x) for x in ids])
    for i, (x, y) in enumerate(zip(ids, labels)):
        assert a.input_ids[i, : len(x)].tolist() == x and not a.input_ids[i, len(x) :].any()
        assert a.loss_mask[i, : len(y)].tolist() == [v != -100 for v in y]
        assert not a.loss_mask[i, len(y) :].any()
    for pa_t, np_t in zip(
        G.get_batch(a, [3, 1, 3], seq_len=SEQ), G.get_batch(b, [3, 1, 3], seq_len=SEQ)
    ):
        assert pa_t.dtype == torch.int64 and pa_t.shape == (3, SEQ)
        torch.testing.assert_close(pa_t, np_t, rtol=0, atol=0)


def test_npy_is_the_nvidia_format(folders):
    ids, labels, _, npydir = folders
    data = np.load(npydir / "validation.npy", allow_pickle=True)
    assert data.dtype == object and data.shape == (6,)
    assert data[0] == {
        "input_ids": ids[0],
        "loss_mask": [int(v != -100) for v in labels[0]],
        "seq_start_id": [0],
    }
    table = pq.read_table(folders[2] / G.parquet_name("train"))
    assert table.schema.field("input_ids").type == pa.list_(pa.int64())
    assert table.schema.field("labels").type == pa.list_(pa.int64())


def test_labels_are_hf_shifted_labels(folders):
    """labels[t] is the token at t+1 where labelled: what LlamaForCausalLM derives from labels."""
    ids, labels, pqdir, _ = folders
    rows = G.read_split(pqdir, "validation", max_seq_len=SEQ)
    inputs, shifted = G.get_batch(rows, [0, 2], seq_len=SEQ)
    for b, i in enumerate([0, 2]):
        x, y = ids[i], labels[i]
        assert inputs[b, : len(x)].tolist() == x and not inputs[b, len(x) :].any()
        assert shifted[b].tolist() == y[1:] + [-100] * (SEQ - len(y) + 1)


def test_per_sample_loss_is_hf_loss(tmp_path):
    """cross_entropy(logits, our labels) == HF's: logits[:-1] against the labels shifted by one."""
    ids, labels = make_rows(4, seed=3, vocab=50)
    G.write_parquet(tmp_path / "v.parquet", ids, labels)
    rows = G.read_parquet(tmp_path / "v.parquet", max_seq_len=SEQ)
    _, ours = G.get_batch(rows, range(4), seq_len=SEQ)
    logits = torch.randn(4, SEQ, 50, generator=torch.Generator().manual_seed(0))
    for b, y in enumerate(labels):
        hf_labels = torch.tensor(y + [-100] * (SEQ - len(y)))
        hf = F.cross_entropy(logits[b, :-1], hf_labels[1:], ignore_index=-100)
        torch.testing.assert_close(F.cross_entropy(logits[b], ours[b], ignore_index=-100), hf)


def test_each_sample_once_per_epoch_seeded():
    n = 37
    for epoch in range(3):
        assert sorted(G.sample_at(epoch * n + i, n=n, seed=5) for i in range(n)) == list(range(n))
    e0 = [G.sample_at(i, n=n, seed=5) for i in range(n)]
    e1 = [G.sample_at(n + i, n=n, seed=5) for i in range(n)]
    other = [G.sample_at(i, n=n, seed=6) for i in range(n)]
    assert e0 != e1 and e0 != other
    assert e0 == G.epoch_order(n, seed=5, epoch=0).tolist()
    G.epoch_order.cache_clear()  # recomputed from (seed, epoch) alone: the same order
    assert e0 == [G.sample_at(i, n=n, seed=5) for i in range(n)]
    with pytest.raises(ValueError):  # the cached permutation cannot be changed by a caller
        G.epoch_order(n, seed=5, epoch=0)[0] = 99


def test_verify_counts_and_lines(folders):
    _, _, pqdir, npydir = folders
    lines = G.verify_dataset(pqdir, train_samples=6, eval_samples=6, max_seq_len=SEQ)
    assert len(lines) == 2 and "6 samples" in lines[0] and "labelled" in lines[1]
    assert G.verify_dataset(npydir, train_samples=None, eval_samples=6, max_seq_len=SEQ)
    msg = r"expected 3901 training samples, found 6 in .*train-00000-of-00001.parquet; re-run"
    with pytest.raises(ValueError, match=msg):
        G.verify_dataset(pqdir, train_samples=3901, eval_samples=173, max_seq_len=SEQ)
    with pytest.raises(ValueError, match="expected 173 validation samples, found 6"):
        G.verify_dataset(pqdir, train_samples=6, eval_samples=173, max_seq_len=SEQ)


def test_verify_refuses_rows_without_a_target(tmp_path):
    ids, labels = make_rows(3)
    labels[1] = [ids[1][0]] + [-100] * (len(ids[1]) - 1)  # labelled only at position 0
    for split in G.SPLITS:
        G.write_parquet(tmp_path / G.parquet_name(split), ids, labels)
    with pytest.raises(ValueError, match="row 1 has no labelled token after position 0"):
        G.verify_split(tmp_path, "train", expected_samples=3, max_seq_len=SEQ)


def write_raw(path, columns):
    pq.write_table(pa.table(columns), path)
    return path


def raises(match, fn, path, **kw):
    """ValueError whose single line names the file."""
    with pytest.raises(ValueError, match=match) as info:
        fn(path, max_seq_len=kw.pop("max_seq_len", SEQ), **kw)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_parquet_files_name_the_file_and_the_fix(tmp_path, folders):
    ids, labels, good, _ = folders
    path = tmp_path / "train-00000-of-00001.parquet"
    raises("does not exist; re-run `trainperf prepare", G.read_parquet, path)
    write_raw(path, {"input_ids": ids, "mask": labels})
    raises(
        r"lacks column\(s\) \['labels'\] \(found \['input_ids', 'mask'\]\)", G.read_parquet, path
    )
    write_raw(
        path, {"input_ids": ids, "labels": [y[:-1] if i == 4 else y for i, y in enumerate(labels)]}
    )
    raises(r"row 4 has \d+ input_ids but \d+ labels", G.read_parquet, path)
    raises(
        r"row \d+ has \d+ tokens, more than the sequence length 12",
        G.read_parquet,
        good / path.name,
        max_seq_len=12,
    )
    wrong = [list(y) for y in labels]
    wrong[2][-3] += 1
    write_raw(path, {"input_ids": ids, "labels": wrong})
    raises(
        rf"row 2 position {len(ids[2]) - 3} has label \d+ but input id \d+", G.read_parquet, path
    )
    write_raw(
        path,
        {
            "input_ids": pa.array([], pa.list_(pa.int64())),
            "labels": pa.array([], pa.list_(pa.int64())),
        },
    )
    raises("holds no rows", G.read_parquet, path)
    write_raw(path, {"input_ids": [["a"]], "labels": [[1]]})
    raises("column input_ids is list<.*string>, not a list of integers", G.read_parquet, path)
    data = (good / path.name).read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        raises("corrupt or truncated parquet", G.read_parquet, path)


def test_bad_npy_files_name_the_file_and_the_fix(tmp_path):
    ids, labels = make_rows()
    path = tmp_path / "train.npy"
    raises("does not exist", G.read_npy, path)
    G.write_npy(path, ids, labels)
    blob = path.read_bytes()
    for cut in (0, 10, 100, len(blob) // 2, len(blob) - 1):
        path.write_bytes(blob[:cut])
        raises(r"corrupt or truncated \.npy", G.read_npy, path)
    rows = [{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 1], "seq_start_id": [0, 2]}]
    np.save(path, np.array(rows, dtype=object), allow_pickle=True)
    raises("row 0 packs 2 sequences", G.read_npy, path)
    np.save(path, np.array([{"input_ids": [1, 2]}], dtype=object), allow_pickle=True)
    raises(
        r"row 0 is not a dict with input_ids and loss_mask \(found \['input_ids'\]\)",
        G.read_npy,
        path,
    )
    np.save(
        path, np.array([{"input_ids": [1, 2], "loss_mask": [1]}], dtype=object), allow_pickle=True
    )
    raises("row 0 has 2 input_ids but 1 loss_mask entries", G.read_npy, path)
    np.save(
        path,
        np.array([{"input_ids": [-100, 2], "loss_mask": [0, 1]}], dtype=object),
        allow_pickle=True,
    )
    raises("token id out of range", G.read_npy, path)
    np.save(path, np.arange(4))
    raises(r"row 0 is not a dict", G.read_npy, path)
    G.write_npy(path, ids, labels)
    raises(
        "row .* has .* tokens, more than the sequence length 10", G.read_npy, path, max_seq_len=10
    )


def test_missing_folder_or_files_say_what_is_expected(tmp_path):
    for folder in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(ValueError) as info:
            G.read_split(folder, "validation", max_seq_len=SEQ)
        msg = str(info.value)
        assert str(folder) in msg and "validation-00000-of-00001.parquet" in msg
        assert "validation.npy" in msg and "trainperf prepare llama2_70b_lora --data-dir" in msg


def test_writers_are_atomic(tmp_path, monkeypatch):
    ids, labels = make_rows(3)
    G.write_parquet(tmp_path / "a.parquet", ids, labels)
    G.write_npy(tmp_path / "a.npy", ids, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.parquet"]
    before = (tmp_path / "a.parquet").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", fail)  # a failed rewrite keeps the old file whole
    with pytest.raises(OSError, match="disk full"):
        G.write_parquet(tmp_path / "a.parquet", make_rows(2, seed=1)[0], make_rows(2, seed=1)[1])
    assert (tmp_path / "a.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.parquet"]
    with pytest.raises(ValueError, match="row 1 has"):
        G.write_npy(tmp_path / "b.npy", ids, [labels[0], labels[1][:-1], labels[2]])
