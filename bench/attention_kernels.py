"""Which attention kernels a trainperf Llama block really runs on this GPU, and their time.

    python bench/attention_kernels.py      # 2 layers of Llama 3.1 8B shapes, 8192 tokens

One forward + backward under torch.profiler for: PyTorch's default SDPA order, train.attention
= cudnn, and cudnn with the blocks compiled. Prints one JSON line per variant with the CUDA time
of the kernels whose names look like attention (flash / fmha / cudnn / sdpa) and of all kernels.
"""

import json

import torch
from torch.profiler import ProfilerActivity, profile

from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.parallel.attention import set_attention_backend
from trainperf.parallel.compile import apply_compile

ATTN = ("flash", "fmha", "cudnn", "sdpa", "attention", "sm90")


def one_variant(name: str, *, backend: str | None, compile: bool) -> dict:
    before = torch._C._get_sdp_priority_order()
    if backend:
        set_attention_backend(backend, torch.device("cuda"))
    torch.manual_seed(0)
    cfg = get_llama_config("llama3.1-8b", n_layers=2)
    model = Llama(cfg).cuda().to(torch.bfloat16)
    model.init_weights()
    if compile:
        apply_compile(model)
    x = torch.randint(0, cfg.vocab_size, (1, 8192), device="cuda")

    def step():
        model(x).float().mean().backward()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    attn = [e for e in events if any(k in e.key.lower() for k in ATTN)]
    torch._C._set_sdp_priority_order(before)
    return {
        "variant": name,
        "all_kernels_ms": round(total / 1e3, 2),
        "attention_ms": round(sum(e.self_device_time_total for e in attn) / 1e3, 2),
        "attention_kernels": sorted({e.key[:90] for e in attn}),
    }


for name, backend, comp in [
    ("default", None, False),
    ("cudnn", "cudnn", False),
    ("cudnn_compiled", "cudnn", True),
]:
    try:
        print(json.dumps(one_variant(name, backend=backend, compile=comp)), flush=True)
    except Exception as exc:
        print(json.dumps({"variant": name, "error": repr(exc)[:300]}), flush=True)
