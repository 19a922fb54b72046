"""The typed benchmark spec: everything a benchmark provides, in one frozen record.

Each benchmark module (``llama31_8b.py``, ...) keeps its rules as constants named after the MLLOG
keys they satisfy and builds one `BenchmarkSpec` from them, in the spirit of torchtitan's
TrainSpec. ``get_benchmark(name)`` returns it; the rest of trainperf reads its fields and never
a module attribute: the trainer its family, task, data reader and hyperparameter events; the
launchers its scales and presets; the scorers its evaluation rules, RCP name and run count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainperf.config import Config

if TYPE_CHECKING:  # the types only: a spec is built by its benchmark module
    from trainperf.data.prepare import DataPaths
    from trainperf.data.readers import BenchmarkData
    from trainperf.models.family import ModelFamily
    from trainperf.train.tasks import Task


@dataclass(frozen=True)
class Scale:
    name: str
    """'full', 'proxy', 'small' or 'tiny'."""
    description: str
    """One line for ``trainperf list``."""
    flavor: str
    """Model size registry name."""
    seq_len: int
    global_batch_size: int
    micro_batch_size: int
    lr: float
    warmup_steps: int
    max_steps: int
    eval_every_samples: int
    eval_samples: int
    target: float
    """Quality target (eval_accuracy at or below it ends the run with success)."""
    data_source: str
    """'c4', 'govreport', 'cc12m' or 'builtin'."""
    vocab_size: int = 0
    """Tokenizer size of the built-in text corpus (0: the benchmark reads no tokens)."""
    max_bytes: int = 8_000_000
    """Source bytes of the built-in corpus (builtin data only)."""
    n_layers: int | None = None
    """Transformer layers when fewer than the flavor's (proxy scales)."""


@dataclass(frozen=True)
class PerfPreset:
    """A named ``trainperf perf`` configuration: a proxy of the benchmark that fits few GPUs,
    as the NVIDIA Llama 3.1 405B performance guide measures reduced-depth models."""

    description: str
    """One line for ``trainperf perf --preset help``: shapes, GPUs it is sized for."""
    scale: str
    """The scale it starts from."""
    overrides: tuple[str, ...] = ()
    """``section.key=value`` applied after the scale's defaults (before the user's own)."""


@dataclass(frozen=True)
class EvalRules:
    """When a benchmark evaluates and what ends it (training rules, "Quality measure" table)."""

    target: float
    """eval_accuracy at or below this ends the run (MLLOG eval_accuracy, the closed YAML's
    ATLEAST_ONE_CHECK)."""
    every_samples: int
    """Evaluate every this many training samples, rounded up to a multiple of the GBS."""
    eval_samples: int
    """Samples in one evaluation (MLLOG eval_samples)."""
    skip_slope: float = 0.0
    skip_offset: float = 0.0
    """The rules skip the first FLOOR(skip_slope * GBS + skip_offset) evaluations."""
    first_eval_at_skip: bool = False
    """The reference's first evaluation is *at* boundary number skip (405B's ``18432 *
    floor(0.0026 GBS + 12) / GBS`` steps), not at skip + 1 (70B LoRA: GBS 8 skips 3 and first
    evaluates at 4 x 384 = 1536 samples)."""

    def evaluations_skipped(self, gbs: int) -> int:
        """FLOOR(skip_slope * gbs + skip_offset), as the rules state it."""
        return math.floor(self.skip_slope * gbs + self.skip_offset)

    def first_eval_index(self, gbs: int) -> int:
        """The evaluation boundary (1, 2, ...) of the first evaluation that runs."""
        skip = self.evaluations_skipped(gbs)
        return max(1, skip if self.first_eval_at_skip else skip + 1)

    def interval(self, gbs: int) -> int:
        """Samples between evaluations: every_samples rounded up to a multiple of gbs."""
        return math.ceil(self.every_samples / gbs) * gbs


@dataclass(frozen=True)
class DataSpec:
    """Where a benchmark's full-scale data comes from and how a run reads it."""

    source: str
    """The full-scale format: 'c4' (Megatron .bin/.idx) or 'govreport' (parquet / .npy rows)."""
    reader: Callable[[Config, DataPaths, Any], BenchmarkData]
    """(config, prepared paths, model config) -> the run's training and evaluation batches."""
    dataset_uri: str | None = None
    """MLCommons ``.uri`` of the preprocessed dataset (None: fetched another way)."""
    tokenizer_uri: str | None = None
    """MLCommons ``.uri`` of the tokenizer files."""
    tokenizer_repo: str | None = None
    """Hugging Face Hub repository of the tokenizer when MLCommons does not host it."""
    train_prefixes: tuple[str, ...] = ()
    """Megatron dataset prefixes the training set is made of (C4)."""
    vocab_size: int | None = None
    """The tokenizer's vocabulary: every token id of the prepared data is below it (None: not
    known here)."""
    train_samples: int | None = None
    """Rows of the training split, when fixed by the rules (GovReport: 3901)."""
    checkpoint_note: str | None = None
    """Why ``prepare`` cannot fetch the starting checkpoint, when it cannot."""


def round_name(ruleset: str) -> str:
    """An mlperf_logging ruleset's MLPerf round: '6.1.0' -> 'v6.1'."""
    major, minor, *_ = ruleset.split(".")
    return f"v{major}.{minor}"


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    """The MLPerf benchmark name (MLLOG submission_benchmark)."""
    summary: str
    """One line: what is trained on what."""
    family_name: str
    """The model family it trains: the folder ``models/<family_name>`` (see `family`)."""
    rules: Mapping[str, Any]
    """The closed-division values, by MLLOG key (the module's constants; tests check them
    against ``mlperf_logging``'s compliance YAML)."""
    eval: EvalRules
    scales: Mapping[str, Scale]
    rulesets: tuple[str, ...]
    """mlperf_logging training rulesets (MLPerf rounds) that have this benchmark."""
    submission_runs: int
    """Result files of a submission (mlperf_logging benchmark_meta)."""
    data: DataSpec
    task: Task
    """The loss the model trains on and the evaluation metric that stops the run."""
    default_config: Callable[[str], Config]
    """scale -> the benchmark's default configuration at that scale."""
    hyperparameter_events: Callable[[Config], list[tuple[str, object]]]
    """The MLLOG hyperparameter keys with the values a run of the config really uses."""
    scale_dependent_keys: tuple[str, ...] = ()
    """Keys whose compliance CHECK depends on the scale: a reduced-scale run logs its real
    (smaller) values and the checker flags exactly these."""
    perf_presets: Mapping[str, PerfPreset] = field(default_factory=dict)
    required_hyperparameters: Callable[[Mapping[str, Any], int | None, bool], dict[str, Any]] = (
        lambda hyper, gbs, full: {}
    )
    """(logged hyperparameters, GBS, full scale) -> MLLOG key -> the value the rules require of
    a run (``trainperf report``'s conformance); some follow from others (decay from warmup)."""
    rcp_points: Mapping[int, tuple[float, int | None]] = field(default_factory=dict)
    """The RCPs' choices the rules leave free: GBS -> (base LR, warmup samples or None)."""

    @property
    def rounds(self) -> tuple[str, ...]:
        """The MLPerf Training rounds that have it, oldest first: ('v5.1', 'v6.0', ...)."""
        return tuple(round_name(r) for r in self.rulesets)

    def retired_note(self, newest: str) -> str | None:
        """None when ruleset `newest` (the newest round) has this benchmark; else what a run of
        it is told: its last round, and the ruleset its logs are checked and scored under."""
        if newest in self.rulesets:
            return None
        last = self.rulesets[-1]
        return (
            f"{self.name} is retired in MLPerf Training {round_name(newest)} (its last round: "
            f"{round_name(last)}); its runs follow ruleset {last}, which check and score use "
            "for its logs"
        )

    lr_schedule: str = "cosine"
    """The reference's LR schedule (``train.lr_schedule``): what ``report`` checks a log's
    per-step LRs against when no config of ours is beside it."""
    rcp_name: str = ""
    """Name of the benchmark's RCP file (``rcps_<rcp_name>.json``); default: its name."""
    untrainable: str | None = None
    """Why trainperf cannot train it (None: it can), e.g. its model family is not implemented:
    run, perf, doctor, systems and prepare refuse with this reason; list, score, check, watch
    and report read its result logs."""

    def __post_init__(self) -> None:
        if not self.rcp_name:
            object.__setattr__(self, "rcp_name", self.name)

    def check_trainable(self) -> None:
        """ValueError with the reason when trainperf cannot train this benchmark."""
        if self.untrainable:
            raise ValueError(f"{self.name} cannot be trained with trainperf: {self.untrainable}")

    @property
    def family(self) -> ModelFamily:
        """The family's record (``models/<family_name>/__init__.py``'s FAMILY), imported on
        first use: listing, scoring and watching never import torch. ValueError with the reason
        for a benchmark trainperf cannot train."""
        from trainperf.models import get_family

        self.check_trainable()
        return get_family(self.family_name)

    def config(self, scale: str) -> Config:
        """The default config at `scale`; ValueError naming the known scales."""
        if scale not in self.scales:
            raise ValueError(
                f"unknown scale {scale!r} for {self.name}; known: {', '.join(self.scales)}"
            )
        return self.default_config(scale)

    def resolve(self, cfg: Config) -> Config:
        """Fill what the config leaves to the rules (None): the evaluations not run before the
        first one (from the final global batch size)."""
        if cfg.train.eval_skip is not None:
            return cfg
        skip = self.eval.first_eval_index(cfg.train.global_batch_size) - 1
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_skip=skip))
