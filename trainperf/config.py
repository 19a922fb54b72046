"""Typed run configuration: dataclass sections, ``section.key=value`` overrides, JSON round trip.

Defaults come from the benchmark module (``trainperf.benchmarks.<name>.default_config``); this
module only knows the shape of a config and how to check and change it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainperf.atomic import write_text_atomic

DATA_SOURCES = ("c4", "govreport", "cc12m", "builtin")
CROSS_ENTROPY_IMPLS = ("auto", "chunked", "plain")
LR_SCHEDULES = ("cosine", "constant")
# Kept here, not imported from trainperf.parallel, so that reading a config imports no torch
# (tests/unit/parallel checks they equal the modules' own tuples).
AC_MODES = ("none", "full", "selective")
FLOAT8_RECIPES = ("none", "tensorwise", "rowwise")
ATTENTION_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")


@dataclass
class ModelConfig:
    flavor: str = "llama3.1-8b"
    """Name in the size registry of the benchmark's model family (``LLAMA_CONFIGS`` in
    ``trainperf.models.llama``, ``FLUX_CONFIGS`` in ``trainperf.models.flux``)."""
    n_layers: int | None = None
    """Override the flavor's layer count (proxy configurations); None keeps the flavor's. Flux:
    the double-stream blocks, with 2 x n_layers single-stream blocks (FLUX.1's 19 : 38)."""
    checkpoint: str | None = None
    """HF-format checkpoint to start from (a folder or a hub id); 'random' initialises randomly;
    None takes the benchmark's default (llama31_8b: random; llama2_70b_lora: the base model that
    ``trainperf prepare`` put beside the data). Its config.json must match the flavor (checked
    tensor by tensor before anything is copied)."""
    lora_rank: int = 0
    """LoRA adapter rank; 0 trains every parameter (pretraining), > 0 freezes the base model and
    trains adapters only (MLLOG lora_rank; MLPerf llama2_70b_lora: 16)."""
    lora_alpha: float = 32.0
    """LoRA scale numerator: adapters are scaled by lora_alpha / lora_rank (MLLOG lora_alpha)."""
    lora_dropout: float = 0.1
    """Dropout on the adapters' input."""
    lora_targets: str = "wqkv,wo"
    """Comma-separated Linear names that get adapters (fused QKV and attention output)."""

    def __post_init__(self) -> None:
        if self.n_layers is not None and self.n_layers < 1:
            raise ValueError(f"model.n_layers({self.n_layers}) must be >= 1")
        if self.lora_rank < 0:
            raise ValueError(f"model.lora_rank({self.lora_rank}) must be >= 0 (0 = no LoRA)")
        if self.lora_rank and not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"model.lora_dropout({self.lora_dropout}) must be in [0, 1)")
        if self.lora_rank and self.lora_alpha <= 0:
            raise ValueError(f"model.lora_alpha({self.lora_alpha}) must be > 0")


@dataclass
class TrainConfig:
    seq_len: int = 8192
    """Tokens per training sample (MLLOG max_sequence_length)."""
    global_batch_size: int = 32
    """Samples per optimizer step over all ranks (MLLOG global_batch_size)."""
    micro_batch_size: int = 1
    """Samples per forward/backward on one rank; the rest is gradient accumulation."""
    lr: float = 8e-4
    """Peak learning rate after warmup (MLLOG opt_base_learning_rate)."""
    warmup_steps: int = 128
    """Linear warmup steps (MLLOG opt_learning_rate_warmup_steps)."""
    max_steps: int = 1_200_000
    """Schedule horizon and step limit: cosine decay ends here; a run that has not reached the
    target by then stops with status 'aborted' (MLLOG max_steps)."""
    end_lr_factor: float = 0.1
    """End learning rate as a fraction of ``lr`` (MLLOG opt_end_learning_rate = lr * factor)."""
    beta1: float = 0.9
    """AdamW beta 1."""
    beta2: float = 0.95
    """AdamW beta 2."""
    eps: float = 1e-5
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay, applied to matrices only (not to norm weights), as Megatron does,
    or to every parameter with ``decay_all_params``."""
    decay_all_params: bool = False
    """Weight decay on every trained parameter, biases and norm weights too (one AdamW parameter
    group, as flux1's torchtitan reference); false: matrices only (Megatron, llama31_*)."""
    lr_schedule: str = "cosine"
    """'cosine': linear warmup lr * (step + 1) / (warmup + 1), then a half cosine to end_lr at
    max_steps (NeMo CosineAnnealing, llama31_*); 'constant': linear warmup lr * (step + 1) /
    warmup, then lr (torchtitan's warmup-stable schedule with no decay, flux1)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (MLLOG opt_gradient_clip_norm)."""
    eval_every_samples: int = 12288
    """Evaluate every this many training samples, rounded up to a multiple of the global batch."""
    eval_samples: int = 1024
    """Validation sequences per evaluation: the first ones of the validation split."""
    eval_batch_size: int = 8
    """Sequences per forward pass during evaluation (no effect on the value)."""
    eval_skip: int | None = None
    """Evaluations skipped at the start of training (they are not run or logged); None takes the
    benchmark's rule (llama2_70b_lora: floor(0.125 * GBS + 2); llama31_8b: none)."""
    target: float = 3.3
    """Quality target: stop with status 'success' at the first eval_accuracy <= target."""
    time_limit_min: float = 0.0
    """Wall-clock limit of one run in minutes (0: none): past it the run stops like on SIGTERM,
    its log closed with run_stop 'aborted' and the reason."""
    seed: int | None = None
    """Run seed (model init and data order); None draws a fresh one, which is logged."""
    device: str = "auto"
    """'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    dtype: str = "auto"
    """Compute dtype: 'auto' (bfloat16 on CUDA, float32 on CPU), 'bfloat16' or 'float32'."""
    master_dtype: str = "float32"
    """dtype of the trained weights, their gradients and AdamW states: 'float32' (mixed
    precision: the compute in train.dtype, a float32 master copy) or 'bfloat16' (all in bf16,
    half the memory, rounding each update to bf16: what lets the full flux1 fit one 141 GB GPU).
    `perf` prints it beside the layout."""
    master_weights: str = "auto"
    """Where the float32 master weights of mixed precision live (master_dtype float32, bf16
    compute): 'model' (the model's parameters; autocast casts the matmul weights to bf16 at
    every forward and their bf16 gradients back to float32), 'optimizer' (AdamW keeps them and
    writes the model's bf16 copies in the same pass as the update; the gradients stay bf16,
    summed in float32 over micro-batches: the same training without the two casts) or 'auto'
    ('optimizer' on CUDA in one process without float8 or LoRA, else 'model'). On 2+ ranks
    FSDP2 makes the bf16 copies as it gathers the weights. With 'optimizer',
    train.optimizer_streams has no effect (each launch of its kernel fills the GPU)."""
    optimizer_streams: int = 2
    """CUDA streams that torch's fused AdamW runs on, the parameters split among them by size
    (each launch of the fused kernel fills only part of a large GPU; launches on two streams
    overlap). The same update bit for bit; 1: one stream. No effect on CPU."""
    attention: str = "auto"
    """Attention kernel on CUDA: 'auto' (cuDNN first on Hopper, about 2x flash there; PyTorch's
    order elsewhere), 'cudnn', 'flash', 'efficient' or 'math'. No effect on CPU."""
    cross_entropy: str = "auto"
    """'chunked' (loss from the hidden states 1024 tokens at a time: the fp32 logits of a 128k
    vocabulary never exist whole), 'plain' (full logits, then F.cross_entropy), or 'auto'
    (chunked, plain under tensor parallel, whose output layer gathers sharded logits)."""

    def __post_init__(self) -> None:
        _check_positive(
            "train",
            seq_len=self.seq_len,
            global_batch_size=self.global_batch_size,
            micro_batch_size=self.micro_batch_size,
            max_steps=self.max_steps,
            eval_every_samples=self.eval_every_samples,
            eval_samples=self.eval_samples,
            eval_batch_size=self.eval_batch_size,
            lr=self.lr,
            optimizer_streams=self.optimizer_streams,
        )
        if self.time_limit_min < 0:
            raise ValueError(
                f"train.time_limit_min({self.time_limit_min}) must be >= 0 (0: no limit)"
            )
        if self.eval_skip is not None and self.eval_skip < 0:
            raise ValueError(f"train.eval_skip({self.eval_skip}) must be >= 0")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.micro_batch_size({self.micro_batch_size}) must divide "
                f"train.global_batch_size({self.global_batch_size})"
            )
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(
                f"train.warmup_steps({self.warmup_steps}) must be in "
                f"[0, train.max_steps={self.max_steps})"
            )
        if not 0.0 <= self.end_lr_factor <= 1.0:
            raise ValueError(f"train.end_lr_factor({self.end_lr_factor}) must be in [0, 1]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"train.lr_schedule({self.lr_schedule!r}) must be one of {LR_SCHEDULES}"
            )
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"train.attention({self.attention!r}) must be one of {ATTENTION_BACKENDS}"
            )
        if self.cross_entropy not in CROSS_ENTROPY_IMPLS:
            raise ValueError(
                f"train.cross_entropy({self.cross_entropy!r}) must be one of {CROSS_ENTROPY_IMPLS}"
            )
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(
                f"train.dtype({self.dtype!r}) must be one of 'auto', 'bfloat16', 'float32'"
            )
        if self.master_dtype not in ("bfloat16", "float32"):
            raise ValueError(
                f"train.master_dtype({self.master_dtype!r}) must be 'float32' or 'bfloat16'"
            )
        if self.master_dtype == "bfloat16" and self.dtype == "float32":
            raise ValueError(
                "train.master_dtype=bfloat16 computes in bf16: use train.dtype=bfloat16 or auto"
            )
        if self.master_weights not in ("auto", "model", "optimizer"):
            raise ValueError(
                f"train.master_weights({self.master_weights!r}) must be 'auto', 'model' or "
                "'optimizer'"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(
                f"train.device({self.device!r}) must be 'auto', 'cpu', 'cuda' or 'cuda:N'"
            )

    @property
    def eval_interval_samples(self) -> int:
        """Evaluation interval rounded up to a multiple of the global batch size (MLPerf rule)."""
        gbs = self.global_batch_size
        return -(-self.eval_every_samples // gbs) * gbs

    @property
    def end_lr(self) -> float:
        return self.lr * self.end_lr_factor


@dataclass
class ParallelConfig:
    dp_shard: int = -1
    """FSDP ranks; -1 takes every rank that tensor parallel leaves (world_size / tp)."""
    tp: int = 1
    """Tensor-parallel degree (with sequence parallel)."""
    cp: int = 1
    """Context-parallel degree: each of cp ranks holds 1/cp of every sequence's tokens (and
    activations); attention all-gathers K/V over them (Llama 3's method, parallel/cp.py).
    train.seq_len must divide into 2 x cp chunks."""
    ep: int = 1
    """Expert-parallel degree (mixture-of-experts models): ep consecutive data-parallel ranks
    split each MoE layer's experts, tokens travel to their expert's rank and back (all-to-all);
    must divide the data-parallel ranks and the experts, with tp = cp = 1."""
    activation_checkpointing: str = "none"
    """'none', 'full' (recompute each TransformerBlock in backward; needed for 70B at 8192) or
    'selective' (keep the attention output and every second matmul, recompute the rest)."""
    compile: bool = False
    """torch.compile each TransformerBlock (fused norms, RoPE, SwiGLU; compiled in the first
    step)."""
    compile_inside_checkpoint: bool = False
    """With compile and full activation checkpointing: compile each block inside its checkpoint
    (which stays eager), so only the block inputs stay alive, as with eager checkpointing;
    false compiles the checkpointed block, whose partitioner keeps more and recomputes less
    (faster where it fits). Llama 2 70B LoRA, float8 base, one H200: true fits in 78 GiB at
    1,938 tokens/s; false needs ~1.3 GiB more per layer and does not fit (bench/RESULTS.md)."""
    float8: str = "none"
    """Float8 matmuls for the block Linears through torchao: 'none', 'tensorwise' (fastest) or
    'rowwise' (more accurate); needs an FP8 GPU (H100, H200, L40, B200) and torchao. With LoRA
    only 'rowwise': the frozen base is stored in float8 (half the memory of bf16)."""
    reshard_after_forward: bool = True
    """FSDP: free each block's gathered weights after its forward and gather them again in
    backward (least memory); false keeps them from forward to backward (one all-gather per step
    instead of two, more memory: the unsharded weights of every block at once)."""
    collective_timeout_s: int = 1800
    """Process-group timeout: a collective waiting longer on a hung rank fails the run (run_stop
    'aborted' with the reason) instead of waiting forever."""

    def __post_init__(self) -> None:
        if self.tp < 1:
            raise ValueError(f"parallel.tp({self.tp}) must be >= 1")
        if self.cp < 1:
            raise ValueError(f"parallel.cp({self.cp}) must be >= 1 (1 turns context parallel off)")
        if self.ep < 1:
            raise ValueError(f"parallel.ep({self.ep}) must be >= 1 (1 turns expert parallel off)")
        if self.collective_timeout_s < 1:
            raise ValueError(
                f"parallel.collective_timeout_s({self.collective_timeout_s}) must be >= 1"
            )
        if self.dp_shard == 0 or self.dp_shard < -1:
            raise ValueError(f"parallel.dp_shard({self.dp_shard}) must be -1 (auto) or >= 1")
        if self.activation_checkpointing not in AC_MODES:
            raise ValueError(
                f"parallel.activation_checkpointing({self.activation_checkpointing!r}) must be "
                f"one of {AC_MODES}"
            )
        if self.compile_inside_checkpoint and not (
            self.compile and self.activation_checkpointing == "full"
        ):
            raise ValueError(
                "parallel.compile_inside_checkpoint=true needs parallel.compile=true and "
                "parallel.activation_checkpointing=full (it places compile inside the "
                f"checkpoint; got compile={str(self.compile).lower()}, "
                f"activation_checkpointing={self.activation_checkpointing})"
            )
        if self.float8 not in FLOAT8_RECIPES:
            raise ValueError(f"parallel.float8({self.float8!r}) must be one of {FLOAT8_RECIPES}")
        if self.float8 != "none" and self.tp > 1:
            raise ValueError(
                f"parallel.float8={self.float8} with parallel.tp={self.tp} is not supported "
                "(float8 tensor-parallel styles are not wired yet); use tp=1 or float8=none"
            )


@dataclass
class DataConfig:
    source: str = "c4"
    """'c4' (Megatron .bin/.idx files of the MLPerf preprocessed C4), 'govreport' (the MLPerf
    GovReport parquet or .npy files of llama2_70b_lora), 'cc12m' (flux1: the MLPerf preprocessed
    CC12M and COCO Arrow sets of T5/CLIP/VAE encodings) or 'builtin' (built locally, no download:
    a text corpus from the Python standard library, code -> docstring pairs for LoRA, or a
    synthetic set of encodings for flux1)."""
    data_dir: str | None = None
    """Folder with the prepared data; None uses the cache folder (see ``trainperf list``)."""
    vocab_size: int = 2048
    """Tokenizer size for the built-in corpus (C4 uses the Llama 3.1 tokenizer's 128,256)."""
    max_bytes: int = 8_000_000
    """Source bytes taken into the built-in corpus."""

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source({self.source!r}) must be one of {DATA_SOURCES}")
        _check_positive("data", vocab_size=self.vocab_size, max_bytes=self.max_bytes)


@dataclass
class LogConfig:
    results_dir: str = "results"
    """Folder for result_<i>.txt MLLOG files and the resolved config_<i>.json beside them."""
    submission_org: str = "trainperf"
    """MLLOG submission_org."""
    submission_platform: str = ""
    """MLLOG submission_platform; empty means a description of the local device."""
    submission_division: str = "closed"
    """MLLOG submission_division: 'closed' or 'open'."""
    submission_status: str = "onprem"
    """MLLOG submission_status."""
    log_every_steps: int = 10
    """Progress refresh (and MLLOG train-loss) interval in optimizer steps."""

    def __post_init__(self) -> None:
        if self.submission_division not in ("closed", "open"):
            raise ValueError(
                f"log.submission_division({self.submission_division!r}) must be 'closed' or 'open'"
            )
        _check_positive("log", log_every_steps=self.log_every_steps)


@dataclass
class Config:
    benchmark: str
    """MLPerf benchmark name (MLLOG submission_benchmark)."""
    scale: str
    """'full' (the real rules), 'proxy', 'small' or 'tiny'."""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        # Combinations of sections that cannot work, refused before anything is built.
        par, t = self.parallel, self.train
        if t.cross_entropy == "chunked" and par.tp > 1:
            raise ValueError(
                f"train.cross_entropy=chunked with parallel.tp={par.tp}: the tensor-parallel "
                "output layer gathers sharded logits; use train.cross_entropy=auto or plain"
            )
        if t.seq_len % (2 * par.cp):
            raise ValueError(
                f"parallel.cp={par.cp} cuts each sequence into 2 x cp = {2 * par.cp} chunks; "
                f"train.seq_len({t.seq_len}) is not divisible by {2 * par.cp}: pick cp with "
                "seq_len divisible by 2 x cp"
            )
        if par.float8 == "tensorwise" and self.model.lora_rank:
            raise ValueError(
                f"parallel.float8=tensorwise with LoRA (model.lora_rank={self.model.lora_rank}): "
                "the frozen base is stored in float8 with one scale per row; use "
                "parallel.float8=rowwise (or none)"
            )

    @property
    def chunked_cross_entropy(self) -> bool:
        """Whether the loss is computed chunk by chunk from the hidden states."""
        ce = self.train.cross_entropy
        return ce == "chunked" or (ce == "auto" and self.parallel.tp == 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for name, value in d.items():
            if name not in sections:
                raise ValueError(f"unknown config section {name!r}; known: {sorted(sections)}")
            typ = hints[name]
            kwargs[name] = typ(**value) if dataclasses.is_dataclass(typ) else value
        return cls(**kwargs)


def _check_positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{section}.{name}({value}) must be > 0")


def _parse_value(text: str, typ: Any, key: str) -> Any:
    """Convert the text of an override to the field's annotated type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse_value(text, inner, key)
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return (
                int(float(text)) if "e" in text.lower() and float(text).is_integer() else int(text)
            )
        if typ is float:
            return float(text)
    except ValueError:
        raise ValueError(
            f"bad override {key}={text!r}: expected {typ.__name__}, e.g. {key}={_example(typ)}"
        ) from None
    return text


def _example(typ: Any) -> str:
    return {int: "32", float: "3e-4", bool: "true"}.get(typ, "value")


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Return a new config with ``section.key=value`` overrides applied and re-validated."""
    data = cfg.to_dict()
    hints = typing.get_type_hints(Config)
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"bad override {item!r}: use section.key=value, e.g. train.lr=3e-4")
        sec_type = hints.get(section)
        if sec_type is None or not dataclasses.is_dataclass(sec_type):
            known = [n for n, t in hints.items() if dataclasses.is_dataclass(t)]
            raise ValueError(f"unknown config section {section!r} in {item!r}; known: {known}")
        field_types = typing.get_type_hints(sec_type)
        if name not in field_types:
            raise ValueError(
                f"unknown config key {key!r}; {section} has: {', '.join(sorted(field_types))}"
            )
        data[section][name] = _parse_value(text.strip(), field_types[name], key)
    return Config.from_dict(data)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as JSON, atomically (temporary name, then rename)."""
    write_text_atomic(path, json.dumps(cfg.to_dict(), indent=2, sort_keys=False) + "\n")


def load_config(path: Path) -> Config:
    try:
        return Config.from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
