"""Float32 master weights kept by AdamW, bf16 copies as the model's weights
(``train.master_weights=optimizer``).

Mixed precision as the trainer runs it in one process: the model's parameters are float32 and
autocast casts every matmul weight to bf16 at each forward; the bf16 weight gradients the GEMMs
produce are cast back to float32 on their way into ``.grad``; AdamW then reads and writes the
float32 weights. For gpt_oss_20b (3.2 B expert parameters in 4 layers) the two casts are 12 ms
of a 140 ms step on an H200, all of it memory traffic.

In 'optimizer' mode (Megatron's and Apex O2's layout) the model holds bf16 copies of the weights
that autocast would cast anyway (``nn.Linear`` weights and biases, and what a module lists in
``autocast_params``, such as gpt_oss's experts); `MasterAdamW` keeps their float32 masters
beside the moments and writes the new bf16 copy in the same pass as the update. The GEMMs'
bf16 weight gradients reach the optimizer as they are; over several micro-batches they are
summed in float32 (``accumulate``), as the float32 ``.grad`` sums them in 'model' mode. The
forward sees the same bf16 weights and the update the same gradients: the same training, with
one exception, the output layer's gradient under the chunked cross entropy, which is scaled
after its GEMM and so rounded to bf16 once more.

The update is one Triton kernel per tensor on CUDA (`adamw_kernel`): master, gradient and
moments read once, master, moments and bf16 copy written once. Elsewhere (and where Triton is
missing) the same arithmetic runs as torch operations (`adamw_torch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.tensor import DTensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring Triton
    triton = None

BLOCK = 1024
"""Elements per Triton program of the update (8 per thread at 4 warps): 4.13 TB/s on an H200,
98 % of a plain copy's; 4096 x 8 warps 3.70, torch's fused AdamW 2.83 (bench/adamw_kernel.py)."""
WARPS = 4


def blocker(cfg, *, world: int, device: str) -> str | None:
    """Why `cfg` on `world` ranks of `device` ('cuda' or 'cpu') cannot keep its masters in
    the optimizer, or None.

    Only where the model's float32 parameters are cast by autocast: one process (on 2+ ranks
    FSDP2 makes the bf16 copies itself, as it gathers them), bf16 compute over float32 masters,
    no float8 (it casts the float32 weights itself) and no LoRA (its adapters are small).
    """
    from trainperf.train.trainer import resolve_dtype

    t, par = cfg.train, cfg.parallel
    if world > 1:
        return f"{world} ranks (FSDP2 makes the bf16 copies as it gathers the weights)"
    if t.master_dtype != "float32":
        return "train.master_dtype=bfloat16 has no float32 master"
    if resolve_dtype(t.dtype, torch.device(device), master=t.master_dtype) != torch.bfloat16:
        return (
            f"the compute dtype is float32 (train.dtype={t.dtype} on {device}), so there are "
            "no bf16 copies to keep"
        )
    if par.float8 != "none":
        return f"parallel.float8={par.float8} casts the float32 weights itself"
    if cfg.model.lora_rank:
        return "LoRA trains small adapters only"
    return None


def refusal(why: str) -> str:
    """The one-line refusal of train.master_weights=optimizer, with the fix."""
    return (
        f"train.master_weights=optimizer does not apply: {why}; use train.master_weights=model "
        "(or auto, which chooses)"
    )


def resolve_mode(cfg, *, world: int, device: torch.device) -> str:
    """'model' or 'optimizer' for train.master_weights (ValueError: 'optimizer' impossible)."""
    want = cfg.train.master_weights
    if want == "model":
        return want
    why = blocker(cfg, world=world, device=device.type)
    if want == "optimizer" and why:
        raise ValueError(refusal(why))
    if want == "auto" and (why or device.type != "cuda"):
        return "model"
    return "optimizer"


# ---- the model side: bf16 copies in place of the float32 parameters ----------------------------
def _copyable(module: nn.Module) -> tuple[str, ...]:
    """Names of `module`'s own parameters that autocast casts to its dtype wherever used."""
    if isinstance(module, nn.Linear):
        return ("weight", "bias")
    return tuple(getattr(module, "autocast_params", ()))


def copyable_params(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, name) of every trainable float32 parameter that only autocast-cast matmuls use
    (a parameter tied to another use, such as an embedding, is left out)."""
    uses: dict[int, list[tuple[nn.Module, str, bool]]] = {}
    for module in model.modules():
        names = _copyable(module)
        for name, p in module.named_parameters(recurse=False):
            ok = (
                name in names
                and p.requires_grad
                and p.dtype == torch.float32
                and not isinstance(p, DTensor)
            )
            uses.setdefault(id(p), []).append((module, name, ok))
    return [(m, n) for found in uses.values() if all(ok for *_, ok in found) for m, n, _ in found]


@torch.no_grad()
def keep_masters_(model: nn.Module, dtype: torch.dtype) -> dict[nn.Parameter, torch.Tensor]:
    """Replace the copyable parameters by bf16 (`dtype`) copies; {copy: float32 master}."""
    masters: dict[nn.Parameter, torch.Tensor] = {}
    copies: dict[int, nn.Parameter] = {}
    for module, name in copyable_params(model):
        master = getattr(module, name)
        if id(master) not in copies:
            copy = nn.Parameter(master.detach().to(dtype), requires_grad=True)
            copies[id(master)] = copy
            masters[copy] = master.detach()
        setattr(module, name, copies[id(master)])
    return masters


@torch.no_grad()
def restore_masters_(model: nn.Module, masters: dict[nn.Parameter, torch.Tensor]) -> None:
    """Put the float32 masters back as the model's parameters (before saving it)."""
    back = {id(copy): nn.Parameter(master, requires_grad=True) for copy, master in masters.items()}
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if id(p) in back:
                setattr(module, name, back[id(p)])


# ---- the update ----------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def adamw_kernel(
        master_ptr,
        grad_ptr,
        m_ptr,
        v_ptr,
        out_ptr,
        scale_ptr,
        n,
        beta1,
        w1,
        beta2,
        w2,
        eps,
        decay,
        step_size,
        bc2_sqrt,
        HAS_OUT: tl.constexpr,
        HAS_SCALE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """AdamW on `n` elements: float32 master, moments; gradient in any float dtype, divided
        by *scale_ptr (the clip factor) when HAS_SCALE; the bf16 copy (as int16 bits, rounded
        to nearest even) when HAS_OUT."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_SCALE:
            g = tl.div_rn(g, tl.load(scale_ptr).to(tl.float32))
        p = tl.load(master_ptr + offs, mask=mask, other=0.0)
        m = tl.load(m_ptr + offs, mask=mask, other=0.0)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0)
        p = p * decay
        m = beta1 * m + w1 * g
        v = beta2 * v + w2 * (g * g)
        denom = tl.div_rn(tl.sqrt_rn(v), bc2_sqrt) + eps
        p = p - step_size * tl.div_rn(m, denom)
        tl.store(master_ptr + offs, p, mask=mask)
        tl.store(m_ptr + offs, m, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)
        if HAS_OUT:
            # float32 -> bf16, round to nearest even, on the bits (the same on every backend)
            bits = p.to(tl.uint32, bitcast=True)
            half = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).to(tl.int32)
            half = tl.where(p != p, 0x7FC0, half)  # NaN stays NaN
            tl.store(out_ptr + offs, half.to(tl.int16), mask=mask)

else:  # pragma: no cover
    adamw_kernel = None


@dataclass(frozen=True)
class StepScalars:
    """The scalars of one AdamW update of one tensor (its step's bias corrections folded in)."""

    beta1: float
    beta2: float
    eps: float
    decay: float
    """1 - lr x weight_decay."""
    step_size: float
    """lr / (1 - beta1^step)."""
    bc2_sqrt: float
    """sqrt(1 - beta2^step)."""


def adamw_triton(master, grad, m, v, out, scale, k: StepScalars, *, kernel=None) -> None:
    """Launch `kernel` (default `adamw_kernel`) over contiguous tensors of equal size: float32
    `master`, `m`, `v`; `grad` in any float dtype; `out` the bf16 copy or None; `scale` the
    clip factor (a 0-d tensor) or None."""
    n = master.numel()
    (kernel or adamw_kernel)[(triton.cdiv(n, BLOCK),)](
        master,
        grad,
        m,
        v,
        master if out is None else out.view(torch.int16),
        master if scale is None else scale,
        n,
        k.beta1,
        1.0 - k.beta1,
        k.beta2,
        1.0 - k.beta2,
        k.eps,
        k.decay,
        k.step_size,
        k.bc2_sqrt,
        HAS_OUT=out is not None,
        HAS_SCALE=scale is not None,
        BLOCK=BLOCK,
        num_warps=WARPS,
    )


def adamw_torch(master, grad, m, v, out, scale, k: StepScalars) -> None:
    """The kernel's arithmetic as torch operations (CPU, or no Triton)."""
    g = grad.float()
    if scale is not None:
        g = g / scale.float()
    master.mul_(k.decay)
    m.mul_(k.beta1).add_(g, alpha=1.0 - k.beta1)  # fused AdamW's b1 m + (1 - b1) g, not a lerp
    v.mul_(k.beta2).addcmul_(g, g, value=1.0 - k.beta2)
    master.addcdiv_(m, v.sqrt().div_(k.bc2_sqrt).add_(k.eps), value=-k.step_size)
    if out is not None:
        out.copy_(master)


class MasterAdamW:
    """AdamW (decoupled weight decay, torch's arithmetic) over a model whose copyable weights
    are bf16 copies: `masters` maps each copy to its float32 master. Other parameters are their
    own masters. Exposes what the trainer uses of a torch optimizer: ``param_groups`` (the LR),
    ``defaults``, ``state``, ``step``, ``zero_grad``, ``grad_scale`` (the clip factor, as torch's
    fused kernels take it) and ``gradient(p)`` (what the step will use as p's gradient).

    With ``accumulate`` the copies' bf16 gradients are moved into float32 sums as each
    micro-batch's backward delivers them (a post-accumulate-grad hook), and ``gradient(p)`` is
    the sum.
    """

    def __init__(
        self,
        param_groups: list[dict],
        *,
        masters: dict[nn.Parameter, torch.Tensor],
        lr: float,
        betas: tuple[float, float],
        eps: float,
        accumulate: bool = False,
        update: Callable | None = None,
    ) -> None:
        self.defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=0.0, fused=True)
        self.param_groups = [{**self.defaults, **group} for group in param_groups]
        self.grad_scale: torch.Tensor | None = None
        self.state: dict[nn.Parameter, dict] = {}
        for p in self._params():
            master = masters.get(p, p.detach())
            self.state[p] = {
                "step": 0,
                "master": master,
                "exp_avg": torch.zeros_like(master),
                "exp_avg_sq": torch.zeros_like(master),
                "grad32": None,
                "copy": p in masters,
            }
            if accumulate and p in masters:
                p.register_post_accumulate_grad_hook(self._accumulate)
        cuda = next(self._params()).is_cuda
        self.update = update or (adamw_triton if cuda and triton is not None else adamw_torch)

    def _params(self) -> Iterator[nn.Parameter]:
        for group in self.param_groups:
            yield from group["params"]

    def _accumulate(self, p: nn.Parameter) -> None:
        state = self.state[p]
        if state["grad32"] is None:
            state["grad32"] = p.grad.float()
        else:
            state["grad32"].add_(p.grad)
        p.grad = None

    def gradient(self, p: nn.Parameter) -> torch.Tensor | None:
        grad32 = self.state[p]["grad32"]
        return p.grad if grad32 is None else grad32

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            p.grad = None
            self.state[p]["grad32"] = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                grad = self.gradient(p)
                if grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                step, master = state["step"], state["master"]
                scalars = StepScalars(
                    beta1=beta1,
                    beta2=beta2,
                    eps=eps,
                    decay=1.0 - lr * group["weight_decay"],
                    step_size=lr / (1.0 - beta1**step),
                    bc2_sqrt=math.sqrt(1.0 - beta2**step),
                )
                grad, m, v = grad.contiguous(), state["exp_avg"], state["exp_avg_sq"]
                out = p if state["copy"] else None
                self.update(master, grad, m, v, out, self.grad_scale, scalars)
