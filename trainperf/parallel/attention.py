"""Which kernel runs the attention (``F.scaled_dot_product_attention``) on CUDA.

PyTorch tries its backends in a priority order (flash, memory-efficient, math, cuDNN by
default) and takes the first that accepts the inputs. On Hopper the cuDNN kernel is about twice
as fast as flash (FlashAttention-2) at Llama shapes: bench/sdpa_backends.py on one H200,
Llama 3.1 8B heads (32 query, 8 K/V, grouped), 8192 tokens, causal, forward + backward:
cuDNN 3.55 ms (387 TFLOP/s), flash 6.75 ms (204 TFLOP/s). ``auto`` therefore puts cuDNN first on
compute capability 9.x and leaves the default order elsewhere (Ampere has no cuDNN advantage;
Blackwell's is unmeasured here). The order is process-wide, so the recomputation of activation
checkpointing takes the same kernel as the forward.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend

ATTENTION_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
_BACKEND = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def resolve_attention_backend(name: str, device: torch.device) -> str | None:
    """The backend to put first, or None to keep PyTorch's order."""
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"train.attention({name!r}) must be one of {ATTENTION_BACKENDS}")
    if device.type != "cuda":
        return None  # CPU has one fused kernel (and math)
    if name == "auto":
        return "cudnn" if torch.cuda.get_device_capability(device)[0] == 9 else None
    return name


def set_attention_backend(name: str, device: torch.device) -> str:
    """Put the chosen backend first in PyTorch's SDPA priority order; returns what is in use.

    The others stay behind it, so inputs it cannot take (e.g. a mask it does not support) still
    run, on the next backend.
    """
    first = resolve_attention_backend(name, device)
    if first is None:
        return "default"
    order = [int(_BACKEND[first])]
    order += [b for b in torch._C._get_sdp_priority_order() if b not in order]
    torch._C._set_sdp_priority_order(order)
    return first
