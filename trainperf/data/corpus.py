"""The built-in corpus: a training set built offline from the Python standard library's sources.

With no network and no download, ``build_builtin_corpus`` turns the ``.py`` files the Python
installation ships (code, comments and docstrings) into the same artifacts ``trainperf prepare``
makes from C4: a byte-level BPE ``tokenizer.json`` and Megatron indexed datasets
``train_text_document`` / ``valid_text_document``, plus a ``manifest.json`` that fingerprints the
inputs and hashes every output. One document is one source file. The build is deterministic and
cached: the same Python installation and parameters give byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from rich.console import Console
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from trainperf.atomic import atomic_path
from trainperf.data.indexed import best_fitting_dtype, write_indexed_dataset

MANIFEST_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
TRAIN_PREFIX = "train_text_document"
VALID_PREFIX = "valid_text_document"
OUTPUT_FILES = (
    TOKENIZER_NAME,
    f"{TRAIN_PREFIX}.bin",
    f"{TRAIN_PREFIX}.idx",
    f"{VALID_PREFIX}.bin",
    f"{VALID_PREFIX}.idx",
)
VALID_EVERY = 20  # every 20th selected document (~5%) is held out for validation
EOD_TOKEN = "<|endoftext|>"  # in the vocabulary, but never appended (MLPerf C4 appends none)
_MIN_VOCAB = 257  # 256 byte-level symbols + EOD


@dataclass(frozen=True)
class CorpusInfo:
    """Where a built corpus lives and what it holds (read back from its manifest)."""

    out_dir: Path
    """Directory holding the tokenizer, the indexed datasets and manifest.json."""
    tokenizer_path: Path
    """The trained byte-level BPE tokenizer (``tokenizers`` JSON)."""
    train_prefix: Path
    """Indexed dataset prefix of the training split (``.bin`` / ``.idx``)."""
    valid_prefix: Path
    """Indexed dataset prefix of the validation split."""
    vocab_size: int
    """Size of the trained vocabulary (at most the requested size; less on a tiny corpus)."""
    num_files: int
    """Source files selected (train + validation documents)."""
    train_documents: int
    valid_documents: int
    train_tokens: int
    valid_tokens: int
    fingerprint: str
    """sha256 over the selected files' paths and contents and the build parameters."""


@dataclass(frozen=True)
class _Document:
    relpath: str  # posix path relative to the stdlib root
    text: str
    sha256: str  # of the file's bytes
    num_bytes: int


def get_stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _hash_path(relpath: str) -> str:
    return hashlib.sha256(relpath.encode("utf-8")).hexdigest()


def collect_documents(root: Path, *, max_bytes: int) -> list[_Document]:
    """Source files under ``root`` in sha256(relative path) order, up to ``max_bytes`` in total.

    A file that would overflow the budget is skipped, not truncated, so the selection stays a
    pure function of the installation and ``max_bytes``. Files in ``site-packages`` (not part of
    the standard library), files that are not valid UTF-8 and blank files are skipped.
    """
    candidates = [p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts]
    relpaths = sorted((p.relative_to(root).as_posix() for p in candidates), key=_hash_path)
    documents: list[_Document] = []
    total = 0
    for relpath in relpaths:
        path = root / relpath
        if not path.is_file() or total + path.stat().st_size > max_bytes:
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not text.strip():  # empty __init__.py files add no text
            continue
        documents.append(_Document(relpath, text, hashlib.sha256(data).hexdigest(), len(data)))
        total += len(data)
    return documents


def split_documents(documents: list[_Document]) -> tuple[list[_Document], list[_Document]]:
    """(train, valid): every VALID_EVERY-th document of the hash-ordered selection is validation.

    Position in the (pseudo-random, path-hash) order rather than hash mod 20, so that even a tiny
    corpus has at least one validation document.
    """
    train = [d for i, d in enumerate(documents) if i % VALID_EVERY != 0]
    valid = [d for i, d in enumerate(documents) if i % VALID_EVERY == 0]
    return train, valid


def compute_fingerprint(documents: list[_Document], *, vocab_size: int, max_bytes: int) -> str:
    params = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "vocab_size": vocab_size,
        "max_bytes": max_bytes,
        "valid_every": VALID_EVERY,
        "tokenizers_version": tokenizers.__version__,  # another trainer may merge differently
    }
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for doc in documents:
        h.update(f"{doc.relpath}\0{doc.sha256}\n".encode())
    return h.hexdigest()


def train_tokenizer(texts: list[str], *, vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no prefix space) trained on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Determinism: with tokenizers 0.23 the BPE trainer gave byte-identical tokenizer.json across
    # processes with and without threads (tested), but its word counting goes through rayon and
    # Rust HashMaps, so we train single-threaded anyway: TOKENIZERS_PARALLELISM is read on every
    # call (RAYON_NUM_THREADS only when the pool starts, too late to set here). Costs ~1 s.
    with _set_env("TOKENIZERS_PARALLELISM", "false"):
        tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


@contextlib.contextmanager
def _set_env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _encode(tokenizer: Tokenizer, documents: list[_Document], dtype: np.dtype) -> list[np.ndarray]:
    # No EOD token is appended: the MLPerf C4 preprocessing (preprocess_data.py without
    # --append-eod) does not append one either. encode_batch is parallel but order-preserving.
    encodings = tokenizer.encode_batch([d.text for d in documents], add_special_tokens=False)
    return [np.asarray(e.ids, dtype=dtype) for e in encodings]


class Stages:
    """One line per build stage on stderr (rich), or nothing when progress is off."""

    def __init__(self, enabled: bool) -> None:
        self.console = Console(stderr=True) if enabled else None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        note: dict[str, str] = {}
        if self.console is None:
            yield note
            return
        from trainperf.train.progress import Heartbeat

        start = time.perf_counter()
        with self.console.status(f"[bold]{name}[/bold] ..."), Heartbeat(self.console).still(name):
            yield note
        seconds = time.perf_counter() - start
        detail = f": {note['detail']}" if "detail" in note else ""
        self.console.print(f"[green]✓[/green] {name}{detail} [dim]({seconds:.1f} s)[/dim]")


def build_builtin_corpus(
    out_dir: Path, *, vocab_size: int, max_bytes: int, progress: bool = True
) -> CorpusInfo:
    """Build (or reuse) the built-in corpus in ``out_dir`` and return what it holds.

    Cached: when ``out_dir/manifest.json`` has the same input fingerprint and every output file
    is present with its recorded size, nothing is rebuilt. Otherwise the corpus is built in a
    temporary sibling directory and renamed into place when complete, replacing any old one.
    Call it from one process (rank 0) at a time.
    """
    if vocab_size < _MIN_VOCAB:
        raise ValueError(
            f"vocab_size({vocab_size}) is below the {_MIN_VOCAB} byte-level base "
            f"symbols; use vocab_size >= {_MIN_VOCAB}, e.g. 2048"
        )
    out_dir = Path(out_dir)
    stages = Stages(progress)
    root = get_stdlib_root()
    with stages.stage("collect") as note:
        documents = collect_documents(root, max_bytes=max_bytes)
        if len(documents) < 2:
            raise ValueError(
                f"max_bytes({max_bytes}) selects {len(documents)} source files from "
                f"{root}; need at least 2 (train + valid): raise max_bytes"
            )
        fingerprint = compute_fingerprint(documents, vocab_size=vocab_size, max_bytes=max_bytes)
        note["detail"] = f"{len(documents)} files, {sum(d.num_bytes for d in documents):,} bytes"
    cached = _read_cached(out_dir, fingerprint)
    if cached is not None:
        if stages.console is not None:
            stages.console.print(f"[green]✓[/green] cached corpus in {out_dir}")
        return cached
    with atomic_path(out_dir, directory=True) as tmp_dir:
        manifest = _build_into(
            tmp_dir,
            documents,
            root=root,
            stages=stages,
            vocab_size=vocab_size,
            max_bytes=max_bytes,
            fingerprint=fingerprint,
        )
    return _info_from_manifest(out_dir, manifest)


def _build_into(
    tmp_dir: Path,
    documents: list[_Document],
    *,
    root: Path,
    stages: Stages,
    vocab_size: int,
    max_bytes: int,
    fingerprint: str,
) -> dict[str, Any]:
    train, valid = split_documents(documents)
    with stages.stage("train tokenizer") as note:
        tokenizer = train_tokenizer([d.text for d in train], vocab_size=vocab_size)
        tokenizer.save(str(tmp_dir / TOKENIZER_NAME))
        note["detail"] = f"vocab {tokenizer.get_vocab_size()} (on {len(train)} train files)"
    dtype = best_fitting_dtype(vocab_size)
    with stages.stage("encode") as note:
        train_ids, valid_ids = _encode(tokenizer, train, dtype), _encode(tokenizer, valid, dtype)
        counts = {"train": _count(train_ids), "valid": _count(valid_ids)}
        note["detail"] = ", ".join(f"{k} {v['tokens']:,} tokens" for k, v in counts.items())
    with stages.stage("write") as note:
        write_indexed_dataset(tmp_dir / TRAIN_PREFIX, train_ids, dtype=dtype)
        write_indexed_dataset(tmp_dir / VALID_PREFIX, valid_ids, dtype=dtype)
        manifest = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "python_version": sys.version.split()[0],
            "stdlib": str(root),
            "num_files": len(documents),
            "max_bytes": max_bytes,
            "requested_vocab_size": vocab_size,
            "vocab_size": tokenizer.get_vocab_size(),
            "tokenizers_version": tokenizers.__version__,
            "fingerprint": fingerprint,
            "splits": counts,
            "valid_files": [d.relpath for d in valid],
            "outputs": {name: _describe_file(tmp_dir / name) for name in OUTPUT_FILES},
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        (tmp_dir / MANIFEST_NAME).write_text(text, encoding="utf-8")
        note["detail"] = f"{len(OUTPUT_FILES) + 1} files"
    return manifest


def _count(docs: list[np.ndarray]) -> dict[str, int]:
    return {"documents": len(docs), "tokens": int(sum(len(d) for d in docs))}


def _describe_file(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _load_manifest(out_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _read_cached(out_dir: Path, fingerprint: str) -> CorpusInfo | None:
    manifest = _load_manifest(out_dir)
    if manifest is None or manifest.get("fingerprint") != fingerprint:
        return None
    for name, described in manifest.get("outputs", {}).items():
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != described["bytes"]:
            return None
    if set(manifest.get("outputs", {})) != set(OUTPUT_FILES):
        return None
    return _info_from_manifest(out_dir, manifest)


def _info_from_manifest(out_dir: Path, manifest: dict[str, Any]) -> CorpusInfo:
    splits = manifest["splits"]
    return CorpusInfo(
        out_dir=out_dir,
        tokenizer_path=out_dir / TOKENIZER_NAME,
        train_prefix=out_dir / TRAIN_PREFIX,
        valid_prefix=out_dir / VALID_PREFIX,
        vocab_size=int(manifest["vocab_size"]),
        num_files=int(manifest["num_files"]),
        train_documents=int(splits["train"]["documents"]),
        valid_documents=int(splits["valid"]["documents"]),
        train_tokens=int(splits["train"]["tokens"]),
        valid_tokens=int(splits["valid"]["tokens"]),
        fingerprint=str(manifest["fingerprint"]),
    )


def verify_builtin_corpus(out_dir: Path) -> CorpusInfo:
    """Re-hash every output file against ``manifest.json``; ValueError names the first bad one."""
    out_dir = Path(out_dir)
    manifest = _load_manifest(out_dir)
    if manifest is None:
        raise ValueError(
            f"missing or unreadable {out_dir / MANIFEST_NAME}; build the corpus "
            "with trainperf prepare"
        )
    for name in OUTPUT_FILES:
        path = out_dir / name
        expected = manifest.get("outputs", {}).get(name)
        if expected is None:
            raise ValueError(
                f"{out_dir / MANIFEST_NAME} does not list {name}; rebuild the corpus "
                "with trainperf prepare"
            )
        if not path.is_file():
            raise ValueError(f"missing {path}; rebuild the corpus with trainperf prepare")
        found = _describe_file(path)
        if found != expected:
            raise ValueError(
                f"{path} does not match {MANIFEST_NAME} (sha256 {found['sha256'][:12]}"
                f" vs {expected['sha256'][:12]}, {found['bytes']} vs "
                f"{expected['bytes']} bytes); rebuild with trainperf prepare"
            )
    return _info_from_manifest(out_dir, manifest)
