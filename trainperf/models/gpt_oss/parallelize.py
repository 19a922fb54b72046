"""The gpt-oss family's parallel plan: its blocks (one FSDP, activation-checkpointing and
compile unit each), the layers float8 leaves alone, and its experts for expert parallelism.

No tensor or context parallel yet (``tensor_parallel`` None, no attention kernels to swap):
``parallel.tp`` / ``parallel.cp`` above 1 are refused before anything is built. Expert
parallelism (``parallel.ep``) shards every MoE layer's experts over the ep ranks
(``parallel/ep.py``), which needs n_experts divisible by ep.
"""

from __future__ import annotations

from trainperf.models.gpt_oss.config import GptOssConfig
from trainperf.models.gpt_oss.model import GptOss
from trainperf.parallel.plan import ParallelPlan


def tp_sizes(cfg: GptOssConfig) -> dict[str, int]:
    """What a tensor-parallel degree would have to divide (checked before tp is refused)."""
    return {"n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "dim": cfg.dim}


def parallel_plan(model: GptOss) -> ParallelPlan:
    """The plan of a (meta-built) GptOss for `parallelize_model`."""
    return ParallelPlan(
        blocks=[model.layers],
        tensor_parallel=None,
        attention_kernels=[],
        # the output's logits feed the softmax; the router's feed the top-k choice
        float8_skip=("output", "router"),
        moe_layers=[block.moe for block in model.layers.values()],
    )
