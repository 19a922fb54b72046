"""Where a benchmark's data lives, whether it is ready, and how to make it ready."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_logging.mllog import constants as C

from trainperf.config import Config
from trainperf.data import c4
from trainperf.data.c4 import TRAIN_PREFIX as C4_TRAIN_PREFIX
from trainperf.data.c4 import VALID_PREFIX as C4_VALID_PREFIX

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec

Log = Callable[[str], None]

BUILTIN_TRAIN_PREFIX = "train_text_document"
BUILTIN_VALID_PREFIX = "valid_text_document"
GOVREPORT_DIRNAME = "scrolls_gov_report_8k"  # the MLPerf dataset folder name
# Rows of the tiny LoRA task (train, validation): the GovReport counts, at toy length.
LORA_TINY_SAMPLES = (3901, 173)
# Rows of flux1's synthetic set (train, validation; validation at least train.eval_samples).


@dataclass(frozen=True)
class DataPaths:
    """The prepared files a run reads."""

    root: Path
    train_prefix: Path
    valid_prefix: Path
    tokenizer: Path
    """The tokenizer; flux1: the ``empty_encodings/`` folder (the text encoders' output for the
    empty caption, the one text-side file besides the sets). flux1's train_prefix and
    valid_prefix are the ``cc12m_preprocessed/`` and ``coco_preprocessed/`` folders."""
    model_dir: Path | None = None
    """The prepared base checkpoint (HF format) a fine-tuning benchmark starts from."""
    train_prefixes: tuple[Path, ...] = ()
    """Every Megatron prefix of the training set, blended with equal weights (C4: the spec's
    ``data.train_prefixes``; train_prefix is the first). Empty: train_prefix alone."""


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


def _is_flux(cfg: Config) -> bool:
    """Whether the config's benchmark trains the Flux family (its data: three Arrow sets)."""
    if cfg.data.source == "cc12m":
        return True
    from trainperf.benchmarks import BENCHMARKS  # here: the specs import this module

    spec = BENCHMARKS.get(cfg.benchmark)
    return spec is not None and spec.family_name == "flux"


def data_dir(cfg: Config) -> Path:
    """The folder of this config's data: ``data.data_dir`` or a cache folder named by content."""
    if cfg.data.data_dir:
        return Path(cfg.data.data_dir).expanduser()
    if cfg.data.source == "builtin" and _is_flux(cfg):
        from trainperf.data.flux_prepare import flux_synthetic_sizes

        return cache_root() / "data" / flux_synthetic_sizes(cfg).key
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
    if _is_flux(cfg):
        from trainperf.data.flux_format import EMPTY_DIR, EVAL_DIR, TRAIN_DIR

        return DataPaths(root, root / TRAIN_DIR, root / EVAL_DIR, root / EMPTY_DIR)
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
    return _c4_paths(c4_root(root), root / "tokenizer", _spec_train_prefixes(cfg))


def _spec_train_prefixes(cfg: Config) -> tuple[str, ...]:
    """The C4 files the config's benchmark trains on (its spec's ``data.train_prefixes``)."""
    from trainperf.benchmarks import BENCHMARKS  # here: the specs import this module

    spec = BENCHMARKS.get(cfg.benchmark)
    return (spec.data.train_prefixes if spec else ()) or (C4_TRAIN_PREFIX,)


def _c4_paths(c4: Path, tokenizer: Path, train_prefixes: tuple[str, ...]) -> DataPaths:
    prefixes = tuple(c4 / name for name in train_prefixes)
    return DataPaths(c4, prefixes[0], c4 / C4_VALID_PREFIX, tokenizer, train_prefixes=prefixes)


def c4_root(folder: Path) -> Path:
    """Where the C4 .bin/.idx files are: ``folder`` itself when they lie there, else
    ``folder/data`` (the layout ``prepare`` writes, as in the reference README) or the one folder
    below it that holds them (a download whose checksum list nests its files)."""
    if Path(f"{folder / C4_TRAIN_PREFIX}.idx").exists():
        return folder
    data = folder / "data"
    if not Path(f"{data / C4_TRAIN_PREFIX}.idx").exists():
        nested = sorted(data.glob(f"*/{C4_TRAIN_PREFIX}.idx")) if data.is_dir() else []
        if len(nested) == 1:
            return nested[0].parent
    return data


def index_cache_dir(paths: DataPaths) -> Path:
    """Where the training sample indices are cached: ``index_cache/`` beside the training data
    (megatron's ``index_mapping_dir``), or trainperf's cache when that folder is read-only."""
    beside = paths.train_prefix.parent / "index_cache"
    if os.access(beside if beside.is_dir() else beside.parent, os.W_OK):
        return beside
    key = hashlib.md5(str(paths.train_prefix.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "index_cache" / key


def missing_files(paths: DataPaths, cfg: Config | None = None) -> list[Path]:
    from trainperf.data import flux_format

    if paths.train_prefix.name == flux_format.TRAIN_DIR:
        wanted = [paths.train_prefix / "state.json", paths.valid_prefix / "state.json"]
        wanted += [paths.tokenizer / flux_format.T5_EMPTY, paths.tokenizer / flux_format.CLIP_EMPTY]
        return [p for p in wanted if not p.exists()]
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
        for prefix in (*(paths.train_prefixes or (paths.train_prefix,)), paths.valid_prefix)
        for ext in ("idx", "bin")
    ]
    return [p for p in wanted if not p.exists()]


def data_status(cfg: Config) -> str:
    """One word for ``trainperf list``: 'ready' or 'missing'."""
    return "missing" if missing_files(data_paths(cfg), cfg) else "ready"


def prepare_data(
    cfg: Config, *, train_prefixes: tuple[str, ...] = (), progress: bool = True
) -> DataPaths:
    """Make the config's data ready (building the built-in corpus if needed) and return its paths.

    The built-in corpus is cached by content: a second call returns at once. `train_prefixes`:
    the Megatron files a C4 benchmark trains on, blended with equal weights when there are
    several (default: its registered spec's ``data.train_prefixes``).
    """
    paths = data_paths(cfg)
    if _is_flux(cfg):
        from trainperf.data.flux_prepare import prepare_flux_data

        return prepare_flux_data(cfg, paths, progress=progress)
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
            progress=progress,
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
    if train_prefixes:
        paths = _c4_paths(paths.root, paths.tokenizer, train_prefixes)
    if missing := missing_files(paths):
        raise ValueError(
            f"C4 data for {cfg.benchmark} not found in {paths.root} (missing {missing[0].name}); "
            f"run `trainperf prepare {cfg.benchmark} --scale {cfg.scale} --data-dir "
            f"{data_dir(cfg)}` (downloads the MLPerf preprocessed C4, ~80 GB), or use --scale tiny"
        )
    return paths


@dataclass(frozen=True)
class C4Sources:
    """Where a pretraining benchmark's C4 comes from and what a verified copy must hold."""

    dataset_uri: str
    """MLCommons ``.uri`` of the preprocessed C4 (Megatron files)."""
    eval_samples: int
    tokenizer_uri: str | None = None
    """MLCommons ``.uri`` of the tokenizer (only its tokenizer files are fetched)."""
    tokenizer_repo: str | None = None
    """Hugging Face repository of the tokenizer, when MLCommons does not host it."""
    vocab_size: int | None = None
    """Largest token id + 1 the model embeds (None: the tokenizer's size)."""
    train_prefixes: tuple[str, ...] = (C4_TRAIN_PREFIX,)
    seq_len: int = 8192


def prepare_c4(
    root: Path,
    sources: C4Sources,
    *,
    verify_only: bool = False,
    raw_c4: Path | None = None,
    tokenizer: Path | None = None,
    workers: int = 8,
    log: Log = lambda _: None,
    console: Any = None,
) -> None:
    """Fetch (or tokenize from ``raw_c4``) a benchmark's C4 into ``root/data`` and its tokenizer
    into ``root/tokenizer``, then verify: MD5 lists, indexed files, token range, tokenizer.
    ``verify_only`` touches no network. ValueError names the first problem."""
    from trainperf.data import hub, mlcommons

    data, tokenizer_dir = root / "data", root / "tokenizer"

    def download(uri: str, dest: Path, include: tuple[str, ...] | None) -> None:
        mlcommons.download_dataset(
            uri, dest, include=include, workers=workers, log=log, console=console
        )

    if not verify_only:
        if not raw_c4:  # the data first: a refused tokenizer then leaves it downloaded
            download(sources.dataset_uri, data, None)
        if sources.tokenizer_uri and not (raw_c4 and tokenizer):
            download(sources.tokenizer_uri, tokenizer_dir, c4.TOKENIZER_FILES)
        elif sources.tokenizer_repo:
            hub.download_tokenizer(tokenizer_dir, repo_id=sources.tokenizer_repo)
        if raw_c4:
            c4.tokenize_raw_c4(raw_c4, data, tokenizer_dir=tokenizer or tokenizer_dir, log=log)
    for folder in dict.fromkeys([data, c4_root(root)]):  # the download folder and the files'
        verify_md5_lists(folder, log=log)
    verify_md5_lists(tokenizer_dir, include=c4.TOKENIZER_FILES, log=log)
    tokenizer = tokenizer or tokenizer_dir
    has_tokenizer = tokenizer.is_dir() and any(tokenizer.rglob("tokenizer.json"))
    vocab = sources.vocab_size
    if vocab is None:  # uint16 data holds ids below 65536 at most
        vocab = c4.load_tokenizer(tokenizer).get_vocab_size() if has_tokenizer else 65536
    for line in c4.verify_c4(
        c4_root(root),
        seq_len=sources.seq_len,
        eval_samples=sources.eval_samples,
        vocab_size=vocab,
        tokenizer_dir=tokenizer if has_tokenizer else None,
        train_prefixes=sources.train_prefixes,
    ):
        log(line)


def verify_md5_lists(
    folder: Path, *, include: tuple[str, ...] | None = None, log: Log = lambda _: None
) -> None:
    """Check ``folder`` against every ``.md5`` list a download left there (none: nothing)."""
    from trainperf.data import mlcommons

    for md5_file in sorted(folder.glob("*.md5")) if folder.is_dir() else []:
        verified = mlcommons.verify_dataset_files(folder, md5_file, include=include)
        log(f"MD5 verified: {len(verified)} file(s) of {md5_file.name}")


@dataclass(frozen=True)
class PrepareOptions:
    """What ``trainperf prepare`` is asked to do beyond the benchmark and scale."""

    verify_only: bool = False
    """Verify what is there; download and build nothing."""
    skip_model: bool = False
    """The data only, not the base model (LoRA)."""
    raw_c4: Path | None = None
    """Tokenize raw allenai/c4 JSON from this folder instead of downloading the preprocessed C4."""
    tokenizer: Path | None = None
    """With raw_c4: the Hugging Face tokenizer folder (default: download the benchmark's)."""
    dataset_uri: str | None = None
    """MLCommons .uri of the dataset instead of the rules' own."""
    tokenizer_uri: str | None = None
    """MLCommons .uri of the tokenizer instead of the rules' own."""
    raw_images: Path | None = None
    """flux1: encode raw images and captions from this folder (``data/flux_encode.py``)."""
    encoders: str | None = None
    """With raw_images: a diffusers FLUX.1 pipeline folder or hub id (default FLUX.1-schnell)."""
    workers: int = 8
    """Parallel downloads."""


def prepare_benchmark(
    spec: BenchmarkSpec,
    cfg: Config,
    options: PrepareOptions = PrepareOptions(),
    *,
    log: Log = lambda _: None,
    console: Any = None,
) -> Path:
    """Make the data of benchmark `spec` at the scale of `cfg` ready and verified; returns its
    folder. By the config's data source:

    - ``govreport``: GovReport and the Llama-2-70B base model (not with ``skip_model``) from the
      Hugging Face Hub, then both verified (``verify_only``: verify what is there);
    - ``c4``: MLCommons' preprocessed C4 and its tokenizer, or ``raw_c4`` tokenized here with
      ``tokenizer`` (``prepare_c4``); ``dataset_uri``/``tokenizer_uri`` replace the rules' own;
    - ``cc12m`` (flux1): MLCommons' preprocessed CC12M, COCO and empty encodings
      (``flux_prepare.prepare_flux``); ``dataset_uri``: one of the three ``.uri``, the
      others beside it;
    - ``builtin``: the reduced scales' corpus (flux1: a synthetic set), built offline and cached.

    The verification lines go to ``log``, download progress to ``console`` (a rich Console).
    The tiny base model of a reduced fine-tuning scale is trained by ``train/``:
    ``launch.prepare.prepare_benchmark_files`` adds it."""
    o = options
    if o.raw_images and cfg.data.source != "cc12m":
        raise ValueError(f"--raw is for flux1 at full scale; {cfg.benchmark} --scale {cfg.scale} "
                         f"uses {cfg.data.source} data (llama31_8b: --raw-c4)")  # fmt: skip
    if cfg.data.source == "cc12m":
        from trainperf.data.flux_prepare import prepare_flux_benchmark

        return prepare_flux_benchmark(spec, cfg, o, log=log, console=console)
    if cfg.data.source == "govreport":
        return _prepare_govreport(
            spec, cfg, verify_only=o.verify_only, skip_model=o.skip_model, log=log
        )
    if cfg.data.source == "c4":
        data = spec.data
        if data.checkpoint_note:  # said first: what prepare cannot fetch
            _note(data.checkpoint_note, console=console, log=log)
        if o.raw_c4 and data.tokenizer_uri is None:
            raise ValueError(f"--raw-c4 is for llama31_8b; {cfg.benchmark} downloads its C4 files")
        sources = C4Sources(
            dataset_uri=o.dataset_uri or data.dataset_uri,
            tokenizer_uri=o.tokenizer_uri or data.tokenizer_uri,
            tokenizer_repo=data.tokenizer_repo,
            # the 8B model embeds the Llama 3.1 vocabulary; 405B's is the tokenizer's (Mixtral)
            vocab_size=data.vocab_size,
            eval_samples=spec.eval.eval_samples,
            train_prefixes=data.train_prefixes,
        )
        prepare_c4(data_dir(cfg), sources, verify_only=o.verify_only, raw_c4=o.raw_c4,
                   tokenizer=o.tokenizer, workers=o.workers, log=log, console=console)  # fmt: skip
        return data_dir(cfg)
    if o.raw_c4:
        raise ValueError(
            f"--raw-c4 prepares the full-scale C4 data; {cfg.benchmark} --scale {cfg.scale} uses "
            f"{cfg.data.source} data: add --scale full"
        )
    return prepare_data(cfg, train_prefixes=spec.data.train_prefixes, progress=True).root


def _prepare_govreport(
    spec: BenchmarkSpec, cfg: Config, *, verify_only: bool, skip_model: bool, log: Log
) -> Path:
    from trainperf.data import govreport

    root = data_dir(cfg)
    dataset, model = root / GOVREPORT_DIRNAME, root / "model"
    if not verify_only:
        from trainperf.data.hub import download_govreport, download_model

        download_govreport(dataset)
        if not skip_model:
            download_model(model)
    for line in govreport.verify_dataset(
        dataset,
        train_samples=spec.data.train_samples,
        eval_samples=spec.eval.eval_samples,
        max_seq_len=spec.rules[C.MAX_SEQUENCE_LENGTH],
    ):
        log(line)
    if not skip_model:
        log(spec.family.verify_checkpoint(model, cfg.model.flavor))
    return root


def _note(text: str, *, console: Any, log: Log) -> None:
    if console is None:
        log(f"note: {text}")
    else:
        console.print(f"[yellow]note:[/] {text}")
