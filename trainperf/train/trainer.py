"""The Trainer: one benchmark's model, data and optimizer, trained step by step to the target.

It knows no model family and no benchmark: a spec gives it the family (build on meta, parallel
plan, initialise or load), the task (the loss of a batch, the metric) and the data reader; the
config gives the sizes and the parallel layout. ``train/run.py`` wraps it in a run's lifecycle
(result file, MLLOG header, signals, timing); ``perf/measure.py`` times its step.

Under torchrun every rank builds its shard of the model (FSDP2 over all ranks, tensor parallel
when parallel.tp > 1), reads its share of each global batch and of the eval set (with context
parallel, parallel.cp > 1, its part of each of its group's sequences); only rank 0 writes MLLOG
records and shows progress (the MLPerf logger of the other ranks is disabled).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from mlperf_logging.mllog import constants as C
from rich.console import Console
from torch import nn
from torch.distributed.tensor import DTensor

from trainperf.config import Config
from trainperf.data.prepare import DataPaths
from trainperf.data.readers import BenchmarkData
from trainperf.mlperf.events import RunFacts, lowest_precision, precision_name
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.parallel.attention import set_attention_backend
from trainperf.parallel.dims import ParallelDims
from trainperf.parallel.float8 import check_float8_available, precompute_float8_scales
from trainperf.parallel.parallelize import Applied, parallelize_model
from trainperf.train.distributed import DistEnv, all_reduce_sum, barrier, local_device
from trainperf.train.master import keep_masters_, restore_masters_
from trainperf.train.master import resolve_mode as resolve_master_weights
from trainperf.train.metrics import AsyncScalar
from trainperf.train.optim import StreamedAdamW, build_optimizer, lr_at, mesh_key, set_lr
from trainperf.train.progress import RunProgress
from trainperf.train.tasks import StepLayout

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec


def resolve_dtype(name: str, device: torch.device, *, master: str = "float32") -> torch.dtype:
    """The compute dtype: 'auto' is bfloat16 on CUDA or with bf16 weights, else float32."""
    if name == "auto":
        bf16 = device.type == "cuda" or master == "bfloat16"
        return torch.bfloat16 if bf16 else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def resolve_checkpoint_source(cfg: Config, paths: DataPaths | None) -> str | None:
    """The base checkpoint to load, or None for a random initialisation."""
    ckpt = cfg.model.checkpoint
    if ckpt == "random":
        return None
    if ckpt is None:
        return str(paths.model_dir) if paths is not None and paths.model_dir is not None else None
    return ckpt


@torch.no_grad()
def cast_frozen_params_(model: nn.Module, dtype: torch.dtype) -> None:
    """Store every frozen parameter in `dtype` (buffers such as the RoPE table keep theirs)."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if not param.requires_grad and param.dtype != dtype:
                setattr(module, name, nn.Parameter(param.to(dtype), requires_grad=False))


def clip_grad_norm_(
    params: list[nn.Parameter],
    max_norm: float,
    optimizer: torch.optim.Optimizer | StreamedAdamW | None = None,
) -> torch.Tensor:
    """Global gradient-norm clip that also works on FSDP/TP/EP-sharded (DTensor) gradients:
    the norm of each device mesh's gradients (expert parallel's experts have their own) is
    reduced over its mesh, then the norms combine.

    With a fused AdamW `optimizer` the gradients are not rescaled here: the clip factor goes to
    the optimizer's `grad_scale` (the fused kernel divides each gradient by it as it reads it),
    which saves one read and one write of every gradient per step. The update is the same up
    to float32 rounding (g / (1/c) instead of g * c).
    """
    gradient = getattr(optimizer, "gradient", None) or (lambda p: p.grad)
    by_mesh: dict[int, list[nn.Parameter]] = {}
    grads: dict[int, list[torch.Tensor]] = {}
    for p in params:
        grad = gradient(p)
        if grad is not None:
            by_mesh.setdefault(mesh_key(p), []).append(p)
            grads.setdefault(mesh_key(p), []).append(grad)
    norms = []
    for key in by_mesh:
        norm = _total_norm(grads[key])
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.stack(norms).norm() if len(norms) > 1 else norms[0]
    if optimizer is not None and fused_optimizer(optimizer):
        # clip_grads_with_norm_'s factor min(1, max_norm / (total + 1e-6)), inverted
        optimizer.grad_scale = torch.clamp((total.float() + 1e-6) / max_norm, min=1.0)
        return total
    for group in by_mesh.values():
        torch.nn.utils.clip_grads_with_norm_(group, max_norm, total, foreach=True)
    return total


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of `grads` together; bf16 gradients' per-tensor norms are taken in float32
    (torch's own would round each to bf16 first)."""
    if isinstance(grads[0], DTensor) or all(g.dtype == torch.float32 for g in grads):
        return torch.nn.utils.get_total_norm(grads, foreach=True)
    norms = torch._foreach_norm(grads, 2.0, dtype=torch.float32)
    return torch.linalg.vector_norm(torch.stack(norms))


def fused_optimizer(optimizer: torch.optim.Optimizer | StreamedAdamW) -> bool:
    """Whether `optimizer` runs torch's fused kernel (which honours a `grad_scale`)."""
    return bool(optimizer.defaults.get("fused"))


def _to_device(x: Any, device: torch.device) -> Any:
    """A batch (tensor, or tuple / list / dict of them) on `device`. A copy from pageable
    memory makes the host wait for the GPU's queue; from pinned memory it is queued like a
    kernel."""
    if isinstance(x, torch.Tensor):
        if device.type == "cuda" and not x.is_pinned():
            x = x.pin_memory()
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to_device(v, device) for v in x)
    return x


class Trainer:
    """Builds data, model and optimizer for one run of a resolved config and trains it."""

    def __init__(
        self,
        cfg: Config,
        spec: BenchmarkSpec,
        paths: DataPaths | None,
        *,
        ml: MLPerfLogger,
        console: Console,
        show_progress: bool = True,
        env: DistEnv | None = None,
        device: torch.device | None = None,
    ) -> None:
        assert cfg.train.seed is not None, "resolve the seed before building a Trainer"
        assert cfg.train.eval_skip is not None, "resolve the config (spec.resolve) first"
        self.cfg = cfg
        self.spec = spec
        self.family = spec.family
        self.task = spec.task
        self.paths = paths
        self.ml = ml
        self.console = console
        self.env = env or DistEnv()
        self.show_progress = show_progress and self.env.is_main
        self.device = device or local_device(cfg.train.device)
        self.dtype = resolve_dtype(cfg.train.dtype, self.device, master=cfg.train.master_dtype)
        self.model_cfg = self.family.model_config(cfg)
        self.steps = 0
        self.last_eval: float | None = None
        self.data: BenchmarkData | None = None  # set before setup() to train on other data
        self.applied: Applied | None = None
        t, par = cfg.train, cfg.parallel
        # mesh ("dp_shard", "cp", "tp"), tp fastest: the ranks of a cp x tp group share samples
        ranks = self.env.world_size // (par.cp * par.tp)
        self.dp_rank = self.env.rank // (par.cp * par.tp)
        if t.global_batch_size % (t.micro_batch_size * ranks):
            raise ValueError(
                f"train.global_batch_size({t.global_batch_size}) must be a multiple of "
                f"train.micro_batch_size({t.micro_batch_size}) x data-parallel ranks({ranks})"
            )
        self.dp_ranks = ranks
        self.local_batch = t.global_batch_size // ranks
        self.layout = StepLayout(
            dtype=self.dtype,
            cp=par.cp,
            cp_rank=self.env.rank // par.tp % par.cp,
            chunked_cross_entropy=cfg.chunked_cross_entropy,
            compile=par.compile,
        )

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
        world = self.env.world_size if self.env.enabled else 1
        self.master_weights = resolve_master_weights(self.cfg, world=world, device=self.device)
        self.masters = (
            keep_masters_(self.model, self.dtype) if self.master_weights == "optimizer" else None
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fused AdamW on CUDA, FSDP2's sharded DTensor parameters included (one kernel for all
        # parameters instead of foreach's per-tensor launches); foreach on CPU
        fused = self.device.type == "cuda" and self.cfg.parallel.tp == 1
        self.optimizer = build_optimizer(
            self.model,
            self.cfg.train,
            fused=fused,
            streams=self.cfg.train.optimizer_streams,
            masters=self.masters,
            accumulate=self.grad_accumulation > 1,
        )

    def model_with_masters(self) -> nn.Module:
        """The model with float32 weights (train.master_weights=optimizer: the masters put back
        in place of the bf16 copies, which ends training): what a checkpoint saves."""
        if self.masters is not None:
            restore_masters_(self.model, self.masters)
            self.masters = None
        return self.model

    def _build_data(self) -> BenchmarkData:
        # Rank 0 builds (and caches) the sample indices first; the other ranks then load them
        # instead of each building gigabytes of the same arrays at once.
        read = self.spec.data.reader
        data = read(self.cfg, self.paths, self.model_cfg) if self.env.is_main else None
        barrier(self.env)
        if data is None:
            data = read(self.cfg, self.paths, self.model_cfg)
        return data

    def build_model(self) -> nn.Module:
        """Meta build (+ adapters) -> parallelize -> materialise -> load or initialise."""
        par, family = self.cfg.parallel, self.family
        with torch.device("meta"):
            model = family.build(self.model_cfg, self.cfg.model)
        if self.cfg.train.master_dtype == "bfloat16":
            model.to(torch.bfloat16)  # trained weights, their gradients and AdamW states in bf16
        elif self.cfg.model.lora_rank and self.dtype != torch.float32:
            cast_frozen_params_(model, self.dtype)  # frozen base in bf16, adapters stay float32
        plan = family.parallel_plan(model)
        world = self.env.world_size if self.env.enabled else 1
        dims = ParallelDims(
            dp_shard=par.dp_shard, cp=par.cp, tp=par.tp, ep=par.ep, world_size=world
        )
        dims.validate_sizes(family.tp_sizes(self.model_cfg), seq_len=self.cfg.train.seq_len)
        mesh = dims.build_mesh(self.device.type) if self.env.enabled else None
        ep_mesh = dims.build_ep_mesh(self.device.type) if dims.ep_enabled else None
        self.applied = parallelize_model(
            model,
            plan,
            dims,
            mesh,
            param_dtype=self.dtype,
            reduce_dtype=torch.float32,
            activation_checkpointing=par.activation_checkpointing,
            compile=par.compile,
            compile_inside_checkpoint=par.compile_inside_checkpoint,
            float8=par.float8,
            reshard_after_forward=par.reshard_after_forward,
            ep_mesh=ep_mesh,
        )
        model.to_empty(device=self.device)
        torch.manual_seed(self.cfg.train.seed)
        source = resolve_checkpoint_source(self.cfg, self.paths)
        if source is not None:
            family.load_checkpoint(model, source)
        else:
            family.init_weights(model)
        family.init_adapters(model)
        return model

    def facts(self, *, platform: str) -> RunFacts:
        """What the run's MLLOG header discloses, from the model as it was built."""
        applied, par = self.applied, self.cfg.parallel
        assert applied is not None, "setup() first"
        compute = precision_name(self.dtype)
        linear = "fp8" if applied.float8_linears else compute
        # collectives: FSDP's all-gather (param dtype, float8 with the float8 all-gather) and
        # reduce-scatter (reduce dtype); TP and CP move activations in the compute dtype
        carried = []
        if applied.fsdp:
            gather = "fp8" if applied.float8_all_gather else precision_name(applied.param_dtype)
            carried += [gather, precision_name(applied.reduce_dtype)]
        if par.tp > 1 or par.cp > 1 or par.ep > 1:  # activations: TP, CP, EP's all-to-all
            carried.append(compute)
        return RunFacts(
            train_samples=self.train_samples_per_epoch,
            grad_accumulation=self.grad_accumulation,
            micro_batch_size=self.cfg.train.micro_batch_size,
            platform=platform,
            tensor_parallelism=par.tp,
            context_parallelism=par.cp,
            expert_parallelism=par.ep,
            precision_linear=linear,
            precision_attn=compute,
            precision_comm=lowest_precision(carried or [compute]),
        )

    # ---- the timed region --------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def loss_terms(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, count) of a batch on this rank (the task's terms, under autocast)."""
        batch = _to_device(batch, self.device)
        with self.autocast():
            return self.task.loss_terms(self.model, batch, self.layout)

    def train_step(self) -> torch.Tensor:
        """One optimizer step over this rank's share of the next global batch."""
        t = self.cfg.train
        mb = t.micro_batch_size
        first = self.steps * t.global_batch_size + self.dp_rank * self.local_batch
        batches = [
            self.data.train_batch(range(first + i, first + i + mb))
            for i in range(0, self.local_batch, mb)
        ]
        units = sum(self.task.count_units(batch) for batch in batches)
        # FSDP averages the gradients over dp_shard x cp; a cp rank's sum is its part of its
        # samples' loss, so x cp makes that average the mean over the data-parallel ranks.
        divisor = max(units, 1.0) / self.cfg.parallel.cp
        total = torch.zeros((), device=self.device)
        for batch in batches:
            loss_sum, _ = self.loss_terms(batch)
            loss = loss_sum / divisor
            loss.backward()
            total += loss.detach()
        clip_grad_norm_(self.params, t.grad_clip, self.optimizer)
        set_lr(
            self.optimizer,
            lr_at(
                self.steps,
                base_lr=t.lr,
                end_lr=t.end_lr,
                warmup_steps=t.warmup_steps,
                max_steps=t.max_steps,
                schedule=t.lr_schedule,
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
        self.data.begin_eval()
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
                if self.show_progress:
                    progress.tick(samples=samples)  # a line at least every HEARTBEAT_S
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
