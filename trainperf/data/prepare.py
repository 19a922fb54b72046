"""Where a benchmark's data lives, whether it is ready, and how to make it ready."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainperf.config import Config

# File prefixes of the MLPerf preprocessed C4 (Megatron .bin/.idx) as the llama31_8b reference
# names them: it trains on the merged shard en_6 only and validates on the first 91,205 documents.
C4_TRAIN_PREFIX = "c4-train.en_6_text_document"
C4_VALID_PREFIX = "c4-validation-91205-samples.en_text_document"
BUILTIN_TRAIN_PREFIX = "train_text_document"
BUILTIN_VALID_PREFIX = "valid_text_document"


@dataclass(frozen=True)
class DataPaths:
    """The prepared files a run reads."""

    root: Path
    train_prefix: Path
    valid_prefix: Path
    tokenizer: Path


def cache_root() -> Path:
    """Root of trainperf's data cache: $TRAINPERF_HOME, else $XDG_CACHE_HOME/trainperf."""
    if home := os.environ.get("TRAINPERF_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "trainperf"


def data_dir(cfg: Config) -> Path:
    """The folder of this config's data: ``data.data_dir`` or a cache folder named by content."""
    if cfg.data.data_dir:
        return Path(cfg.data.data_dir).expanduser()
    if cfg.data.source == "builtin":
        key = f"builtin-v{cfg.data.vocab_size}-b{cfg.data.max_bytes}"
        return cache_root() / "data" / key
    return cache_root() / "data" / cfg.benchmark / "c4"


def data_paths(cfg: Config) -> DataPaths:
    root = data_dir(cfg)
    if cfg.data.source == "builtin":
        return DataPaths(
            root, root / BUILTIN_TRAIN_PREFIX, root / BUILTIN_VALID_PREFIX, root / "tokenizer.json"
        )
    return DataPaths(root, root / C4_TRAIN_PREFIX, root / C4_VALID_PREFIX, root / "tokenizer")


def missing_files(paths: DataPaths) -> list[Path]:
    wanted = [
        Path(f"{prefix}.{ext}")
        for prefix in (paths.train_prefix, paths.valid_prefix)
        for ext in ("idx", "bin")
    ]
    return [p for p in wanted if not p.exists()]


def data_status(cfg: Config) -> str:
    """One word for ``trainperf list``: 'ready' or 'missing'."""
    return "missing" if missing_files(data_paths(cfg)) else "ready"


def prepare_data(cfg: Config, *, progress: bool = True) -> DataPaths:
    """Make the config's data ready (building the built-in corpus if needed) and return its paths.

    The built-in corpus is cached by content: a second call returns at once.
    """
    paths = data_paths(cfg)
    if cfg.data.source == "builtin":
        from trainperf.data.corpus import build_builtin_corpus

        build_builtin_corpus(
            paths.root,
            vocab_size=cfg.data.vocab_size,
            max_bytes=cfg.data.max_bytes,
            progress=progress,
        )
        return paths
    if missing := missing_files(paths):
        raise ValueError(
            f"C4 data for {cfg.benchmark} not found in {paths.root} (missing {missing[0].name}); "
            f"put the MLPerf preprocessed C4 files ({C4_TRAIN_PREFIX}.{{bin,idx}} and "
            f"{C4_VALID_PREFIX}.{{bin,idx}}) there and pass --data-dir, or use --scale tiny"
        )
    return paths
