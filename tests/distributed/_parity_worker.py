"""One rank of the parity test: train the `debug` Llama sharded and compare with one process.

Run by `test_parity.py` as N processes (RANK / WORLD_SIZE in the environment, a FileStore for
rendezvous, so no port has to be picked). Every rank also trains the unsharded reference on the
whole global batch itself (the model is tiny), so nothing but the results crosses processes.
Rank 0 writes one JSON object per configuration to --out (the measured differences, see
`run_config`, and the `recipe` they come from) or {"error": traceback}; other ranks write
--out.rankN only on an error.
"""

from __future__ import annotations

import argparse
import json
import os
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor

from trainperf.config import TrainConfig
from trainperf.models.llama.hf import canonical_name
from trainperf.models.llama.model import Llama, LlamaConfig, get_llama_config, precompute_rope_cache
from trainperf.models.llama.parallelize import parallel_plan, tp_sizes
from trainperf.models.lora import LoRAConfig, LoRALinear, apply_lora
from trainperf.parallel import ParallelDims, apply_fsdp, parallelize_model
from trainperf.parallel.cp import cp_positions
from trainperf.train.loss import LossTargets, chunked_loss_head, weighted_loss_terms
from trainperf.train.optim import build_optimizer

GLOBAL_BATCH = 4
SEQ_LEN = 32
STEPS = 3
LR = 1e-3
EPS = 1e-3
"""AdamW's epsilon. Adam changes a weight by at most LR / EPS times a change of its gradient (at
a gradient near 0); with the trainer's default 1e-5 that gain is 100 per step, and float32
rounding of the gradients (1e-7) reaches the weights a hundredfold. At 1e-3 the gain is 1 and the
update still follows the gradients' signs (they are 1e-2 to 1e-1)."""
GRAD_CLIP = 1.0


class Layout(NamedTuple):
    dp_shard: int
    tp: int
    options: dict[str, object] = {}
    """Keyword options of parallelize_model."""
    fsdp_on_one: bool = False
    """Also apply FSDP over the dp_shard dimension of size 1 (parallelize_model skips it)."""
    model: dict[str, object] = {}
    """Overrides of the `debug` LlamaConfig."""
    chunked_ce: bool = False
    """Compute the loss with the trainer's chunked cross entropy (Llama.forward's head)."""
    cp: int = 1
    """Context-parallel degree: each rank feeds its part of every sequence."""
    lora: str = ""
    """LoRA adapters on these Linears (rank 4, dropout 0): only they train."""


CONFIGS: dict[str, Layout] = {
    "fsdp2": Layout(2, 1),
    "tp2": Layout(1, 2),
    "tp2_no_sp": Layout(1, 2, {"sequence_parallel": False}),
    "fsdp1_tp2": Layout(1, 2, fsdp_on_one=True),  # 2-D mesh, FSDP on a dim of size 1
    "fsdp2_tp2": Layout(2, 2),  # 4 ranks
    "fsdp2_tp2_fused_qkv": Layout(2, 2, model={"fused_qkv": True}),  # 4 ranks
    "tp2_fused_qkv": Layout(1, 2, model={"fused_qkv": True}),
    # the [speed] features on the FSDP path: chunked CE, selective AC, compile per block
    # ..._keep: FSDP keeps the gathered weights from forward to backward (no reshard)
    "fsdp2_chunked_ce_sac_keep": Layout(
        2,
        1,
        {"activation_checkpointing": "selective", "reshard_after_forward": False},
        chunked_ce=True,
    ),
    "fsdp2_compile_full_ac": Layout(2, 1, {"activation_checkpointing": "full", "compile": True}),
    "tp2_sac": Layout(1, 2, {"activation_checkpointing": "selective"}),
    # context parallel: FSDP over the cp ranks (dp_shard 1), alone and with the other features
    "cp2": Layout(1, 1, cp=2),
    "cp2_fused_qkv_chunked_ce_sac": Layout(
        1,
        1,
        {"activation_checkpointing": "selective"},
        model={"fused_qkv": True},
        chunked_ce=True,
        cp=2,
    ),
    "cp2_compile_full_ac": Layout(
        1, 1, {"activation_checkpointing": "full", "compile": True}, chunked_ce=True, cp=2
    ),
    "fsdp2_cp2": Layout(2, 1, cp=2),  # 4 ranks
    "cp2_tp2": Layout(1, 2, cp=2),  # 4 ranks
    # LoRA under tensor parallel: column- and row-parallel bases with their adapters
    "tp2_lora": Layout(1, 2, model={"fused_qkv": True}, lora="wqkv,wo,w1,w2,w3"),
    "tp2_lora_no_sp": Layout(
        1, 2, {"sequence_parallel": False}, model={"fused_qkv": True}, lora="wqkv,wo"
    ),
    "fsdp2_tp2_lora": Layout(2, 2, model={"fused_qkv": True}, lora="wqkv,wo"),  # 4 ranks
}


def build_model(cfg: LlamaConfig, lora: str) -> nn.Module:
    model = Llama(cfg)
    if lora:
        apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=lora))
    return model


def make_batches() -> list[torch.Tensor]:
    """STEPS fixed global batches of (GLOBAL_BATCH, SEQ_LEN + 1) tokens."""
    vocab = get_llama_config("debug").vocab_size
    gen = torch.Generator().manual_seed(1234)
    return [
        torch.randint(0, vocab, (GLOBAL_BATCH, SEQ_LEN + 1), generator=gen) for _ in range(STEPS)
    ]


def loss_of(
    model: nn.Module, batch: torch.Tensor, *, chunked: bool = False, cp: int = 1, cp_rank: int = 0
) -> torch.Tensor:
    # As Trainer.loss_of: mean next-token cross entropy over the batch.
    if cp > 1:  # this rank's part of the sum over the count's 1/cp (FSDP averages over cp too)
        positions = cp_positions(SEQ_LEN, cp=cp, rank=cp_rank)
        targets = LossTargets.of(batch[:, 1:], reduction="token").select(positions, share=1 / cp)
        inputs = batch[:, :-1].index_select(1, positions)
        if chunked:
            head = chunked_loss_head(targets, dtype=torch.float32, chunk=24)
            loss_sum, count = model(inputs, positions=positions, head=head)
        else:
            loss_sum, count = weighted_loss_terms(model(inputs, positions=positions), targets)
        return loss_sum / count
    if chunked:  # chunks of 24 tokens: several per sample, the last one short
        head = chunked_loss_head(batch[:, 1:], reduction="token", dtype=torch.float32, chunk=24)
        loss_sum, count = model(batch[:, :-1], head=head)
        return loss_sum / count
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())


def train(
    model: nn.Module,
    batches: list[torch.Tensor],
    *,
    reduce: Callable[[torch.Tensor], float],
    first_grads: dict[str, torch.Tensor],
    grad_scale: dict[str, float] | None = None,
    chunked_ce: bool = False,
    cp: int = 1,
    cp_rank: int = 0,
) -> list[float]:
    """STEPS steps of the trainer's recipe: AdamW (build_optimizer), grad-norm clip, step.
    The full gradients of the first step go into `first_grads` (Adam's update is nearly blind to
    a gradient's scale, so weights alone could hide a gradient off by a constant factor); the
    largest |gradient| of each parameter over the steps into `grad_scale` (one process only)."""
    optimizer = build_optimizer(model, TrainConfig(lr=LR, eps=EPS, grad_clip=GRAD_CLIP))
    losses = []
    for step, batch in enumerate(batches):
        loss = loss_of(model, batch, chunked=chunked_ce, cp=cp, cp_rank=cp_rank)
        loss.backward()
        if step == 0:
            first_grads["placements"] = {
                canonical_name(n): str(p.grad.placements)
                for n, p in model.named_parameters()
                if isinstance(p.grad, DTensor)
            }
            for name, p in model.named_parameters():
                if p.grad is None:  # a frozen LoRA base
                    continue
                g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
                first_grads[canonical_name(name)] = g.detach().clone()
        if grad_scale is not None:
            for name, p in model.named_parameters():
                if p.grad is not None:
                    top = p.grad.abs().max().item()
                    key = canonical_name(name)
                    grad_scale[key] = max(grad_scale.get(key, 0.0), top)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(reduce(loss.detach()))
    return losses


def reference_state(cfg: LlamaConfig, hf_dir: str | None, lora: str) -> dict[str, torch.Tensor]:
    """The starting weights: from the HF checkpoint `hf_dir`, or a seeded init_weights; LoRA's
    B nonzero, so that A gets gradients from the first step."""
    torch.manual_seed(0)
    model = build_model(cfg, lora)
    model.init_weights()
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.init_lora_weights()
            torch.nn.init.normal_(m.lora_b.weight, std=0.05)
    if hf_dir is not None:
        from trainperf.models.llama.hf import load_hf_checkpoint

        load_hf_checkpoint(model, hf_dir)
    return {k: v.clone() for k, v in model.state_dict().items()}


def run_reference(
    cfg: LlamaConfig, state: dict[str, torch.Tensor], batches: list[torch.Tensor], lora: str
):
    """(losses, final weights, first gradients, largest |gradient| per parameter over the steps)
    of the one-process run on `batches`."""
    model = build_model(cfg, lora)
    model.load_state_dict(state)
    grads: dict[str, torch.Tensor] = {}
    scale: dict[str, float] = {}
    losses = train(
        model, batches, reduce=lambda loss: loss.item(), first_grads=grads, grad_scale=scale
    )
    grads.pop("placements")
    weights = {canonical_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    return losses, weights, grads, scale


_REFERENCES: dict[str, tuple] = {}


def reference_of(
    overrides: dict[str, object], batches: list[torch.Tensor], hf_dir: str | None, lora: str = ""
):
    """(start weights, the unsharded run, the unsharded run on half of each batch) as
    `run_reference` returns them; one per model config."""
    key = json.dumps([overrides, lora], sort_keys=True)
    if key not in _REFERENCES:
        cfg = get_llama_config("debug", **overrides)
        state = reference_state(cfg, hf_dir, lora)
        # what a data-parallel rank whose gradients are never reduced would train on: its half
        halves = [b[: GLOBAL_BATCH // 2] for b in batches]
        unreduced = run_reference(cfg, state, halves, lora)
        _REFERENCES[key] = state, run_reference(cfg, state, batches, lora), unreduced
    return _REFERENCES[key]


def build_sharded(
    name: str, state: dict[str, torch.Tensor], hf_dir: str | None
) -> tuple[nn.Module, ParallelDims, DeviceMesh]:
    """Build on meta, parallelize, materialize, then load the HF checkpoint `hf_dir` (each rank
    reads its own slices) or, without one, `state` (the full weights, sliced on every rank)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    layout = CONFIGS[name]
    cfg = get_llama_config("debug", **layout.model)
    dims = ParallelDims(
        dp_shard=layout.dp_shard, cp=layout.cp, tp=layout.tp, world_size=dist.get_world_size()
    )
    dims.validate_sizes(tp_sizes(cfg), seq_len=SEQ_LEN)
    mesh = dims.build_mesh("cpu")
    with torch.device("meta"):
        model = build_model(cfg, layout.lora)
    parallelize_model(model, parallel_plan(model), dims, mesh, **layout.options)
    if layout.fsdp_on_one:
        apply_fsdp(model, list(model.layers.values()), mesh["dp_shard"])
    model.to_empty(device="cpu")
    model.init_weights()  # must work on sharded parameters; then overwritten by the load
    assert torch.equal(model.rope_cache, precompute_rope_cache(cfg))
    if hf_dir is not None:
        from trainperf.models.llama.hf import load_hf_checkpoint

        load_hf_checkpoint(model, hf_dir)
    else:
        # set_model_state_dict replaces the values of the dict it is given: hand it a copy.
        set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True))
    return model, dims, mesh


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        v = v.full_tensor() if isinstance(v, DTensor) else v
        out[canonical_name(k)] = v.detach().clone()
    return out


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: error relative to the tensor's scale."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def run_config(name: str, batches: list[torch.Tensor], hf_dir: str | None) -> dict:
    layout = CONFIGS[name]
    state, reference, unreduced = reference_of(layout.model, batches, hf_dir, layout.lora)
    ref_losses, ref_weights, ref_grads, grad_scale = reference
    model, dims, mesh = build_sharded(name, state, hf_dir)
    loaded = full_weights(model)
    load_rel = max(max_rel(loaded[k], state[k]) for k in state)
    dp_rank, dp = mesh["dp_shard"].get_local_rank(), dims.dp_shard
    per_rank = GLOBAL_BATCH // dp
    local = [b[dp_rank * per_rank : (dp_rank + 1) * per_rank] for b in batches]

    def global_mean(loss: torch.Tensor) -> float:
        # Mean of the per-rank means over all ranks: TP ranks hold the same loss, and the cp
        # ranks' (cp x their part) average to their samples' loss.
        loss = loss.clone()
        dist.all_reduce(loss)
        return loss.item() / dist.get_world_size()

    grads: dict[str, torch.Tensor] = {}
    losses = train(
        model,
        local,
        reduce=global_mean,
        first_grads=grads,
        chunked_ce=layout.chunked_ce,
        cp=layout.cp,
        cp_rank=mesh["cp"].get_local_rank(),
    )
    placements = grads.pop("placements")
    grad_errors = {k: max_rel(grads[k], ref_grads[k]) for k in ref_grads}
    worst_grad = max(grad_errors, key=grad_errors.get)
    weights = full_weights(model)
    assert weights.keys() == ref_weights.keys(), (weights.keys(), ref_weights.keys())
    errors = {k: max_rel(weights[k], ref_weights[k]) for k in ref_weights}
    worst = max(errors, key=errors.get)
    # A trained weight's difference in units of its largest gradient (see test_parity.check);
    # the frozen ones (LoRA bases, buffers) never change: they must stay bit-equal.
    in_grads = {k: max_abs(weights[k], ref_weights[k]) / grad_scale[k] for k in grad_scale}
    worst_in_grads = max(in_grads, key=in_grads.get)
    frozen = [k for k in ref_weights if k not in grad_scale and errors[k] > 0]
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses))
    # How far training moved the weights: the comparison is meaningless if this is ~0.
    moved = max(max_rel(ref_weights[k], state[k]) for k in state)
    # What one wrong reduction would show: a data-parallel rank that never reduces its gradients
    # trains on its half of the batch; its first gradient differs from the whole batch's in
    # every parameter by at least unreduced_grad_rel, its weights by unreduced_weight_in_grads.
    _, half_weights, half_grads, _ = unreduced
    unreduced_grad_rel = min(max_rel(half_grads[k], ref_grads[k]) for k in ref_grads)
    unreduced_in_grads = max(
        max_abs(half_weights[k], ref_weights[k]) / grad_scale[k] for k in grad_scale
    )
    return {
        "load_rel": load_rel,
        "moved": moved,
        "losses": losses,
        "ref_losses": ref_losses,
        "loss_rel": loss_rel,
        "weight_rel": errors[worst],
        "worst_param": worst,
        "weight_in_grads": in_grads[worst_in_grads],
        "worst_param_in_grads": worst_in_grads,
        "frozen_changed": frozen,
        "grad_rel": grad_errors[worst_grad],
        "worst_grad": worst_grad,
        "grad_errors": grad_errors,
        "grad_placements": placements,
        "unreduced_grad_rel": unreduced_grad_rel,
        "unreduced_weight_in_grads": unreduced_in_grads,
        "recipe": dict(global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN, steps=STEPS, lr=LR, eps=EPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, help="FileStore path (rendezvous)")
    parser.add_argument("--out", required=True, help="JSON results, written by rank 0")
    parser.add_argument("--configs", required=True, help="comma-separated names of CONFIGS")
    parser.add_argument("--hf", default=None, help="HF checkpoint folder to start from")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo",
        init_method=f"file://{args.store}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    batches = make_batches()
    results = {}
    for name in args.configs.split(","):
        try:
            results[name] = run_config(name, batches, args.hf)
        except Exception:  # report it and stop: the other ranks cannot go on with the collectives
            results[name] = {"error": traceback.format_exc()}
            break
    if rank == 0 or any("error" in r for r in results.values()):
        Path(f"{args.out}.rank{rank}" if rank else args.out).write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
