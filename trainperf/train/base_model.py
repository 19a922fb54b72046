"""The base model of the tiny LoRA scale: pretrained once on the built-in corpus, then cached.

MLPerf's llama2_70b_lora starts from a pretrained Llama-2-70B. The tiny scale needs a base that
already knows its language (Python) so that LoRA adapters can learn the task in minutes. It is
pretrained here with the same trainer and schedule code as ``llama31_8b --scale tiny`` (Megatron
windows, AdamW, warmup + cosine), with a fixed seed, and saved as an HF-format checkpoint (fused
``qkv_proj``, as MLPerf's Llama-2-70B checkpoint), which the LoRA run then loads like the real one.
The folder is written under a temporary name and renamed when complete; its manifest records the
fingerprint of the inputs, so a second call returns at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trainperf.atomic import atomic_path
from trainperf.config import Config, DataConfig, LogConfig, ModelConfig, TrainConfig
from trainperf.data.prepare import DataPaths, data_paths, prepare_data
from trainperf.data.readers import read_pretraining
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.train.progress import Heartbeat
from trainperf.train.tasks import CausalLMTask
from trainperf.train.trainer import Trainer

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec

BASE_FORMAT_VERSION = 1
BASE_SEED = 1234
BASE_STEPS = 200
BASE_MANIFEST = "trainperf_base.json"


def base_pretraining_config(cfg: Config) -> Config:
    """Pretraining config of the base model a tiny fine-tuning config starts from."""
    return Config(
        benchmark="llama31_8b",
        scale=cfg.scale,
        model=ModelConfig(flavor=cfg.model.flavor, n_layers=cfg.model.n_layers),
        train=TrainConfig(
            seq_len=cfg.train.seq_len,
            global_batch_size=16,
            micro_batch_size=16,
            lr=3e-3,
            warmup_steps=30,
            max_steps=BASE_STEPS,
            end_lr_factor=0.1,
            beta1=0.9,
            beta2=0.95,
            eps=1e-5,
            weight_decay=0.1,
            grad_clip=1.0,
            eval_samples=64,
            eval_skip=0,
            target=0.0,
            seed=BASE_SEED,
            device="cpu" if cfg.train.device == "auto" else cfg.train.device,
            dtype="float32",
        ),
        data=DataConfig(
            source="builtin", vocab_size=cfg.data.vocab_size, max_bytes=cfg.data.max_bytes
        ),
        log=LogConfig(),
    )


def _fingerprint(base_cfg: Config, corpus_dir: Path) -> str:
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    params = {
        "format_version": BASE_FORMAT_VERSION,
        "config": base_cfg.to_dict(),
        "corpus": manifest.get("fingerprint"),
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def cached_base(model_dir: Path, fingerprint: str) -> bool:
    try:
        manifest = json.loads((model_dir / BASE_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("fingerprint") == fingerprint and (model_dir / "config.json").is_file()


def pretraining_spec(spec: BenchmarkSpec) -> BenchmarkSpec:
    """The fine-tuning benchmark's spec turned to pretraining its base: the same model family,
    next-token loss on every token of the built-in corpus's windows."""
    return dataclasses.replace(
        spec,
        task=CausalLMTask(reduction="token"),
        data=dataclasses.replace(spec.data, source="builtin", reader=read_pretraining),
    )


def _base_line(step: int, loss: torch.Tensor, t0: float) -> str:
    return f"  pretrain tiny base: step {step}/{BASE_STEPS}, loss {float(loss):.3f}, " + (
        f"{time.perf_counter() - t0:.0f} s"
    )


def prepare_base_model(
    cfg: Config, spec: BenchmarkSpec, paths: DataPaths, *, progress: bool = True
) -> Path:
    """Pretrain (or reuse) the tiny base model of a fine-tuning config `cfg` of benchmark
    `spec` into ``paths.model_dir``; returns the folder."""
    assert paths.model_dir is not None, "this config has no base model folder"
    console = Console(stderr=True, quiet=not progress)
    base_cfg = base_pretraining_config(cfg)
    corpus = prepare_data(base_cfg, progress=progress)
    fingerprint = _fingerprint(base_cfg, corpus.root)
    out = paths.model_dir
    if cached_base(out, fingerprint):
        console.print(f"[green]✓[/green] cached base model in {out}")
        return out
    t0 = time.perf_counter()
    trainer = Trainer(
        base_cfg,
        pretraining_spec(spec),
        data_paths(base_cfg),
        ml=MLPerfLogger(None),
        console=console,
    )
    trainer.setup()
    bar = Progress(
        TextColumn("[bold]pretrain tiny base"),
        BarColumn(bar_width=24),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )
    heartbeat = Heartbeat(console)
    with bar:
        task = bar.add_task("base", total=BASE_STEPS, loss="-")
        for step in range(BASE_STEPS):
            loss = trainer.train_step()
            if step % 20 == 19:
                bar.update(task, completed=step + 1, loss=f"{float(loss):.3f}")
            heartbeat.beat(partial(_base_line, step + 1, loss, t0))
        bar.update(task, completed=BASE_STEPS)
    eval_loss = trainer.evaluate()
    with atomic_path(out, directory=True) as tmp:
        spec.family.save_checkpoint(trainer.model_with_masters(), tmp)
        info = {
            "fingerprint": fingerprint,
            "steps": BASE_STEPS,
            "eval_log_perplexity": eval_loss,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / BASE_MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
    console.print(
        f"[green]✓[/green] base model: {BASE_STEPS} steps, eval log perplexity "
        f"{eval_loss:.3f}, {info['seconds']} s -> {out}"
    )
    return out
