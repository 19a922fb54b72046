"""apply_tp / apply_fsdp / parallelize_model on a one-rank mesh: the plans fit the model, the
forward is unchanged, and what cannot be sharded says so. Multi-rank parity: tests/distributed."""

from __future__ import annotations

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.tensor import DTensor

from trainperf.models.llama.model import Llama, get_llama_config
from trainperf.models.llama.parallelize import parallel_plan
from trainperf.parallel import ParallelDims, apply_fsdp, apply_tp, parallelize_model


def tp_plan(model: Llama, sequence_parallel: bool = True):
    return parallel_plan(model).tensor_parallel(sequence_parallel)


def reference() -> tuple[Llama, torch.Tensor]:
    torch.manual_seed(0)
    model = Llama(get_llama_config("debug"))
    model.init_weights()
    tokens = torch.randint(
        0, model.cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1)
    )
    return model, tokens


def build_on_meta_and_load(parallelize, state: dict) -> Llama:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    parallelize(model)
    model.to_empty(device="cpu")
    model.init_weights()  # the RoPE table; the weights are then overwritten
    set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True))
    return model


@pytest.mark.parametrize("sequence_parallel", [True, False])
def test_tp_of_one_keeps_the_forward(one_rank_group: None, sequence_parallel: bool) -> None:
    ref, tokens = reference()
    mesh = ParallelDims().build_mesh("cpu")
    model = build_on_meta_and_load(
        lambda m: apply_tp(m, mesh["tp"], tp_plan(m, sequence_parallel)), ref.state_dict()
    )
    assert all(isinstance(p, DTensor) for p in model.parameters())  # clip_grad_norm_ needs it
    logits = model(tokens)
    assert type(logits) is torch.Tensor and logits.shape == (2, 16, model.cfg.vocab_size)
    torch.testing.assert_close(logits, ref(tokens), rtol=1e-5, atol=1e-5)


def test_fsdp_of_one_keeps_the_forward(one_rank_group: None) -> None:
    ref, tokens = reference()
    mesh = ParallelDims().build_mesh("cpu")
    model = build_on_meta_and_load(
        lambda m: apply_fsdp(m, list(m.layers.values()), mesh["dp_shard"]), ref.state_dict()
    )
    torch.testing.assert_close(model(tokens), ref(tokens), rtol=1e-5, atol=1e-5)


def test_parallelize_model_with_one_rank_changes_nothing(one_rank_group: None) -> None:
    dims = ParallelDims()
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    applied = parallelize_model(model, parallel_plan(model), dims, dims.build_mesh("cpu"))
    assert not any(isinstance(p, DTensor) for p in model.parameters())
    assert (applied.fsdp, applied.float8_linears, applied.float8_all_gather) == (False, 0, False)


def test_tp_places_lora_adapters_with_their_bases(one_rank_group: None) -> None:
    """Column-parallel bases (wq, wk, wv) keep A replicated and split B like themselves; the
    row-parallel wo splits A like itself and keeps B replicated; frozen parameters stay frozen.
    (Numerics on 2 and 4 ranks: tests/distributed, tp2_lora*.)"""
    lora = pytest.importorskip("trainperf.models.lora")
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    lora.apply_lora(model, lora.LoRAConfig(targets=("wq", "wk", "wv", "wo")))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    apply_tp(model, ParallelDims().build_mesh("cpu")["tp"], tp_plan(model))
    attn = model.layers["0"].attention
    placements = {
        name: str(p.placements) for name, p in attn.named_parameters() if isinstance(p, DTensor)
    }
    assert placements["wq.weight"] == placements["wq.lora_b.weight"] == "(Shard(dim=0),)"
    assert placements["wq.lora_a.weight"] == "(Replicate(),)"
    assert placements["wo.weight"] == placements["wo.lora_a.weight"] == "(Shard(dim=1),)"
    assert placements["wo.lora_b.weight"] == "(Replicate(),)"
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen


def test_tp_refuses_a_wrapped_linear_it_has_no_plan_for(one_rank_group: None) -> None:
    with torch.device("meta"):
        model = Llama(get_llama_config("debug"))
    attn = model.layers["0"].attention
    attn.wq = torch.nn.Sequential(attn.wq)  # not a LoRALinear: no plan splits it correctly
    with pytest.raises(ValueError, match=r"cannot shard layers\.0\.attention\.wq \(Sequential\)"):
        apply_tp(model, ParallelDims().build_mesh("cpu")["tp"], tp_plan(model))
