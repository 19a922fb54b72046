"""A benchmark scale: the numbers that differ between the real rules and the smaller variants."""

from __future__ import annotations

from dataclasses import dataclass


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
    """'c4' or 'builtin'."""
    vocab_size: int
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
