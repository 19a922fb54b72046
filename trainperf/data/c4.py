"""C4 for the pretraining benchmarks: the MLPerf layout, tokenizing raw C4 JSON, verification.

The MLPerf llama31_8b reference (``small_llm_pretraining/nemo``) trains on Megatron indexed
datasets made from allenai/c4 ``en`` 3.0.1:

- ``utils/consolidate_data.sh`` concatenates the 1024 train shards into 8 files, file ``k`` being
  shards ``128k .. 128k+127``; the reference trains on file 6 only (shards 00768-00895). The 8
  validation shards are concatenated and the first 91,205 documents kept.
- ``utils/preprocess.sh`` runs NeMo's ``preprocess_data_for_megatron.py`` with the HF tokenizer of
  Llama 3.1 8B: each JSON line's ``text`` is one document, tokenized without special tokens (NeMo's
  ``AutoTokenizer.text_to_ids`` is ``tokenize`` + ``convert_tokens_to_ids``: no BOS) and with no
  end-of-document token (no ``--append-eod``); tokens are stored as int32 (vocabulary >= 65500).

``tokenize_raw_c4`` reproduces that from the raw ``c4-*.json.gz`` files for users who must
tokenize themselves; ``verify_c4`` checks a prepared folder without touching the network.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from trainperf.data.indexed import IndexedDataset, best_fitting_dtype, write_indexed_dataset

TRAIN_PREFIX = "c4-train.en_6_text_document"
VALID_PREFIX = "c4-validation-91205-samples.en_text_document"
TRAIN_SHARDS = range(768, 896)  # consolidated file en_6 = shards 128*6 .. 128*6+127
TRAIN_SHARD_NAME = "c4-train.{:05d}-of-01024.json.gz"
VALID_SHARD_NAME = "c4-validation.{:05d}-of-00008.json.gz"
VALID_DOCUMENTS = 91_205  # `head -n 91205` of the concatenated validation shards
# The tokenizer dataset also carries the model weights; a pretraining run needs only these.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "generation_config.json",
    "tokenizer.model",
)
_BATCH_DOCUMENTS = 2048  # texts per encode_batch call (the Rust side runs them in parallel)

Log = Callable[[str], None]


def find_tokenizer(folder: Path) -> Path:
    """The folder holding ``tokenizer.json`` at or below ``folder`` (the MLCommons download nests
    it one level down); ValueError naming the fix when there is none."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return folder
    found = sorted(folder.rglob("tokenizer.json")) if folder.is_dir() else []
    if not found:
        raise ValueError(
            f"no tokenizer.json in {folder}; run `trainperf prepare llama31_8b --data-dir DIR` "
            "to download the MLPerf tokenizer, or pass --tokenizer with a Hugging Face "
            "tokenizer folder"
        )
    return found[0].parent


def load_tokenizer(folder: Path):
    """The ``tokenizers.Tokenizer`` of a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer

    path = find_tokenizer(folder) / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception type for bad files
        raise ValueError(f"cannot read tokenizer {path} ({exc}); download it again") from None


def raw_c4_files(raw_dir: Path) -> tuple[list[Path], list[Path]]:
    """The raw files of shard en_6 and of the validation set, in the reference's order.

    Accepts the allenai/c4 shard names (``c4-train.00768-of-01024.json.gz`` ...) or already
    consolidated ``c4-train.en_6.json.gz`` / ``c4-validation.en.json.gz``.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ValueError(f"raw C4 folder {raw_dir} does not exist; pass the folder of c4-*.json.gz")
    consolidated = raw_dir / "c4-train.en_6.json.gz"
    if consolidated.is_file():
        train = [consolidated]
    else:
        train = [raw_dir / TRAIN_SHARD_NAME.format(i) for i in TRAIN_SHARDS]
        _require(train, raw_dir, "train shards 00768-00895 (consolidated file en_6)")
    for name in ("c4-validation-91205-samples.en.json.gz", "c4-validation.en.json.gz"):
        if (raw_dir / name).is_file():
            return train, [raw_dir / name]
    valid = [raw_dir / VALID_SHARD_NAME.format(i) for i in range(8)]
    _require(valid, raw_dir, "the 8 validation shards")
    return train, valid


def _require(files: Sequence[Path], raw_dir: Path, what: str) -> None:
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(
            f"raw C4 in {raw_dir} lacks {len(missing)} of {what}, e.g. {missing[0]}; download "
            "allenai/c4 en (e.g. `huggingface-cli download allenai/c4 --repo-type dataset "
            "--include 'en/*'`) and pass its en/ folder"
        )


def iter_texts(files: Sequence[Path], *, limit: int | None = None) -> Iterator[str]:
    """The ``text`` of each JSON line of ``files`` in order, at most ``limit`` documents."""
    count = 0
    for path in files:
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if limit is not None and count >= limit:
                        return
                    if not line.strip():
                        continue
                    yield _text_of(line, path, number)
                    count += 1
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{path} is corrupt or truncated ({exc}); download that file again"
            ) from None


def _text_of(line: str, path: Path, number: int) -> str:
    try:
        text = json.loads(line)["text"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(
            f"{path} line {number} is not a C4 JSON record with a 'text' field; "
            "download that file again"
        ) from None
    return text


def tokenize_texts(texts: Iterator[str], tokenizer) -> Iterator[np.ndarray]:
    """Token ids of each text, without special tokens (as NeMo's preprocessing writes them)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == _BATCH_DOCUMENTS:
            yield from _encode(batch, tokenizer)
            batch = []
    if batch:
        yield from _encode(batch, tokenizer)


def _encode(batch: list[str], tokenizer) -> Iterator[np.ndarray]:
    for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
        ids = np.asarray(encoding.ids, dtype=np.int64)
        if ids.size:  # NeMo's preprocessing adds no sequence for an empty document
            yield ids


def tokenize_raw_c4(
    raw_dir: Path,
    out_dir: Path,
    *,
    tokenizer_dir: Path,
    progress: bool = True,
    log: Log | None = None,
) -> None:
    """Tokenize raw C4 JSON into ``out_dir/{TRAIN_PREFIX,VALID_PREFIX}.{bin,idx}``.

    Validation first (seconds), then the train shard (hours for the full 128 files: the
    tokenizer runs on every core). Each pair is written under temporary names and renamed when
    complete, so an interrupted run leaves no pair that looks finished.
    """
    log = log or (lambda _: None)
    train_files, valid_files = raw_c4_files(raw_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    dtype = best_fitting_dtype(tokenizer.get_vocab_size(with_added_tokens=True))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (VALID_PREFIX, valid_files, VALID_DOCUMENTS),
        (TRAIN_PREFIX, train_files, None),
    ]
    for prefix, files, limit in jobs:
        log(f"tokenizing {len(files)} file(s) into {out_dir / prefix}.{{bin,idx}} ({dtype.name})")
        texts = iter_texts(files, limit=limit)
        docs = tokenize_texts(texts, tokenizer)
        write_indexed_dataset(out_dir / prefix, _counting(docs, prefix, progress), dtype=dtype)
        written = IndexedDataset(out_dir / prefix)
        log(f"{prefix}: {len(written):,} documents, {written.num_tokens:,} tokens")


def _counting(docs: Iterator[np.ndarray], name: str, progress: bool) -> Iterator[np.ndarray]:
    if not progress:
        yield from docs
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(name)
        for count, doc in enumerate(docs, 1):
            if count % 10_000 == 0:
                bar.update(task, description=f"{name}: {count:,} documents")
            yield doc


def verify_c4(
    data_dir: Path,
    *,
    seq_len: int,
    eval_samples: int,
    vocab_size: int,
    tokenizer_dir: Path | None = None,
    train_prefixes: Sequence[str] = (TRAIN_PREFIX,),
    scan_tokens: int = 1 << 26,
) -> list[str]:
    """Check a prepared C4 folder; one line per check, ValueError naming the first problem.

    Opens both indexed datasets (headers, sizes, .bin lengths), checks the validation set holds
    ``eval_samples`` windows, scans the validation tokens and the first and last ``scan_tokens``
    training tokens for ids outside the model's vocabulary, and loads the tokenizer. Byte-level
    integrity is the MD5 check of the download (``verify_dataset_files``).
    """
    lines = []
    for prefix, what in [*((p, "train") for p in train_prefixes), (VALID_PREFIX, "validation")]:
        ds = IndexedDataset(Path(data_dir) / prefix)
        top = _max_token(ds, scan_tokens if what == "train" else None)
        if top >= vocab_size:
            raise ValueError(
                f"{ds.bin_path} holds token id {top}, outside the model's vocabulary of "
                f"{vocab_size}; it was tokenized with another tokenizer: prepare it again"
            )
        lines.append(
            f"{what}: {prefix} {len(ds):,} documents, {ds.num_tokens:,} tokens "
            f"({ds.dtype.name}), {(ds.num_tokens - 1) // seq_len:,} windows of {seq_len} tokens"
        )
        if what == "validation" and (ds.num_tokens - 1) // seq_len < eval_samples:
            raise ValueError(
                f"{ds.prefix} holds {ds.num_tokens:,} tokens, fewer than the {eval_samples} "
                f"evaluation windows of {seq_len} tokens; prepare the data again"
            )
    if tokenizer_dir is not None:
        tokenizer = load_tokenizer(tokenizer_dir)
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        if size > vocab_size:
            raise ValueError(
                f"tokenizer in {find_tokenizer(tokenizer_dir)} has {size} tokens, more than the "
                f"model's {vocab_size}; use the benchmark's tokenizer"
            )
        lines.append(f"tokenizer: {find_tokenizer(tokenizer_dir)} ({size:,} tokens)")
    return lines


def _max_token(ds: IndexedDataset, scan: int | None) -> int:
    tokens = ds.tokens
    if scan is not None and len(tokens) > 2 * scan:
        parts = [tokens[:scan], tokens[-scan:]]
    else:
        parts = [tokens]
    return max((int(p.max()) for p in parts if len(p)), default=0)
