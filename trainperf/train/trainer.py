"""One benchmark run: set up, train to the quality target, log MLPerf events on the way.

The timed region follows the MLPerf rules: model build and data indexing happen between
``init_start`` and ``init_stop``; the clock (``run_start``) starts before the first training token
is read; ``run_stop`` is logged right after the first evaluation that reaches the target
(status ``success``), or when the step limit passes (status ``aborted``), or when the run fails
or is interrupted (status ``aborted`` with the reason), so a log always says how it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from mlperf_logging.mllog import constants as C
from rich.console import Console

from trainperf.benchmarks import get_benchmark
from trainperf.config import Config, save_config
from trainperf.data.gpt_dataset import GPTEvalDataset, GPTTrainDataset, get_batch
from trainperf.data.indexed import IndexedDataset
from trainperf.data.prepare import DataPaths
from trainperf.mlperf.logger import MLPerfLogger, create_result_file
from trainperf.models.hf_adapter import load_hf_checkpoint
from trainperf.models.llama import Llama, get_llama_config
from trainperf.train.optim import build_optimizer, lr_at, set_lr
from trainperf.train.progress import RunProgress


@dataclass
class RunResult:
    """What a finished (or failed) run reports back."""

    index: int
    log_path: Path
    config_path: Path
    status: str
    seed: int
    steps: int = 0
    samples: int = 0
    last_eval: float | None = None
    time_to_train_s: float | None = None
    reason: str | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA GPU is visible; use train.device=cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def describe_platform(device: torch.device) -> str:
    if device.type == "cuda":
        return f"1x{torch.cuda.get_device_name(device)}"
    return f"1x{platform.processor() or platform.machine()}-CPU"


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


class Trainer:
    """Builds data, model and optimizer for one run and trains it to the target."""

    def __init__(
        self,
        cfg: Config,
        paths: DataPaths,
        *,
        ml: MLPerfLogger,
        console: Console,
        show_progress: bool = True,
    ) -> None:
        assert cfg.train.seed is not None, "resolve the seed before building a Trainer"
        self.cfg = cfg
        self.paths = paths
        self.ml = ml
        self.console = console
        self.show_progress = show_progress
        self.device = resolve_device(cfg.train.device)
        self.dtype = resolve_dtype(cfg.train.dtype, self.device)
        self.steps = 0
        self.last_eval: float | None = None

    # ---- setup (inside init_start .. init_stop) ----------------------------------------------
    def setup(self) -> None:
        t = self.cfg.train
        train_tokens = IndexedDataset(self.paths.train_prefix)
        valid_tokens = IndexedDataset(self.paths.valid_prefix)
        self.train_data = GPTTrainDataset(
            train_tokens,
            seq_len=t.seq_len,
            seed=t.seed,
            num_samples=t.max_steps * t.global_batch_size,
        )
        self.eval_data = GPTEvalDataset(valid_tokens, seq_len=t.seq_len, num_samples=t.eval_samples)
        # MLLOG train_samples: sequences in one pass over the training tokens
        self.train_samples_per_epoch = (train_tokens.num_tokens - 1) // t.seq_len
        self.model = self.build_model()
        self.optimizer = build_optimizer(self.model, t, fused=self.device.type == "cuda")

    def build_model(self) -> Llama:
        overrides: dict[str, int] = {"max_seq_len": self.cfg.train.seq_len}
        if self.cfg.model.n_layers is not None:
            overrides["n_layers"] = self.cfg.model.n_layers
        if self.cfg.data.source == "builtin":  # the embedding follows the locally built tokenizer
            overrides["vocab_size"] = self.cfg.data.vocab_size
        mcfg = get_llama_config(self.cfg.model.flavor, **overrides)
        with torch.device("meta"):
            model = Llama(mcfg)
        model.to_empty(device=self.device)
        torch.manual_seed(self.cfg.train.seed)
        if self.cfg.model.checkpoint:
            load_hf_checkpoint(model, self.cfg.model.checkpoint)
        else:
            model.init_weights()
        return model

    # ---- the timed region --------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def loss_of(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross entropy (nats) over every token of a (B, T+1) batch."""
        inputs, labels = batch[:, :-1], batch[:, 1:]
        with self.autocast():
            logits = self.model(inputs)  # (B, T, vocab)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())

    def train_step(self) -> torch.Tensor:
        t = self.cfg.train
        accum = t.global_batch_size // t.micro_batch_size
        first = self.steps * t.global_batch_size
        total = torch.zeros((), device=self.device)
        for m in range(accum):
            start = first + m * t.micro_batch_size
            batch = get_batch(self.train_data, range(start, start + t.micro_batch_size))
            loss = self.loss_of(batch.to(self.device, non_blocking=True)) / accum
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        set_lr(
            self.optimizer,
            lr_at(
                self.steps,
                base_lr=t.lr,
                end_lr=t.end_lr,
                warmup_steps=t.warmup_steps,
                max_steps=t.max_steps,
            ),
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return total

    @torch.no_grad()
    def evaluate(self) -> float:
        """Log perplexity (mean token cross entropy in nats) over the fixed evaluation set."""
        self.model.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        n = len(self.eval_data)
        bs = self.cfg.train.eval_batch_size
        for start in range(0, n, bs):
            batch = get_batch(self.eval_data, range(start, min(start + bs, n))).to(self.device)
            total += self.loss_of(batch).double() * batch.shape[0]
        self.model.train()
        return float(total / n)

    def train(self) -> str:
        """Train until the target (returns 'success') or the step limit ('aborted')."""
        t, ml = self.cfg.train, self.ml
        gbs, interval = t.global_batch_size, t.eval_interval_samples
        progress = RunProgress(
            self.console,
            label=f"{self.cfg.benchmark}/{self.cfg.scale}",
            max_samples=t.max_steps * gbs,
            target=t.target,
            tokens_per_sample=t.seq_len,
        )
        loss_val: float | None = None
        ml.start(C.BLOCK_START, metadata={C.SAMPLES_COUNT: 0})
        with progress if self.show_progress else contextlib.nullcontext():
            while self.steps < t.max_steps:
                loss = self.train_step()
                samples = self.steps * gbs
                if self.steps % self.cfg.log.log_every_steps == 0 or samples % interval == 0:
                    loss_val = float(loss)
                    ml.event(
                        "train_loss",
                        loss_val,
                        metadata={
                            C.SAMPLES_COUNT: samples,
                            "lr": self.optimizer.param_groups[0]["lr"],
                        },
                    )
                    if self.show_progress:
                        progress.update(samples=samples, loss=loss_val)
                if samples % interval:
                    continue
                ml.end(C.BLOCK_STOP, metadata={C.SAMPLES_COUNT: samples})
                ml.start(C.EVAL_START, metadata={C.SAMPLES_COUNT: samples})
                self.last_eval = self.evaluate()
                ml.event(C.EVAL_ACCURACY, self.last_eval, metadata={C.SAMPLES_COUNT: samples})
                ml.end(C.EVAL_STOP, metadata={C.SAMPLES_COUNT: samples})
                if self.show_progress:
                    progress.record_eval(samples=samples, value=self.last_eval, loss=loss_val)
                if self.last_eval <= t.target:
                    return C.SUCCESS
                if self.steps < t.max_steps:
                    ml.start(C.BLOCK_START, metadata={C.SAMPLES_COUNT: samples})
            if samples % interval:
                ml.end(C.BLOCK_STOP, metadata={C.SAMPLES_COUNT: samples})
        return C.ABORTED


def log_run_header(
    ml: MLPerfLogger,
    cfg: Config,
    *,
    seed: int,
    train_samples: int,
    platform_name: str,
    precision: str,
    config_filename: str,
) -> None:
    """Everything logged between init_start and init_stop that describes the run."""
    bench = get_benchmark(cfg.benchmark)
    lg, t = cfg.log, cfg.train
    ml.event(C.SUBMISSION_BENCHMARK, cfg.benchmark)
    ml.event(C.SUBMISSION_ORG, lg.submission_org)
    ml.event(C.SUBMISSION_DIVISION, lg.submission_division)
    ml.event(C.SUBMISSION_STATUS, lg.submission_status)
    ml.event(C.SUBMISSION_PLATFORM, lg.submission_platform or platform_name)
    ml.event(C.SEED, seed)
    ml.event(C.GLOBAL_BATCH_SIZE, t.global_batch_size)
    ml.event(C.GRADIENT_ACCUMULATION_STEPS, t.global_batch_size // t.micro_batch_size)
    ml.event(C.TRAIN_SAMPLES, train_samples)
    ml.event(C.EVAL_SAMPLES, t.eval_samples)
    for key, value in bench.hyperparameter_events(cfg):
        ml.event(key, value)
    # disclosure keys of the 6.x rulesets
    for key in (
        C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR,
        C.LOWEST_NUMERICAL_PRECISION_IN_ATTN,
        C.LOWEST_NUMERICAL_PRECISION_IN_COMM,
    ):
        ml.event(key, precision)
    for key in (
        C.TENSOR_PARALLELISM,
        C.PIPELINE_PARALLELISM,
        C.CONTEXT_PARALLELISM,
        C.EXPERT_PARALLELISM,
    ):
        ml.event(key, 1)
    ml.event(C.MICRO_BATCH_SIZE, t.micro_batch_size)
    ml.event(C.CONFIG_FILENAME, config_filename)


def run_benchmark(
    cfg: Config, paths: DataPaths, *, console: Console, show_progress: bool = True
) -> RunResult:
    """Run one benchmark attempt into the next free ``result_<i>.txt`` of the results folder."""
    seed = cfg.train.seed if cfg.train.seed is not None else fresh_seed()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
    results_dir = Path(cfg.log.results_dir).expanduser()
    index, log_path = create_result_file(results_dir)
    config_path = results_dir / f"config_{index}.json"
    save_config(cfg, config_path)
    result = RunResult(
        index=index, log_path=log_path, config_path=config_path, status=C.ABORTED, seed=seed
    )
    ml = MLPerfLogger(log_path)
    run_start: float | None = None
    trainer: Trainer | None = None
    try:
        ml.event(C.CACHE_CLEAR, True)
        ml.start(C.INIT_START)
        trainer = Trainer(cfg, paths, ml=ml, console=console, show_progress=show_progress)
        precision = "bfloat16" if trainer.dtype == torch.bfloat16 else "fp32"
        trainer.setup()
        log_run_header(
            ml,
            cfg,
            seed=seed,
            train_samples=trainer.train_samples_per_epoch,
            platform_name=describe_platform(trainer.device),
            precision=precision,
            config_filename=config_path.name,
        )
        ml.end(C.INIT_STOP)
        ml.start(C.RUN_START)
        run_start = time.time()
        result.status = trainer.train()
        if result.status != C.SUCCESS:
            result.reason = f"target {cfg.train.target} not reached in {cfg.train.max_steps} steps"
    except KeyboardInterrupt:
        result.reason = "interrupted (Ctrl-C)"
        raise
    except Exception as exc:
        result.reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        result.time_to_train_s = None if run_start is None else time.time() - run_start
        if trainer is not None:
            result.steps = trainer.steps
            result.samples = trainer.steps * cfg.train.global_batch_size
            result.last_eval = trainer.last_eval
        meta = {C.SAMPLES_COUNT: result.samples, C.STATUS: result.status}
        if result.reason and result.status != C.SUCCESS:
            meta["reason"] = result.reason
        ml.end(C.RUN_STOP, metadata=meta)
        ml.close()
    return result
