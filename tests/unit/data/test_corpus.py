"""Built-in corpus from the standard library: builds, is deterministic, caches, verifies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from trainperf.data.corpus import (
    MANIFEST_NAME,
    OUTPUT_FILES,
    build_builtin_corpus,
    collect_documents,
    get_stdlib_root,
    split_documents,
    verify_builtin_corpus,
)
from trainperf.data.indexed import IndexedDataset

MAX_BYTES = 300_000
VOCAB = 512


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "builtin"
    build_builtin_corpus(out, vocab_size=VOCAB, max_bytes=MAX_BYTES, progress=False)
    return out


def test_build(corpus_dir: Path) -> None:
    info = verify_builtin_corpus(corpus_dir)
    assert sorted(p.name for p in corpus_dir.iterdir()) == sorted([*OUTPUT_FILES, MANIFEST_NAME])
    assert info.train_documents > 0 and info.valid_documents > 0
    assert info.train_documents + info.valid_documents == info.num_files
    assert info.vocab_size == VOCAB
    train, valid = IndexedDataset(info.train_prefix), IndexedDataset(info.valid_prefix)
    assert (len(train), train.num_tokens) == (info.train_documents, info.train_tokens)
    assert (len(valid), valid.num_tokens) == (info.valid_documents, info.valid_tokens)
    assert train.sizes.min() > 0
    assert int(train._tokens.max()) < info.vocab_size
    manifest = json.loads((corpus_dir / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"] == info.fingerprint
    assert set(manifest["outputs"]) == set(OUTPUT_FILES)
    assert (
        sum(d.num_bytes for d in collect_documents(get_stdlib_root(), max_bytes=MAX_BYTES))
        <= MAX_BYTES
    )
    # No leftover temporary siblings.
    assert [p.name for p in corpus_dir.parent.iterdir()] == ["builtin"]


def test_deterministic(corpus_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    build_builtin_corpus(other, vocab_size=VOCAB, max_bytes=MAX_BYTES, progress=False)
    for name in [*OUTPUT_FILES, MANIFEST_NAME]:
        assert (other / name).read_bytes() == (corpus_dir / name).read_bytes(), name


def test_cached_call_is_fast_and_does_not_rewrite(corpus_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in corpus_dir.iterdir()}
    start = time.perf_counter()
    info = build_builtin_corpus(corpus_dir, vocab_size=VOCAB, max_bytes=MAX_BYTES, progress=False)
    assert time.perf_counter() - start < 2.0
    assert {p.name: p.stat().st_mtime_ns for p in corpus_dir.iterdir()} == before
    assert info == verify_builtin_corpus(corpus_dir)


def test_train_and_valid_documents_are_disjoint(corpus_dir: Path) -> None:
    documents = collect_documents(get_stdlib_root(), max_bytes=MAX_BYTES)
    train, valid = split_documents(documents)
    assert {d.relpath for d in train}.isdisjoint({d.relpath for d in valid})
    assert len(train) + len(valid) == len(documents)
    assert all("site-packages" not in d.relpath for d in documents)
    # The written splits hold exactly those documents, in that order.
    tokenizer = Tokenizer.from_file(str(corpus_dir / "tokenizer.json"))
    for prefix, docs in (("train_text_document", train), ("valid_text_document", valid)):
        ds = IndexedDataset(corpus_dir / prefix)
        assert len(ds) == len(docs)
        for i in (0, len(docs) - 1):
            assert tokenizer.decode(ds.get(i).tolist()) == docs[i].text


def test_tokenizer_round_trips_text(corpus_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(corpus_dir / "tokenizer.json"))
    text = 'def f(x):\n    """Return x, ünïcödé ✓ and\ttabs."""\n    return x  # done\n'
    ids = tokenizer.encode(text).ids
    assert len(ids) < len(text.encode())  # BPE merges something
    assert tokenizer.decode(ids) == text
    assert tokenizer.token_to_id("<|endoftext|>") is not None


def test_rebuilds_when_parameters_change(
    corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c"
    first = build_builtin_corpus(out, vocab_size=VOCAB, max_bytes=MAX_BYTES, progress=False)
    second = build_builtin_corpus(out, vocab_size=300, max_bytes=MAX_BYTES, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    for stage in ("collect", "train tokenizer", "encode", "write"):
        assert stage in captured.err
    assert first.fingerprint != second.fingerprint
    assert verify_builtin_corpus(out).vocab_size == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # old dir and tmp dir are gone


def test_verify_names_the_bad_file(tmp_path: Path, corpus_dir: Path) -> None:
    import shutil

    out = tmp_path / "c"
    shutil.copytree(corpus_dir, out)
    bad = out / "valid_text_document.bin"
    raw = bytearray(bad.read_bytes())
    raw[0] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"valid_text_document\.bin does not match"):
        verify_builtin_corpus(out)
    # Same size, so the cheap cache check passes; a changed size forces a rebuild.
    bad.write_bytes(bytes(raw[:-2]))
    build_builtin_corpus(out, vocab_size=VOCAB, max_bytes=MAX_BYTES, progress=False)
    verify_builtin_corpus(out)


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"vocab_size\(100\).*vocab_size >= 257"):
        build_builtin_corpus(tmp_path / "c", vocab_size=100, max_bytes=MAX_BYTES, progress=False)
    with pytest.raises(ValueError, match=r"max_bytes\(10\) selects 0 source files"):
        build_builtin_corpus(tmp_path / "c", vocab_size=VOCAB, max_bytes=10, progress=False)
    with pytest.raises(ValueError, match="missing .*manifest.json"):
        verify_builtin_corpus(tmp_path / "nothing")
