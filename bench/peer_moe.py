"""Peer baseline for the MoE benchmark (gpt_oss_20b): HF Transformers GptOssForCausalLM + FSDP2.

  torchrun --standalone --nproc-per-node N bench/peer_moe.py hf-gpt-oss --size gpt-oss-20b-mlperf \
      --layers 4 --seq 8192 --batch 1 --steps 10 --warmup 3 [--no-ac] [--attn ...] [--experts ...]
  torchrun --standalone --nproc-per-node 2 bench/peer_moe.py hf-gpt-oss --size debug --seq 64 \
      --batch 2 --steps 3 --warmup 1                                    # CPU, gloo

The conventions of ../shared/tools/peer_bench.py (hf-pretrain): random init on meta, FSDP2
fully_shard per decoder layer + root with bf16 compute over fp32 master weights and fp32 gradient
reduction, HF activation checkpointing (non-reentrant), fused AdamW, synthetic tokens (labels =
inputs), cuda synchronize around each step, the median step after the warmup steps, one JSON line
from rank 0. --steps counts the timed steps; --warmup more run before them.

Attention: HF GptOss has _supports_sdpa = False (SDPA cannot apply the learned sinks). On CUDA the
default is flex_attention: transformers' flex_attention_forward takes the LSE back from flex and
renormalizes with the sinks (s_aux), differentiably; the sliding layers get a block-sparse
BlockMask. On CPU HF's flex path refuses sinks, so eager there. --attn sdpa is forced past HF's
check and drops the sinks: a speed reference only, not the same model ("sinks": false).
Experts: HF's @use_experts_implementation; config.experts_implementation picks the forward, HF's
default is grouped_mm (torch grouped_mm over expert-sorted tokens). deepgemm / sonicmoe load
kernels from the Hub (the `kernels` package), which the offline GPU machines cannot reach.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

MLPERF = dict(  # the MLPerf gpt-oss-20b pretraining shape: no yarn, Llama 3 vocab, no aux loss
    num_hidden_layers=24, hidden_size=2880, num_attention_heads=64, num_key_value_heads=8,
    head_dim=64, num_local_experts=32, num_experts_per_tok=4, intermediate_size=2880,
    vocab_size=128256, sliding_window=128, max_position_embeddings=8192,
    rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
    router_aux_loss_coef=0.0,
)  # fmt: skip
SIZES = {  # name: GptOssConfig overrides of HF's defaults
    "gpt-oss-20b-mlperf": MLPERF,
    "gpt-oss-20b": dict(num_hidden_layers=24, num_local_experts=32),  # openai/gpt-oss-20b, yarn
    "debug": dict(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, num_local_experts=8, num_experts_per_tok=2, intermediate_size=32,
        vocab_size=256, sliding_window=8, max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
    ),
}  # fmt: skip
EXPERTS = ["grouped_mm", "batched_mm", "eager", "deepgemm", "sonicmoe"]  # transformers 5.x
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "B200": 2250e12, "A100": 312e12}


def active_params(model, cfg):
    """Parameters one token passes through, without the embedding lookup: every parameter but
    embed_tokens, the expert weights scaled by top_k / num_experts (lm_head counted)."""
    k = cfg.num_experts_per_tok / cfg.num_local_experts
    n = 0
    for name, p in model.named_parameters():
        if "embed_tokens" not in name:
            n += p.numel() * (k if ".experts." in name else 1)
    return int(n)


def flops_per_token(cfg, seq, n_active):
    """Training model FLOPs per token of a GptOss model at sequence length seq.

    6 * n_active (forward 2, backward 4 per active parameter; the embedding lookup excluded, the
    lm_head included) + per layer 6 * 2 * n_heads * head_dim * keys, the QK^T and PV matmuls
    (2 * n_heads * head_dim * keys each, forward + backward = 3x), where keys = min(window, seq)
    for sliding_attention layers and seq for full_attention layers (no causal halving, as the
    Llama formula of peer_bench.py).
    """
    attn = 0
    for kind in cfg.layer_types[: cfg.num_hidden_layers]:
        keys = min(cfg.sliding_window, seq) if kind == "sliding_attention" else seq
        attn += 6 * 2 * cfg.num_attention_heads * cfg.head_dim * keys
    return 6 * n_active + attn


def peak_flops(cuda):
    """bf16 dense peak of this GPU (PEER_PEAK_TFLOPS overrides); None when unknown or on CPU."""
    if os.environ.get("PEER_PEAK_TFLOPS"):
        return float(os.environ["PEER_PEAK_TFLOPS"]) * 1e12
    if not cuda:
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def build_hf(size, seq, layers, attn, experts):
    from transformers import GptOssConfig, GptOssForCausalLM

    kw = dict(SIZES[size])
    kw["num_hidden_layers"] = layers or kw.get("num_hidden_layers", 24)
    kw["max_position_embeddings"] = max(seq, kw.get("max_position_embeddings", 131072))
    cfg = GptOssConfig(
        **kw, attn_implementation="eager" if attn == "sdpa" else attn,
        experts_implementation=experts, use_cache=False, tie_word_embeddings=False,
        output_router_logits=False,
    )  # fmt: skip
    with torch.device("meta"):
        model = GptOssForCausalLM(cfg)
    if attn == "sdpa":  # past HF's _supports_sdpa = False: SDPA ignores s_aux (the sinks)
        model.config._attn_implementation = "sdpa"
    return model, model.config


def bench_moe(a):
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    attn = a.attn or ("flex_attention" if cuda else "eager")
    model, cfg = build_hf(a.size, a.seq, a.layers, attn, a.experts)
    n_params = sum(p.numel() for p in model.parameters())
    n_active = active_params(model, cfg)
    if not a.no_ac:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in [m for m in model.modules() if type(m).__name__ == "GptOssDecoderLayer"]:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    t0 = time.time()
    model.to_empty(device=dev)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.fill_(1.0)
            elif n.endswith("bias"):
                p.zero_()
            else:  # weights, expert tensors, router, sinks
                p.normal_(0, 0.02)
        for mod in model.modules():  # rotary inv_freq buffers were on meta (yarn for gpt-oss-20b)
            if type(mod).__name__ == "GptOssRotaryEmbedding":
                fresh = type(mod)(mod.config)  # on CPU, fp32, as HF loads it
                mod.inv_freq = fresh.inv_freq.to(dev)
                mod.original_inv_freq = fresh.original_inv_freq.to(dev)
                mod.attention_scaling = fresh.attention_scaling
    init_s = time.time() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=cuda)
    g = torch.Generator(device="cpu").manual_seed(rank)
    times = []
    for _ in range(a.warmup + a.steps):
        ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g).to(dev)
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    timed = sorted(times[a.warmup :])
    steady = timed[len(timed) // 2]
    fpt = flops_per_token(cfg, a.seq, n_active)
    tok_s_gpu = a.batch * a.seq / steady
    peak = peak_flops(cuda)
    res = {
        "bench": "hf-gpt-oss", "size": a.size, "layers": cfg.num_hidden_layers, "ac": not a.no_ac,
        "seq": a.seq, "batch_per_gpu": a.batch, "world": world,
        "attn": cfg._attn_implementation, "sinks": attn != "sdpa",
        "experts": cfg._experts_implementation, "steps": a.steps, "warmup": a.warmup,
        "step_s_median": round(steady, 4), "step_s_mean": round(sum(timed) / len(timed), 4),
        "samples_s_gpu": round(a.batch / steady, 3), "tok_s_gpu": round(tok_s_gpu, 1),
        "tok_s": round(tok_s_gpu * world, 1),
        "params": n_params, "active_params": n_active, "flops_per_token": fpt,
        "model_tflops_gpu": round(fpt * tok_s_gpu / 1e12, 1),
        "mfu": round(fpt * tok_s_gpu / peak, 4) if peak else None,
        "init_s": round(init_s, 1), "loss_last": float(loss.detach()),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        "trainable_local": sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel()
                               for p in params),
    }  # fmt: skip
    if rank == 0:
        print(json.dumps(res), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["hf-gpt-oss"])
    ap.add_argument("--size", default="gpt-oss-20b-mlperf", choices=list(SIZES))
    ap.add_argument("--layers", type=int, default=None, help="fewer decoder layers (a proxy)")
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1, help="sequences per GPU per step")
    ap.add_argument("--steps", type=int, default=8, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--no-ac", action="store_true", help="no activation checkpointing")
    ap.add_argument(
        "--attn", default=None, choices=["flex_attention", "eager", "sdpa"],
        help="default: flex_attention on CUDA, eager on CPU; sdpa drops the sinks",
    )  # fmt: skip
    ap.add_argument("--experts", default="grouped_mm", choices=EXPERTS, help="HF experts forward")
    bench_moe(ap.parse_args())
