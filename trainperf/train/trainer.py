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
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mlperf_logging.mllog import constants as C
from rich.console import Console
from torch import nn
from torch.distributed.tensor import DTensor

from trainperf.benchmarks import get_benchmark
from trainperf.config import Config, save_config
from trainperf.data.prepare import DataPaths
from trainperf.mlperf.logger import MLPerfLogger, create_result_file
from trainperf.models.hf_adapter import load_hf_checkpoint
from trainperf.models.llama import Llama, LlamaConfig, get_llama_config
from trainperf.models.lora import LoRAConfig, apply_lora, init_lora
from trainperf.parallel.attention import set_attention_backend
from trainperf.parallel.cp import cp_positions
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.float8 import check_float8_available, precompute_float8_scales
from trainperf.parallel.parallelize import parallelize_model
from trainperf.train.batches import Batch, BenchmarkData, build_data
from trainperf.train.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    broadcast_value,
    local_device,
)
from trainperf.train.loss import LossTargets, chunked_loss_head, count_units, weighted_loss_terms
from trainperf.train.metrics import AsyncScalar
from trainperf.train.optim import build_optimizer, lr_at, set_lr
from trainperf.train.progress import RunProgress


def model_config(cfg: Config) -> LlamaConfig:
    """The LlamaConfig a run of `cfg` builds: flavor, layers, sequence, built-in vocabulary."""
    overrides: dict[str, int] = {"max_seq_len": cfg.train.seq_len}
    if cfg.model.n_layers is not None:
        overrides["n_layers"] = cfg.model.n_layers
    if cfg.data.source == "builtin":  # the embedding follows the locally built tokenizer
        overrides["vocab_size"] = cfg.data.vocab_size
    return get_llama_config(cfg.model.flavor, **overrides)


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
    peak_memory_gib: float | None = None
    """Peak GPU memory allocated by this rank (CUDA only)."""


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def describe_platform(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        return f"{world_size}x{torch.cuda.get_device_name(device)}"
    return f"{world_size}x{platform.processor() or platform.machine()}-CPU"


NOT_CONVERGED = "not converged"
"""Start of the run_stop ``reason`` of a run that reached its step limit without the target: a
finished run (MLPerf scores it as non-converged). Any other reason of an aborted run (an
exception, Ctrl-C) marks a failed one, which ``--resume`` runs again."""


class RunTerminated(Exception):
    """SIGTERM reached the run: torchrun stopping it because another rank failed, Slurm's time
    limit or scancel, or a user's kill. Raised in the main thread so that the log gets its
    run_stop (aborted, with this reason) before the process ends."""


@contextlib.contextmanager
def time_limit(minutes: float):
    """Within: past `minutes` of wall clock (0: no limit), RunTerminated in the main thread."""
    if minutes <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = []

    def handler(signum, frame):
        if raised:  # the log is being closed
            return
        raised.append(signum)
        raise RunTerminated(f"time limit of {minutes:g} min (train.time_limit_min) reached")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, minutes * 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def sigterm_raises():
    """Within: the first SIGTERM raises RunTerminated in the main thread, later ones are
    ignored until the block ends (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = []

    def handler(signum, frame):
        if raised:  # a second SIGTERM while the log is being closed: finish closing it
            return
        raised.append(signum)
        raise RunTerminated(
            "terminated by SIGTERM (another rank failed, the job's time limit, or a kill)"
        )

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def clear_page_cache() -> bool:
    """Drop the OS page cache as MLPerf's reference launchers do before each run
    (``sync; sysctl vm.drop_caches=3``); False where that is not allowed (not root, containers)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def resolve_checkpoint_source(cfg: Config, paths: DataPaths) -> str | None:
    """The base checkpoint to load, or None for a random initialisation."""
    ckpt = cfg.model.checkpoint
    if ckpt == "random":
        return None
    if ckpt is None:
        return str(paths.model_dir) if paths.model_dir is not None else None
    return ckpt


@torch.no_grad()
def cast_frozen_params_(model: nn.Module, dtype: torch.dtype) -> None:
    """Store every frozen parameter in `dtype` (buffers such as the RoPE table keep theirs)."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if not param.requires_grad and param.dtype != dtype:
                setattr(module, name, nn.Parameter(param.to(dtype), requires_grad=False))


def clip_grad_norm_(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global gradient-norm clip that also works on FSDP/TP-sharded (DTensor) gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, foreach=True)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total


class Trainer:
    """Builds data, model and optimizer for one run and trains it to the target.

    Under torchrun every rank builds its shard of the model (FSDP2 over all ranks, tensor
    parallel when parallel.tp > 1), reads its share of each global batch and of the eval set
    (with context parallel, parallel.cp > 1, its part of each of its group's sequences);
    only rank 0 writes MLLOG records and shows progress (the MLPerf logger of the other ranks
    is disabled).
    """

    def __init__(
        self,
        cfg: Config,
        paths: DataPaths,
        *,
        ml: MLPerfLogger,
        console: Console,
        show_progress: bool = True,
        env: DistEnv | None = None,
        device: torch.device | None = None,
    ) -> None:
        assert cfg.train.seed is not None, "resolve the seed before building a Trainer"
        cfg = get_benchmark(cfg.benchmark).resolve_config(cfg)
        self.cfg = cfg
        self.paths = paths
        self.ml = ml
        self.console = console
        self.env = env or DistEnv()
        self.show_progress = show_progress and self.env.is_main
        self.device = device or local_device(cfg.train.device)
        self.dtype = resolve_dtype(cfg.train.dtype, self.device)
        self.reduction = get_benchmark(cfg.benchmark).LOSS_REDUCTION
        self.steps = 0
        self.last_eval: float | None = None
        self.data: BenchmarkData | None = None  # set before setup() to train on other data
        t, par = cfg.train, cfg.parallel
        # mesh ("dp_shard", "cp", "tp"), tp fastest: the ranks of a cp x tp group share samples
        ranks = self.env.world_size // (par.cp * par.tp)
        self.dp_rank = self.env.rank // (par.cp * par.tp)
        self.cp_rank = self.env.rank // par.tp % par.cp
        if t.global_batch_size % (t.micro_batch_size * ranks):
            raise ValueError(
                f"train.global_batch_size({t.global_batch_size}) must be a multiple of "
                f"train.micro_batch_size({t.micro_batch_size}) x data-parallel ranks({ranks})"
            )
        self.dp_ranks = ranks
        self.local_batch = t.global_batch_size // ranks

    @property
    def grad_accumulation(self) -> int:
        return self.local_batch // self.cfg.train.micro_batch_size

    # ---- setup (inside init_start .. init_stop) ----------------------------------------------
    def setup(self) -> None:
        # what the device cannot do is refused before any data or model work
        check_float8_available(self.cfg.parallel.float8, self.device)
        self.attention = set_attention_backend(self.cfg.train.attention, self.device)
        if self.data is None:
            self.data = self._build_data()
        self.train_samples_per_epoch = self.data.train_samples
        self.model = self.build_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fused AdamW on CUDA, FSDP2's sharded DTensor parameters included (one kernel for all
        # parameters instead of foreach's per-tensor launches); foreach on CPU
        fused = self.device.type == "cuda" and self.cfg.parallel.tp == 1
        self.optimizer = build_optimizer(self.model, self.cfg.train, fused=fused)

    def _build_data(self) -> BenchmarkData:
        # Rank 0 builds (and caches) the sample indices first; the other ranks then load them
        # instead of each building gigabytes of the same arrays at once.
        vocab = self.model_config().vocab_size
        data = build_data(self.cfg, self.paths, vocab_size=vocab) if self.env.is_main else None
        barrier(self.env)
        if data is None:
            data = build_data(self.cfg, self.paths, vocab_size=vocab)
        return data

    def model_config(self) -> LlamaConfig:
        return model_config(self.cfg)

    def build_model(self) -> nn.Module:
        """Meta build -> LoRA -> parallelize -> materialise -> load or initialise."""
        m, par = self.cfg.model, self.cfg.parallel
        mcfg = self.model_config()
        with torch.device("meta"):
            model = Llama(mcfg)
        if m.lora_rank:
            lora = LoRAConfig(
                rank=m.lora_rank, alpha=m.lora_alpha, dropout=m.lora_dropout, targets=m.lora_targets
            )
            apply_lora(model, lora)
            if self.dtype != torch.float32:  # frozen base in bf16, adapters stay float32
                cast_frozen_params_(model, self.dtype)
        world = self.env.world_size if self.env.enabled else 1
        dims = ParallelDims(dp_shard=par.dp_shard, cp=par.cp, tp=par.tp, world_size=world)
        dims.validate_for_model(mcfg, seq_len=self.cfg.train.seq_len)
        mesh = dims.build_mesh(self.device.type) if self.env.enabled else None
        parallelize_model(
            model,
            dims,
            mesh,
            param_dtype=self.dtype,
            reduce_dtype=torch.float32,
            activation_checkpointing=par.activation_checkpointing,
            compile=par.compile,
            compile_inside_checkpoint=par.compile_inside_checkpoint,
            float8=par.float8,
            reshard_after_forward=par.reshard_after_forward,
        )
        model.to_empty(device=self.device)
        torch.manual_seed(self.cfg.train.seed)
        source = resolve_checkpoint_source(self.cfg, self.paths)
        if source is not None:
            load_hf_checkpoint(model, source)
        else:
            model.init_weights()
        if m.lora_rank:
            init_lora(model)
        return model

    # ---- the timed region --------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        # A copy from pageable memory makes the host wait for the GPU's queue; from pinned
        # memory it is queued like a kernel.
        if self.device.type == "cuda" and not x.is_pinned():
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def loss_terms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, count) of a batch; with context parallel this rank's part of the sum and
        1/cp of the count, so that the cp ranks' terms add up to the batch's."""
        inputs, labels = (self.to_device(x) for x in batch)
        targets = LossTargets.of(labels, reduction=self.reduction)  # weights of whole sequences
        positions = None
        if (cp := self.cfg.parallel.cp) > 1:
            positions = cp_positions(
                inputs.shape[1], cp=cp, rank=self.cp_rank, device=inputs.device
            )
            inputs, targets = (
                inputs.index_select(1, positions),
                targets.select(positions, share=1 / cp),
            )
        with self.autocast():
            if self.cfg.chunked_cross_entropy:  # (sum, count) without the (B, T, V) logits
                head = chunked_loss_head(
                    targets, dtype=self.dtype, compile=self.cfg.parallel.compile
                )
                return self.model(inputs, positions=positions, head=head)
            logits = self.model(inputs, positions=positions)  # (B, T, vocab)
        return weighted_loss_terms(logits, targets)

    def train_step(self) -> torch.Tensor:
        """One optimizer step over this rank's share of the next global batch."""
        t = self.cfg.train
        mb = t.micro_batch_size
        first = self.steps * t.global_batch_size + self.dp_rank * self.local_batch
        batches = [
            self.data.train_batch(range(first + i, first + i + mb))
            for i in range(0, self.local_batch, mb)
        ]
        units = sum(count_units(labels, reduction=self.reduction) for _, labels in batches)
        # FSDP averages the gradients over dp_shard x cp; a cp rank's sum is its part of its
        # samples' loss, so x cp makes that average the mean over the data-parallel ranks.
        divisor = max(units, 1.0) / self.cfg.parallel.cp
        total = torch.zeros((), device=self.device)
        for batch in batches:
            loss_sum, _ = self.loss_terms(batch)
            loss = loss_sum / divisor
            loss.backward()
            total += loss.detach()
        clip_grad_norm_(self.params, t.grad_clip)
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
        precompute_float8_scales(
            self.model,
            recipe=self.cfg.parallel.float8,
            fsdp=self.dp_ranks * self.cfg.parallel.cp > 1,
        )
        self.steps += 1
        return total

    @torch.no_grad()
    def evaluate(self) -> float:
        """eval_accuracy over the fixed evaluation set, reduced as the benchmark scores it.

        Data-parallel ranks take samples rank, rank + dp, ... (the ranks of a cp x tp group the
        same ones: each its part of them); all run the same number of forward passes
        (a rank with nothing left runs one on a sample it then ignores), as FSDP's collectives
        need.
        """
        self.model.eval()
        n, world, bs = self.data.eval_size, self.dp_ranks, self.cfg.train.eval_batch_size
        mine = list(range(self.dp_rank, n, world))  # the ranks of a cp x tp group share them
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)
        for start in range(0, -(-n // world), bs):
            idx = mine[start : start + bs]
            loss_sum, count = self.loss_terms(self.data.eval_batch(idx or [0]))
            if idx:
                sums += torch.stack([loss_sum.double(), count.double()])
        all_reduce_sum(sums, self.env)
        self.model.train()
        return float(sums[0] / sums[1])

    def is_eval_step(self, samples: int) -> bool:
        interval = self.cfg.train.eval_interval_samples
        return samples % interval == 0 and samples // interval > self.cfg.train.eval_skip

    def train(self) -> str:
        """Train until the target (returns 'success') or the step limit ('aborted')."""
        t, ml = self.cfg.train, self.ml
        gbs = t.global_batch_size
        progress = RunProgress(
            self.console,
            label=f"{self.cfg.benchmark}/{self.cfg.scale}",
            max_samples=t.max_steps * gbs,
            target=t.target,
            tokens_per_sample=t.seq_len,
        )
        loss_val: float | None = None
        samples = 0
        losses = AsyncScalar(self.device)  # read when ready: no host sync in the loop
        ml.start(C.BLOCK_START, metadata={C.SAMPLES_COUNT: 0})
        with progress if self.show_progress else contextlib.nullcontext():
            while self.steps < t.max_steps:
                loss = self.train_step()
                samples = self.steps * gbs
                evaluating = self.is_eval_step(samples)
                if self.steps % self.cfg.log.log_every_steps == 0 or evaluating:
                    mean = all_reduce_sum(loss.clone(), self.env) / self.env.world_size
                    losses.put(mean, (samples, self.optimizer.param_groups[0]["lr"]))
                last = self.steps == t.max_steps
                for loss_val, (at, lr) in losses.ready(wait=evaluating or last):
                    ml.event("train_loss", loss_val, metadata={C.SAMPLES_COUNT: at, "lr": lr})
                    if self.show_progress:
                        progress.update(samples=at, loss=loss_val)
                if not evaluating:
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
            if not self.is_eval_step(samples):
                ml.end(C.BLOCK_STOP, metadata={C.SAMPLES_COUNT: samples})
        return C.ABORTED


def log_run_header(
    ml: MLPerfLogger,
    cfg: Config,
    *,
    seed: int,
    train_samples: int,
    grad_accumulation: int,
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
    ml.event(C.GLOBAL_BATCH_SIZE, t.global_batch_size)
    ml.event(C.TRAIN_SAMPLES, train_samples)
    ml.event(C.EVAL_SAMPLES, t.eval_samples)
    ml.event(C.SEED, seed)
    ml.event(C.GRADIENT_ACCUMULATION_STEPS, grad_accumulation)
    for key, value in bench.hyperparameter_events(cfg):
        ml.event(key, value)
    # disclosure keys of the 6.x rulesets
    for key in (
        C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR,
        C.LOWEST_NUMERICAL_PRECISION_IN_ATTN,
        C.LOWEST_NUMERICAL_PRECISION_IN_COMM,
    ):
        ml.event(key, precision)
    ml.event(C.TENSOR_PARALLELISM, cfg.parallel.tp)
    for key in (C.PIPELINE_PARALLELISM, C.CONTEXT_PARALLELISM, C.EXPERT_PARALLELISM):
        ml.event(key, 1)
    ml.event(C.MICRO_BATCH_SIZE, t.micro_batch_size)
    ml.event(C.CONFIG_FILENAME, config_filename)


def resolve_run(cfg: Config, env: DistEnv) -> Config:
    """The benchmark's rule-derived values and one seed shared by every rank."""
    cfg = get_benchmark(cfg.benchmark).resolve_config(cfg)
    seed = cfg.train.seed if cfg.train.seed is not None else fresh_seed()
    seed = broadcast_value(seed, env)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def reserve_result(
    cfg: Config, env: DistEnv, *, index: int | None = None
) -> tuple[int, Path, Path]:
    """Rank 0 creates result_<i>.txt (the next free i, or `index`) and writes config_<i>.json;
    every rank learns i."""
    results_dir = Path(cfg.log.results_dir).expanduser()
    got: int | str = -1
    if env.is_main:
        try:
            got, log_path = create_result_file(results_dir, index=index)
            save_config(cfg, results_dir / f"config_{got}.json")
        except ValueError as exc:
            got = str(exc)
    got = broadcast_value(got, env)
    if isinstance(got, str):
        raise ValueError(got)
    return got, results_dir / f"result_{got}.txt", results_dir / f"config_{got}.json"


def run_benchmark(
    cfg: Config,
    paths: DataPaths,
    *,
    console: Console,
    show_progress: bool = True,
    env: DistEnv | None = None,
    index: int | None = None,
) -> RunResult:
    """Run one benchmark attempt into the next free ``result_<i>.txt`` of the results folder
    (or into ``result_<index>.txt``, which must not exist).

    Under torchrun every rank calls this; rank 0 writes the log.
    """
    env = env or DistEnv()
    cfg = resolve_run(cfg, env)
    seed = cfg.train.seed
    assert seed is not None
    index, log_path, config_path = reserve_result(cfg, env, index=index)
    result = RunResult(
        index=index, log_path=log_path, config_path=config_path, status=C.ABORTED, seed=seed
    )
    ml = MLPerfLogger(log_path, enabled=env.is_main)
    run_start: float | None = None
    trainer: Trainer | None = None
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(sigterm_raises())
        stack.enter_context(time_limit(cfg.train.time_limit_min))
        # at full scale, as the reference does; reduced scales log that they did not
        cleared = cfg.scale == "full" and env.local_rank == 0 and clear_page_cache()
        if cfg.scale == "full" and env.is_main and not cleared:
            console.print(
                "[yellow]page cache not dropped[/] (needs root; or run `sync; sudo sysctl "
                "vm.drop_caches=3` before each run): logged cache_clear false"
            )
        ml.event(C.CACHE_CLEAR, cleared)
        ml.start(C.INIT_START)
        trainer = Trainer(cfg, paths, ml=ml, console=console, show_progress=show_progress, env=env)
        precision = "bfloat16" if trainer.dtype == torch.bfloat16 else "fp32"
        trainer.setup()
        log_run_header(
            ml,
            cfg,
            seed=seed,
            train_samples=trainer.train_samples_per_epoch,
            grad_accumulation=trainer.grad_accumulation,
            platform_name=describe_platform(trainer.device, env.world_size),
            precision=precision,
            config_filename=config_path.name,
        )
        ml.end(C.INIT_STOP)
        ml.start(C.RUN_START)
        run_start = time.time()
        result.status = trainer.train()
        if result.status != C.SUCCESS:
            result.reason = (
                f"{NOT_CONVERGED}: target {cfg.train.target} not reached in "
                f"{cfg.train.max_steps} steps"
            )
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
            if trainer.device.type == "cuda":
                result.peak_memory_gib = torch.cuda.max_memory_allocated(trainer.device) / 2**30
        meta = {C.SAMPLES_COUNT: result.samples, C.STATUS: result.status}
        if result.reason and result.status != C.SUCCESS:
            meta["reason"] = result.reason
        ml.end(C.RUN_STOP, metadata=meta)
        ml.close()
        stack.close()  # SIGTERM's previous handler again, once the log is closed
    return result
