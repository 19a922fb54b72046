"""Float8 training of the Linear layers through torchao (``torchao.float8``).

Every Linear of the transformer blocks becomes a ``Float8Linear``: its weight stays in the
parameter dtype (the optimizer's master copy); at each matmul the input, weight and output
gradient are cast to float8 e4m3 with dynamic scales and multiplied on the FP8 tensor cores
(``torch._scaled_mm``). Recipes (torchao's names):

- ``tensorwise``: one scale per tensor, the fastest on H100/H200 (torchao: +25 % on Llama 3 8B);
  FSDP2 all-gathers the weights in float8 too (half the bytes of bf16).
- ``rowwise``: one scale per row (the inputs) or column (the weights), more accurate with
  outliers, slower (+10 %); the all-gather stays in bf16.

LoRA (``apply_float8_frozen_base``, recipe ``rowwise``): the frozen base weights are stored in
float8 e4m3 with one scale per output row (half the bytes of bf16: Llama 2 70B in ~65 GiB, so it
fits one H200) and multiplied on the FP8 tensor cores in the forward pass and in the input
gradient of backward; there is no weight gradient to compute. They are buffers, not parameters:
FSDP does not shard or all-gather them (every rank keeps the whole frozen base; only the
adapters are data-parallel), and the checkpoint loader quantizes each weight as it reads it.

Left in bf16: the output layer (its logits feed the softmax; NVIDIA and torchtitan leave it out
too), LoRA adapters (rank 16 is too narrow for the FP8 GEMM shapes) and any Linear whose sizes
are not multiples of 16 (a ``_scaled_mm`` requirement). Float8 needs compute capability 8.9
(Ada, Hopper, Blackwell); on CPU it runs through PyTorch's reference kernels (tests only).
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from trainperf.models.lora import LoRALinear

FLOAT8_RECIPES = ("none", "tensorwise", "rowwise")
FROZEN_BASE_RECIPE = "rowwise"
"""The one recipe of a float8 frozen base (LoRA)."""
E4M3 = torch.float8_e4m3fn
_ADAPTER_NAMES = ("lora_a", "lora_b")  # rank 16 is too narrow for the FP8 GEMM shapes


def check_float8_available(recipe: str, device: torch.device) -> None:
    """Raise ValueError naming what is missing for `recipe` on `device`; no-op for 'none'."""
    if recipe not in FLOAT8_RECIPES:
        raise ValueError(f"parallel.float8({recipe!r}) must be one of {FLOAT8_RECIPES}")
    if recipe == "none":
        return
    if importlib.util.find_spec("torchao") is None:
        raise ValueError(
            f"parallel.float8={recipe} needs torchao; install it with "
            "`pip install 'trainperf[fp8]'` (or `pip install torchao`), or set parallel.float8=none"
        )
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            name = torch.cuda.get_device_name(device)
            raise ValueError(
                f"parallel.float8={recipe} needs FP8 tensor cores (compute capability >= 8.9: "
                f"L4/L40, H100, H200, B200); {name} is {major}.{minor}; set parallel.float8=none"
            )


def skipped(fqn: str, skip: tuple[str, ...]) -> bool:
    """Whether the module `fqn` is named in `skip`: by its last segments ('output' matches
    'output' and 'x.output'; 'adaLN_modulation.1' matches 'final_layer.adaLN_modulation.1')."""
    return any(fqn == s or fqn.endswith(f".{s}") for s in (*_ADAPTER_NAMES, *skip))


def _wants_float8(module: nn.Module, fqn: str, skip: tuple[str, ...]) -> bool:
    if type(module) is not nn.Linear or skipped(fqn, skip):
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0


def apply_float8(
    model: nn.Module, *, recipe: str, fsdp: bool = False, skip: tuple[str, ...] = ()
) -> int:
    """Swap the eligible Linear layers of `model` for torchao Float8Linear, in place.

    Call before tensor parallel, compile and FSDP (parallelize_model does). fsdp: whether FSDP2
    will shard the model (tensorwise then all-gathers float8 weights). Returns the number of
    layers converted.
    """
    check_float8_available(recipe, torch.device("cpu"))
    if recipe == "none":
        return 0
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig.from_recipe_name(recipe)
    if recipe == "tensorwise" and fsdp:
        config = Float8LinearConfig(enable_fsdp_float8_all_gather=True)
    converted: list[str] = []

    def keep(module: nn.Module, fqn: str) -> bool:
        ok = _wants_float8(module, fqn, skip)
        if ok:
            converted.append(fqn)
        return ok

    convert_to_float8_training(model, config=config, module_filter_fn=keep)
    return len(converted)


def precompute_float8_scales(model: nn.Module, *, recipe: str, fsdp: bool) -> None:
    """After each optimizer step with tensorwise float8 all-gather: one fused amax of all the
    sharded weights instead of one per layer inside the all-gathers (torchao's recommendation)."""
    if recipe == "tensorwise" and fsdp:
        from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

        precompute_float8_dynamic_scale_for_fsdp(model)


# ---- float8 frozen base (LoRA) -------------------------------------------------------------


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (R, C) -> (q, scale): q float8 e4m3 (R, C), scale (R, 1) float32, x ~= q * scale."""
    from torchao.float8.float8_utils import ScalingGranularity, tensor_to_scale, to_fp8_saturated

    x32 = x.float()
    to_fp8 = tensor_to_scale(
        x32, E4M3, scaling_granularity=ScalingGranularity.AXISWISE, axiswise_dim=-1
    )  # (R, 1): q = x * to_fp8
    return to_fp8_saturated(x32 * to_fp8, E4M3), to_fp8.reciprocal()


def _fold_and_quantize(grad: torch.Tensor, weight_scale: torch.Tensor):
    # the weight's row scales run along dgrad's contracted dimension: fold them into grad's
    # columns, then quantize grad per row
    return quantize_rows(grad.float() * weight_scale.t())


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    return weight.t().contiguous()  # (K, N): the weight's column-major layout, materialised


_COMPILED: dict = {}


def _use_compiled(t: torch.Tensor) -> bool:
    return t.is_cuda and not torch.compiler.is_compiling()


def fused(fn):
    """`fn` through torch.compile (its elementwise passes fused into one or two kernels, its
    transposes tiled) when called eagerly on CUDA tensors; inside a compiled region, or on
    CPU, `fn` itself."""

    def call(*args):
        if not _use_compiled(args[0]):
            return fn(*args)
        if fn not in _COMPILED:
            _COMPILED[fn] = torch.compile(fn, dynamic=True, fullgraph=True)
        return _COMPILED[fn](*args)

    return call


@torch.library.custom_op("trainperf::float8_frozen_dgrad", mutates_args=())
def float8_frozen_dgrad(
    grad: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    """dx = grad (M, N) @ (weight * weight_scale) (N, K) on the FP8 tensor cores.

    grad is quantized per row with the weight's row scales folded in; the weight is read
    column-major, through a float8 transposed copy of this one layer made here (both through
    `fused`). A custom op, opaque to torch.compile: its partitioner must not hoist that copy
    into the forward pass, where it would stay alive until backward for every layer.
    """
    gq, gs = fused(_fold_and_quantize)(grad, weight_scale)
    ones = torch.ones(1, weight.shape[1], device=grad.device, dtype=torch.float32)
    w_col = fused(_transposed)(weight).t()  # (N, K), column-major
    return torch._scaled_mm(gq, w_col, scale_a=gs, scale_b=ones, out_dtype=out_dtype)


@float8_frozen_dgrad.register_fake
def _(grad, weight, weight_scale, out_dtype):
    return grad.new_empty((grad.shape[0], weight.shape[1]), dtype=out_dtype)


class _Float8FrozenMatmul(torch.autograd.Function):
    """y = x W^T with W frozen in float8 (per-row scales): FP8 GEMMs forward and for dx.

    Forward: x quantized per row (token), then torch._scaled_mm with the weight's row scales.
    Backward: ``float8_frozen_dgrad``. No weight gradient: the base is frozen.
    """

    @staticmethod
    def forward(ctx, x, weight, weight_scale, out_dtype):
        lead, k = x.shape[:-1], x.shape[-1]
        xq, xs = fused(quantize_rows)(x.reshape(-1, k))
        out = torch._scaled_mm(
            xq, weight.t(), scale_a=xs, scale_b=weight_scale.t(), out_dtype=out_dtype
        )
        ctx.save_for_backward(weight, weight_scale)
        ctx.x_dtype = x.dtype
        return out.view(*lead, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        weight, weight_scale = ctx.saved_tensors
        lead, n = grad.shape[:-1], grad.shape[-1]
        dx = float8_frozen_dgrad(grad.reshape(-1, n), weight, weight_scale, ctx.x_dtype)
        return dx.view(*lead, weight.shape[1]), None, None, None


def float8_frozen_linear(
    x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor
) -> torch.Tensor:
    """x @ (weight * weight_scale)^T for a float8 frozen weight (out, in) and scales (out, 1);
    the result in autocast's dtype inside autocast, else in x's dtype."""
    kind = x.device.type
    out_dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
    with torch.autocast(kind, enabled=False):
        return _Float8FrozenMatmul.apply(x, weight, weight_scale, out_dtype)


class _Float8FrozenWeight:
    """A frozen weight as float8 buffers: ``weight`` (out, in) e4m3, ``weight_scale`` (out, 1)."""

    weight: torch.Tensor
    weight_scale: torch.Tensor

    def _store_float8(self, shape: torch.Size, device: torch.device) -> None:
        if "weight" in self._parameters:
            del self._parameters["weight"]
        self.register_buffer("weight", torch.empty(shape, dtype=E4M3, device=device))
        scale = torch.ones(shape[0], 1, dtype=torch.float32, device=device)
        self.register_buffer("weight_scale", scale)

    @torch.no_grad()
    def load_weight_(self, value: torch.Tensor) -> None:
        """Quantize the high-precision weight `value` (out, in) into the float8 buffers (what
        ``Llama.init_weights`` and ``load_hf_checkpoint`` call)."""
        q, scale = quantize_rows(value.to(self.weight.device))
        self.weight.copy_(q)
        self.weight_scale.copy_(scale)

    def base_weight(self) -> torch.Tensor:
        """The dequantized weight in bfloat16."""
        return (self.weight.float() * self.weight_scale).to(torch.bfloat16)

    def _base(self, x: torch.Tensor) -> torch.Tensor:
        return float8_frozen_linear(x, self.weight, self.weight_scale)


class Float8FrozenLinear(_Float8FrozenWeight, nn.Module):
    """A frozen bias-free Linear whose weight is float8 e4m3 with per-row scales."""

    def __init__(self, in_features: int, out_features: int, *, device=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._store_float8(torch.Size((out_features, in_features)), torch.device(device or "cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._base(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, float8 e4m3"


class Float8LoRALinear(_Float8FrozenWeight, LoRALinear):
    """A LoRA layer over a float8 frozen base: the same adapters, the base through FP8 GEMMs."""

    @classmethod
    def from_lora(cls, lora: LoRALinear) -> Float8LoRALinear:
        new = cls(
            lora.in_features,
            lora.out_features,
            rank=lora.rank,
            alpha=lora.alpha,
            dropout=lora.dropout.p,
            device="meta",
        )
        new.lora_a, new.lora_b = lora.lora_a, lora.lora_b  # the same adapter modules
        new._store_float8(lora.weight.shape, lora.weight.device)
        return new


def apply_float8_frozen_base(model: nn.Module, *, recipe: str, skip: tuple[str, ...] = ()) -> int:
    """LoRA: store every frozen Linear weight of the transformer blocks in float8, in place.

    Plain Linear layers become ``Float8FrozenLinear``, LoRA layers ``Float8LoRALinear`` (same
    adapters). Call on the meta device before parallelizing; then ``Llama.init_weights`` or
    ``load_hf_checkpoint`` fill the weights (both quantize through ``load_weight_``). Returns
    the number of layers converted.
    """
    check_float8_available(recipe, torch.device("cpu"))
    if recipe == "none":
        return 0
    if recipe != FROZEN_BASE_RECIPE:
        raise ValueError(
            f"parallel.float8={recipe} with LoRA: the frozen base is stored in float8 with "
            f"per-row scales; use parallel.float8={FROZEN_BASE_RECIPE}"
        )
    count = 0
    for fqn, module in list(model.named_modules()):
        parent_name, _, leaf = fqn.rpartition(".")
        if not isinstance(module, nn.Linear) or skipped(fqn, skip):
            continue
        if module.weight.requires_grad or module.bias is not None:
            continue
        if module.in_features % 16 or module.out_features % 16:
            continue
        if isinstance(module, LoRALinear):
            new = Float8LoRALinear.from_lora(module)
        else:
            new = Float8FrozenLinear(
                module.in_features, module.out_features, device=module.weight.device
            )
        setattr(model.get_submodule(parent_name), leaf, new)
        count += 1
    return count
