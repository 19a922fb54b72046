"""LoRA adapters (Hu et al. 2021) as a drop-in `nn.Linear`, computing exactly what PEFT computes.

MLPerf llama2_70b_lora fine-tunes Llama-2-70B with PEFT LoRA: rank 16, alpha 32, dropout 0.1, no
bias, on the fused `qkv_proj` and on `o_proj` (here `wqkv` and `wo`): 80 layers x 16 x
[(8192 + 10240) + (8192 + 8192)] = 44,564,480 trainable parameters. Order of use:

    with torch.device("meta"):
        model = Llama(get_llama_config("llama2-70b"))
    apply_lora(model, LoRAConfig())           # in place; freezes every non-LoRA parameter
    # parallelize(model, ...)                 # FSDP / TP see the final module tree
    model.to_empty(device="cuda")
    model.init_weights()                      # or load the base checkpoint
    init_lora(model)                          # A: kaiming-uniform, B: zeros (output unchanged)

`LoRALinear` subclasses `nn.Linear` and keeps the frozen base parameter named `weight`, so
checkpoint names stay `layers.{i}.attention.wqkv.weight` and code that initialises or loads
`linear.weight` keeps working; the adapters add `...wqkv.lora_a.weight` and `...wqkv.lora_b.weight`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LoRAConfig:
    """Where and how to attach LoRA adapters. Defaults: MLPerf llama2_70b_lora (PEFT settings)."""

    rank: int = 16
    """r: inner width of the adapter; lora_a is (rank, in_features), lora_b (out_features, rank)."""
    alpha: float = 32.0
    """Adapter output is scaled by alpha / rank (2.0 for the MLPerf settings)."""
    dropout: float = 0.1
    """Dropout probability on the adapter's input (the base path sees no dropout), as PEFT."""
    targets: tuple[str, ...] = ("wqkv", "wo")
    """Linear layers to adapt, by name: a name matches a module whose dotted path equals it or ends
    with "." + it (e.g. "wo" or "attention.wo"). ("wqkv", "wo") needs a `fused_qkv=True` model;
    ("wq", "wk", "wv", "wo") is the unfused counterpart but NOT the same model: fused LoRA on
    wqkv shares one lora_a (rank x dim) across q, k and v, while separate adapters have three,
    so the two differ in trainable parameters (at 70B: 44,564,480 vs 65,536,000) and in what they
    can learn."""

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        self.targets = tuple(self.targets)
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(
                f"LoRAConfig.rank({self.rank}) must be an integer >= 1; MLPerf uses 16"
            )
        if not self.alpha > 0:
            raise ValueError(f"LoRAConfig.alpha({self.alpha}) must be positive; MLPerf uses 32")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"LoRAConfig.dropout({self.dropout}) must be in [0, 1); MLPerf uses 0.1, "
                "0 turns it off"
            )
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(
                f"LoRAConfig.targets({self.targets!r}) must be a non-empty list of module names, "
                'e.g. ("wqkv", "wo") for a fused-QKV model or ("wq", "wk", "wv", "wo")'
            )
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"LoRAConfig.targets({self.targets!r}) lists a name twice")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Linear):
    """y = x W^T + (alpha / rank) * B(A(dropout(x))): a frozen bias-free Linear plus an adapter.

    Same math and order of operations as PEFT's `lora.Linear` (vanilla LoRA, bias="none"):
    the base runs in the dtype of `weight`; the input is then cast to the adapters' dtype, the
    adapter output is added (promoting, e.g. bf16 + fp32 -> fp32) and the sum is cast back to the
    base output's dtype (costing, with fp32 adapters, an fp32 copy of x kept for backward, as in
    PEFT). So the frozen base can be bf16 (no fp32 master copy: it gets no gradient
    and no optimizer state) while the adapters stay fp32 (`cast_lora_to(model, torch.float32)`).

    Build one with `LoRALinear.from_linear(linear, ...)` (reuses the Linear's weight tensor) or
    through `apply_lora`. Works on the meta device: materialise with `to_empty`, then call
    `init_lora_weights()` (or `init_lora(model)`) for the adapters.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        if rank < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA needs rank({rank}) >= 1 and dropout({dropout}) in [0, 1)")
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        # Always nn.Dropout (hf_adapter reads .dropout.p); at p = 0 torch returns x itself.
        self.dropout = nn.Dropout(dropout)
        self.lora_a = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.lora_b = nn.Linear(rank, out_features, bias=False, device=device, dtype=dtype)
        self.weight.requires_grad_(False)
        self.init_lora_weights()

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0
    ) -> LoRALinear:
        """A LoRALinear whose frozen `weight` IS `linear.weight` (same tensor, no copy).

        The adapters are created on the weight's device and in its dtype (meta stays meta).
        """
        if linear.bias is not None:
            raise ValueError(
                f"LoRA supports bias-free Linear layers only, got {linear}; Llama has no biases"
            )
        base = linear.weight
        # Build on meta so the constructor allocates nothing big, then adopt the existing weight.
        lora = cls(
            linear.in_features,
            linear.out_features,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            device="meta",
            dtype=base.dtype,
        )
        lora.weight = base
        base.requires_grad_(False)
        lora.lora_a.to_empty(device=base.device)
        lora.lora_b.to_empty(device=base.device)
        lora.init_lora_weights()
        return lora

    @torch.no_grad()
    def init_lora_weights(self) -> None:
        """PEFT's default init: A kaiming-uniform (a = sqrt(5), as nn.Linear), B zeros.

        B = 0 makes the adapted layer equal to the base layer at step 0. No-op on meta tensors.
        Deterministic for a given torch seed on a given device (seed ranks alike under FSDP/TP).
        """
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def reset_parameters(self) -> None:
        # nn.Linear.__init__ calls this before the adapters exist; later calls reset both.
        super().reset_parameters()
        if hasattr(self, "lora_b"):
            self.init_lora_weights()

    def _base(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen base path x W^T (a float8 base overrides it, see parallel/float8.py)."""
        return F.linear(x, self.weight)

    def base_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._base(x)  # (..., out_features), base dtype
        x = x.to(self.lora_a.weight.dtype)
        delta = self.lora_b(self.lora_a(self.dropout(x)))  # (..., rank) -> (..., out_features)
        return (out + delta * self.scale).to(out.dtype)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / rank) B A, computed in float32 and returned in the base dtype.

        Leaves the module unchanged; use it to save merged weights (see `merged_state_dict`).
        """
        delta = self.lora_b.weight.float() @ self.lora_a.weight.float()  # (out, in)
        base = self.base_weight()
        return (base.float() + self.scale * delta).to(base.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}"


def _linear_names(model: nn.Module) -> list[str]:
    """Dotted names of the Linear layers of `model` (the modules LoRA can target)."""
    return [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _not_found_message(missing: list[str], linears: list[str]) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in linears})
    msg = (
        f"LoRA target(s) {', '.join(missing)} match no Linear layer of the model; "
        f"Linear names available: {', '.join(leaves)}"
    )
    if "wqkv" in missing and {"wq", "wk", "wv"} <= set(leaves):
        msg += (
            '; this model has separate q/k/v projections: use targets ("wq", "wk", "wv", "wo") '
            "(a different adapter from fused LoRA) or build the model with fused_qkv=True"
        )
    elif {"wq", "wk", "wv"} & set(missing) and "wqkv" in leaves:
        msg += '; this model has a fused QKV projection: use targets ("wqkv", "wo")'
    return msg


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> int:
    """Replace every Linear named in `cfg.targets` by a LoRALinear, in place; freeze the rest.

    Each base weight tensor is kept as is (no copy; meta stays meta), so call this before
    parallelizing and before materialising or loading. Every parameter other than the adapters'
    gets requires_grad=False. Returns the number of trainable parameters.
    """
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already has LoRA adapters; apply_lora must be called only once")
    linears = _linear_names(model)
    chosen = {t: [n for n in linears if _matches(n, t)] for t in cfg.targets}
    missing = [t for t, names in chosen.items() if not names]
    if missing:
        raise ValueError(_not_found_message(missing, linears))
    for name in sorted({n for names in chosen.values() for n in names}):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        lora = LoRALinear.from_linear(linear, rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
        setattr(parent, child, lora)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in lora_parameters(model):
        param.requires_grad_(True)
    return count_trainable(model)


def _is_lora_name(name: str) -> bool:
    return ".lora_a." in f".{name}" or ".lora_b." in f".{name}"


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(name, module) for every LoRALinear of `model`, in module order."""
    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear):
            yield name, mod


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters (lora_a and lora_b weights): what the optimizer should hold."""
    return [p for _, mod in lora_modules(model) for p in (mod.lora_a.weight, mod.lora_b.weight)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter tensors only, by our names (`layers.0.attention.wqkv.lora_a.weight`, ...)."""
    return {k: v for k, v in model.state_dict().items() if _is_lora_name(k)}


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with adapters folded in: `...wqkv.weight` = W + scale B A, no lora_*.

    Loads into the same model built without LoRA.
    """
    merged = {
        f"{name}.weight" if name else "weight": m.merged_weight() for name, m in lora_modules(model)
    }
    state = {k: v for k, v in model.state_dict().items() if not _is_lora_name(k)}
    return {k: merged.get(k, v) for k, v in state.items()}


def count_trainable(model: nn.Module) -> int:
    """Number of parameters with requires_grad=True (works on meta)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def init_lora(model: nn.Module) -> int:
    """Initialise every adapter as PEFT does (after `to_empty`); returns how many were set."""
    count = 0
    for _, mod in lora_modules(model):
        mod.init_lora_weights()
        count += 1
    return count


def cast_lora_to(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast only the adapter weights (e.g. fp32 adapters on a bf16 base); base stays as is."""
    for _, mod in lora_modules(model):
        mod.lora_a.to(dtype)
        mod.lora_b.to(dtype)
