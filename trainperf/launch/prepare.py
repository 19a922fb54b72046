"""A benchmark's files made ready before it runs: its data, and for a reduced fine-tuning scale
the tiny base model it starts from (pretrained here once, then cached).

The base model is trained by ``train/``, which reads ``data/``: this is the one place that joins
the two, so that data stays upstream of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from trainperf.config import Config
from trainperf.data.prepare import (
    DataPaths,
    Log,
    PrepareOptions,
    data_paths,
    prepare_benchmark,
    prepare_data,
)

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec


def prepare_run(cfg: Config, *, progress: bool) -> DataPaths:
    """Data (and a reduced scale's base model) ready before a run; returns the paths."""
    from trainperf.benchmarks import get_benchmark

    spec = get_benchmark(cfg.benchmark)
    paths = prepare_data(cfg, train_prefixes=spec.data.train_prefixes, progress=progress)
    if cfg.data.source == "builtin" and paths.model_dir is not None and not cfg.model.checkpoint:
        from trainperf.train.base_model import prepare_base_model

        prepare_base_model(cfg, spec, paths, progress=progress)
    return paths


def prepare_benchmark_files(
    spec: BenchmarkSpec,
    cfg: Config,
    options: PrepareOptions,
    *,
    log: Log = lambda _: None,
    console: Console | None = None,
) -> Path:
    """``trainperf prepare``: the benchmark's data (``data.prepare.prepare_benchmark``) and,
    unless ``options.skip_model``, the built-in scales' tiny base model. Returns the data
    folder."""
    root = prepare_benchmark(spec, cfg, options, log=log, console=console)
    if cfg.data.source == "builtin" and not options.skip_model:
        paths = data_paths(cfg)
        if paths.model_dir is not None:
            from trainperf.train.base_model import prepare_base_model

            prepare_base_model(cfg, spec, paths, progress=True)
    return root
