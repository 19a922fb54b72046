"""Raw C4 JSON -> Megatron indexed datasets as the reference preprocesses them, and verification."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from trainperf.data import c4
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

WORDS = "the cat sat on a mat while ünïcode dogs ran 42 times, quickly; héllo wörld".split()


def make_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|begin_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([" ".join(WORDS)] * 50, trainer=trainer)
    from tokenizers import processors

    # a BOS template, like Llama 3's: preprocessing must NOT add it
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def write_jsonl_gz(path: Path, texts: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "timestamp": "2019", "url": f"u{i}"}) + "\n")


def doc_text(shard: int, i: int) -> str:
    rng = np.random.default_rng(10_000 + shard * 100 + i)
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 30))))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for shard in range(1024):  # every shard name exists; only 768..895 may be read
        if shard in c4.TRAIN_SHARDS or shard in (0, 767, 896):
            texts = [doc_text(shard, i) for i in range(2)]
            if shard == 800:
                texts.insert(1, "")  # an empty document gets no sequence
            write_jsonl_gz(folder / c4.TRAIN_SHARD_NAME.format(shard), texts)
    for shard in range(8):
        write_jsonl_gz(
            folder / c4.VALID_SHARD_NAME.format(shard), [doc_text(-1 - shard, i) for i in range(3)]
        )
    return folder


def reference_ids(tokenizer_dir: Path, text: str) -> list[int]:
    # NeMo AutoTokenizer.text_to_ids: tokenize, then convert_tokens_to_ids (no special tokens)
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"))
    return hf.convert_tokens_to_ids(hf.tokenize(text))


def test_tokenize_raw_c4_like_the_reference(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(c4, "VALID_DOCUMENTS", 10)  # the rules' 91,205, scaled down
    tok = make_tokenizer(tmp_path / "tok")
    out = tmp_path / "data"
    lines: list[str] = []
    c4.tokenize_raw_c4(raw, out, tokenizer_dir=tok, progress=False, log=lines.append)
    train = IndexedDataset(out / c4.TRAIN_PREFIX)
    valid = IndexedDataset(out / c4.VALID_PREFIX)
    assert train.dtype == np.uint16  # vocabulary < 65500, Megatron's best_fitting_dtype
    expected_train = [doc_text(s, i) for s in c4.TRAIN_SHARDS for i in range(2)]
    assert len(train) == len(expected_train) == 256  # shards 768..895 in order, empty one dropped
    for i in (0, 1, 63, 64, 65, 255):
        assert train[i].tolist() == reference_ids(tok, expected_train[i])
    expected_valid = [doc_text(-1 - s, i) for s in range(8) for i in range(3)][:10]
    assert len(valid) == 10
    for i, text in enumerate(expected_valid):
        assert valid[i].tolist() == reference_ids(tok, text)
    assert any("256 documents" in line for line in lines)
    assert not list(out.glob("*.tmp-*"))


def test_consolidated_files_are_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    write_jsonl_gz(folder / "c4-train.en_6.json.gz", ["a b", "c"])
    write_jsonl_gz(folder / "c4-validation.en.json.gz", ["d"])
    train, valid = c4.raw_c4_files(folder)
    assert [p.name for p in train] == ["c4-train.en_6.json.gz"]
    assert [p.name for p in valid] == ["c4-validation.en.json.gz"]


def test_missing_shard_is_named(raw: Path) -> None:
    (raw / c4.TRAIN_SHARD_NAME.format(801)).unlink()
    with pytest.raises(ValueError, match=r"lacks 1 of train shards .* c4-train.00801-of-01024"):
        c4.raw_c4_files(raw)
    with pytest.raises(ValueError, match="does not exist"):
        c4.raw_c4_files(raw / "nope")


def test_corrupt_json_gz_is_named(raw: Path, tmp_path: Path) -> None:
    tok = make_tokenizer(tmp_path / "tok")
    bad = raw / c4.VALID_SHARD_NAME.format(0)
    bad.write_bytes(bad.read_bytes()[:20])  # truncated gzip
    with pytest.raises(ValueError, match=r"c4-validation.00000-of-00008.json.gz is corrupt"):
        c4.tokenize_raw_c4(raw, tmp_path / "out", tokenizer_dir=tok, progress=False)
    assert not (tmp_path / "out" / f"{c4.VALID_PREFIX}.idx").exists()
    write_jsonl_gz(bad, ["fine"])
    with gzip.open(bad, "at") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="line 2 is not a C4 JSON record"):
        c4.tokenize_raw_c4(raw, tmp_path / "out", tokenizer_dir=tok, progress=False)


def test_find_tokenizer_nested_and_missing(tmp_path: Path) -> None:
    make_tokenizer(tmp_path / "tokenizer" / "llama3_1_8b_tokenizer")
    assert c4.find_tokenizer(tmp_path / "tokenizer").name == "llama3_1_8b_tokenizer"
    with pytest.raises(ValueError, match="no tokenizer.json in .*; run `trainperf prepare"):
        c4.find_tokenizer(tmp_path / "elsewhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read tokenizer"):
        c4.load_tokenizer(tmp_path / "bad")


def write_c4(folder: Path, *, valid_tokens: int, top: int = 99) -> None:
    rng = np.random.default_rng(0)
    write_indexed_dataset(
        folder / c4.TRAIN_PREFIX,
        [rng.integers(0, top, size=50) for _ in range(20)],
        dtype=np.dtype(np.int32),
    )
    write_indexed_dataset(
        folder / c4.VALID_PREFIX, [rng.integers(0, 99, size=valid_tokens)], dtype=np.dtype(np.int32)
    )


def test_verify_c4(tmp_path: Path) -> None:
    write_c4(tmp_path, valid_tokens=4 * 16 + 1)
    tok = make_tokenizer(tmp_path / "tokenizer")
    lines = c4.verify_c4(tmp_path, seq_len=16, eval_samples=4, vocab_size=512, tokenizer_dir=tok)
    assert lines[0].startswith("train: c4-train.en_6_text_document 20 documents, 1,000 tokens")
    assert "4 windows of 16 tokens" in lines[1]
    assert lines[2].startswith("tokenizer:")
    with pytest.raises(ValueError, match="fewer than the 5 evaluation windows"):
        c4.verify_c4(tmp_path, seq_len=16, eval_samples=5, vocab_size=512)
    with pytest.raises(ValueError, match="more than the model's 100"):
        c4.verify_c4(tmp_path, seq_len=16, eval_samples=4, vocab_size=100, tokenizer_dir=tok)


def test_verify_c4_rejects_foreign_tokens_and_bad_files(tmp_path: Path) -> None:
    write_c4(tmp_path, valid_tokens=100, top=5000)
    with pytest.raises(ValueError, match=r"token id \d+, outside the model's vocabulary of 1000"):
        c4.verify_c4(tmp_path, seq_len=16, eval_samples=1, vocab_size=1000)
    idx = tmp_path / f"{c4.VALID_PREFIX}.idx"
    idx.write_bytes(b"NOTMAGIC!" + idx.read_bytes()[9:])
    with pytest.raises(ValueError, match="is not a Megatron indexed dataset"):
        c4.verify_c4(tmp_path, seq_len=16, eval_samples=1, vocab_size=10_000)
    (tmp_path / f"{c4.TRAIN_PREFIX}.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="truncated .bin"):
        c4.verify_c4(tmp_path, seq_len=16, eval_samples=1, vocab_size=10_000)
