"""AdamW's parameter groups: decay on matrices only (Megatron), biases never, and one group per
device mesh (expert parallel's experts beside the rest) so a foreach / fused update never mixes
meshes."""

from __future__ import annotations

import torch

from trainperf.config import TrainConfig
from trainperf.models.gpt_oss.model import GptOss, get_gpt_oss_config
from trainperf.train.optim import build_optimizer


def test_gpt_oss_biases_sinks_and_norms_do_not_decay() -> None:
    model = GptOss(get_gpt_oss_config("debug"))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] for p in g["params"]}
    kept = {names[id(p)] for g in opt.param_groups if not g["weight_decay"] for p in g["params"]}
    assert "layers.0.moe.experts.gate_up" in decayed and "layers.0.attention.wq.weight" in decayed
    # (experts, width) biases are 2-D but biases all the same; sinks and norms are 1-D
    assert {"layers.0.moe.experts.gate_up_bias", "layers.0.attention.sinks"} <= kept
    assert "norm.weight" in kept and not [n for n in decayed if n.endswith("bias")]
    assert len(decayed) + len(kept) == len(names)
    assert all(g["params"] for g in opt.param_groups)
    assert isinstance(opt, torch.optim.AdamW)
