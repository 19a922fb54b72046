"""What a model family provides: one typed record, read by the trainer, perf and the launchers.

A family is a folder under ``models/`` (``llama/``: model.py, hf.py, parallelize.py) whose
``__init__`` builds one `ModelFamily`; a benchmark spec names its family, and nothing outside
the folder imports the family's modules. In the spirit of torchtitan's TrainSpec: the trainer
calls these functions and knows no model class.

    family = spec.family
    model_cfg = family.model_config(cfg)            # sizes of this run's model
    with torch.device("meta"):
        model = family.build(model_cfg, cfg.model)  # + LoRA adapters when cfg asks
    applied = parallelize_model(model, family.parallel_plan(model), dims, mesh, ...)
    model.to_empty(device=device)
    family.load_checkpoint(model, source) or family.init_weights(model)
    family.init_adapters(model)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from trainperf.config import Config, ModelConfig
from trainperf.parallel.plan import ParallelPlan
from trainperf.perf.memory import ModelShape


@dataclass(frozen=True)
class ModelFamily:
    name: str
    """The folder under ``models/`` ('llama')."""
    configs: Mapping[str, Any]
    """The size registry: flavor name -> the family's model config (``"debug"`` for tests)."""
    model_config: Callable[[Config], Any]
    """The model config a run of `cfg` builds: its flavor, layers, sequence length, ..."""
    build: Callable[[Any, ModelConfig], nn.Module]
    """(model config, cfg.model) -> the model, built on the current device (meta), with LoRA
    adapters when ``cfg.model.lora_rank`` > 0 (the base then frozen)."""
    parallel_plan: Callable[[nn.Module], ParallelPlan]
    """The blocks, tensor-parallel styles and attention kernels of a built model."""
    tp_sizes: Callable[[Any], dict[str, int]]
    """model config -> the sizes a tensor-parallel degree must divide, by name (heads, widths,
    vocabulary), checked before anything is built."""
    init_weights: Callable[[nn.Module], None]
    """Initialise every base parameter in place (after ``to_empty``), deterministic per seed."""
    init_adapters: Callable[[nn.Module], int]
    """Initialise the LoRA adapters (if any) in place; returns how many."""
    load_checkpoint: Callable[[nn.Module, str | Path], None]
    """Fill the base parameters from the family's published checkpoint format (a folder or a
    hub id), each rank reading only its own shards; ValueError before changing anything."""
    save_checkpoint: Callable[[nn.Module, str | Path], Path | None]
    """Write the model in that format (every rank calls it; rank 0 writes and gets the path)."""
    verify_checkpoint: Callable[[Path, str], str]
    """(folder, flavor) -> one line about a prepared checkpoint; ValueError when unusable."""
    flops_per_sample: Callable[[Any, int], float]
    """(model config, sequence length) -> exact training FLOPs of one sample, counted on the
    model (forward + backward, every parameter trained)."""
    shape: Callable[[Any], ModelShape]
    """The sizes of a model config that the memory estimate needs."""

    def config(self, flavor: str) -> Any:
        """The registry entry `flavor`; ValueError naming the known ones."""
        if flavor not in self.configs:
            raise ValueError(
                f"unknown {self.name} model {flavor!r}; known: {', '.join(self.configs)}"
            )
        return self.configs[flavor]
