"""Where a benchmark's data lives, whether it is ready, and how to make it ready."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from trainperf.config import Config
from trainperf.data.c4 import TRAIN_PREFIX as C4_TRAIN_PREFIX
from trainperf.data.c4 import VALID_PREFIX as C4_VALID_PREFIX

BUILTIN_TRAIN_PREFIX = "train_text_document"
BUILTIN_VALID_PREFIX = "valid_text_document"
GOVREPORT_DIRNAME = "scrolls_gov_report_8k"  # the MLPerf dataset folder name
# Rows of the tiny LoRA task (train, validation): the GovReport counts, at toy length.
LORA_TINY_SAMPLES = (3901, 173)


@dataclass(frozen=True)
class DataPaths:
    """The prepared files a run reads."""

    root: Path
    train_prefix: Path
    valid_prefix: Path
    tokenizer: Path
    model_dir: Path | None = None
    """The prepared base checkpoint (HF format) a fine-tuning benchmark starts from."""


def cache_root() -> Path:
    """Root of trainperf's data cache: $TRAINPERF_HOME, else $XDG_CACHE_HOME/trainperf."""
    if home := os.environ.get("TRAINPERF_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "trainperf"


def _finetune(cfg: Config) -> bool:
    return cfg.model.lora_rank > 0


def _builtin_key(cfg: Config) -> str:
    return f"builtin-v{cfg.data.vocab_size}-b{cfg.data.max_bytes}"


def data_dir(cfg: Config) -> Path:
    """The folder of this config's data: ``data.data_dir`` or a cache folder named by content."""
    if cfg.data.data_dir:
        return Path(cfg.data.data_dir).expanduser()
    if cfg.data.source == "builtin" and _finetune(cfg):
        return cache_root() / "data" / f"docstrings-{_builtin_key(cfg)}-s{cfg.train.seq_len}"
    if cfg.data.source == "builtin":
        return cache_root() / "data" / _builtin_key(cfg)
    return cache_root() / "data" / cfg.benchmark / cfg.data.source


def govreport_root(folder: Path) -> Path:
    """Where the GovReport files are: ``folder/scrolls_gov_report_8k`` (the layout ``prepare``
    writes, beside ``model/``) or ``folder`` itself."""
    nested = folder / GOVREPORT_DIRNAME
    return nested if nested.is_dir() or not any(folder.glob("*.parquet")) else folder


def data_paths(cfg: Config) -> DataPaths:
    root = data_dir(cfg)
    if cfg.data.source == "builtin" and _finetune(cfg):
        model_dir = cache_root() / "models" / f"{cfg.model.flavor}-{_builtin_key(cfg)}"
        return DataPaths(
            root, root / "train", root / "validation", root / "tokenizer.json", model_dir
        )
    if cfg.data.source == "builtin":
        return DataPaths(
            root, root / BUILTIN_TRAIN_PREFIX, root / BUILTIN_VALID_PREFIX, root / "tokenizer.json"
        )
    if cfg.data.source == "govreport":
        dataset = govreport_root(root)
        return DataPaths(
            dataset, dataset / "train", dataset / "validation", root / "model", root / "model"
        )
    c4 = c4_root(root)
    return DataPaths(c4, c4 / C4_TRAIN_PREFIX, c4 / C4_VALID_PREFIX, root / "tokenizer")


def c4_root(folder: Path) -> Path:
    """Where the C4 .bin/.idx files are: ``folder/data`` (the layout ``prepare`` writes, beside
    ``tokenizer/``, as in the reference README) or ``folder`` itself when they lie there."""
    if Path(f"{folder / C4_TRAIN_PREFIX}.idx").exists():
        return folder
    return folder / "data"


def index_cache_dir(paths: DataPaths) -> Path:
    """Where the training sample indices are cached: ``index_cache/`` beside the training data
    (megatron's ``index_mapping_dir``), or trainperf's cache when that folder is read-only."""
    beside = paths.train_prefix.parent / "index_cache"
    if os.access(beside if beside.is_dir() else beside.parent, os.W_OK):
        return beside
    key = hashlib.md5(str(paths.train_prefix.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "index_cache" / key


def missing_files(paths: DataPaths, cfg: Config | None = None) -> list[Path]:
    if cfg is not None and _finetune(cfg):
        missing = [
            p
            for p in (paths.train_prefix, paths.valid_prefix)
            if not any(p.parent.glob(f"{p.name}*.parquet")) and not p.with_suffix(".npy").exists()
        ]
        if cfg.model.checkpoint is None and paths.model_dir is not None:
            if not (paths.model_dir / "config.json").exists():
                missing.append(paths.model_dir / "config.json")
        return missing
    wanted = [
        Path(f"{prefix}.{ext}")
        for prefix in (paths.train_prefix, paths.valid_prefix)
        for ext in ("idx", "bin")
    ]
    return [p for p in wanted if not p.exists()]


def data_status(cfg: Config) -> str:
    """One word for ``trainperf list``: 'ready' or 'missing'."""
    return "missing" if missing_files(data_paths(cfg), cfg) else "ready"


def prepare_data(cfg: Config, *, progress: bool = True) -> DataPaths:
    """Make the config's data ready (building the built-in corpus if needed) and return its paths.

    The built-in corpus is cached by content: a second call returns at once.
    """
    paths = data_paths(cfg)
    if cfg.data.source == "builtin" and _finetune(cfg):
        from trainperf.data.docstrings import build_docstring_task

        corpus_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora_rank=0))
        corpus = prepare_data(corpus_cfg, progress=progress)
        build_docstring_task(
            paths.root,
            corpus_dir=corpus.root,
            seq_len=cfg.train.seq_len,
            train_samples=LORA_TINY_SAMPLES[0],
            eval_samples=max(LORA_TINY_SAMPLES[1], cfg.train.eval_samples),
        )
        return paths
    if cfg.data.source == "builtin":
        from trainperf.data.corpus import build_builtin_corpus

        build_builtin_corpus(
            paths.root,
            vocab_size=cfg.data.vocab_size,
            max_bytes=cfg.data.max_bytes,
            progress=progress,
        )
        return paths
    if cfg.data.source == "govreport":
        if missing := missing_files(paths, cfg):
            raise ValueError(
                f"GovReport data or base model for {cfg.benchmark} not found (missing "
                f"{missing[0]}); run `trainperf prepare {cfg.benchmark} --data-dir "
                f"{data_dir(cfg)}` (needs HF_TOKEN with access to Llama 2), or use --scale tiny"
            )
        return paths
    if missing := missing_files(paths):
        raise ValueError(
            f"C4 data for {cfg.benchmark} not found in {paths.root} (missing {missing[0].name}); "
            f"run `trainperf prepare {cfg.benchmark} --scale {cfg.scale} --data-dir "
            f"{data_dir(cfg)}` (downloads the MLPerf preprocessed C4, ~80 GB), or use --scale tiny"
        )
    return paths
