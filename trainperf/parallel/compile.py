"""torch.compile per TransformerBlock.

Each block is compiled in place (``nn.Module.compile``: parameter names and FSDP units are left
as they are) with ``fullgraph=True``, so a graph break is an error instead of a silent slowdown.
All blocks share one compiled graph (they have the same code and shapes), so the compile cost is
paid once, in the first step (the warm-up of ``trainperf perf``; inside ``init`` for a run it
would be outside the rules' timed region only if done before ``run_start``, see trainer.warm_up).
Inductor fuses the norms, RoPE, SwiGLU's activation and the residual adds into a few kernels;
the matmuls and attention stay on cuBLAS and the flash kernels.
"""

from __future__ import annotations

from torch import nn


def apply_compile(
    blocks: list[nn.ModuleDict], *, inside_checkpoint: bool = False, fullgraph: bool = True
) -> int:
    """Compile every block of the containers `blocks` in place; returns the number compiled.

    inside_checkpoint: with full activation checkpointing, compile the block inside its
    checkpoint wrapper, which then stays eager (its saved-tensor hooks drop whatever the
    compiled forward saves and recompute it), instead of compiling the wrapper, where
    AOTAutograd's partitioner chooses what the checkpointed region keeps.
    fullgraph False: graph breaks allowed (expert parallel's all-to-all needs its split sizes
    on the host, and its experts are an FSDP unit of their own inside the block).
    """
    count = 0
    for container in blocks:
        for block in container.values():
            inner = getattr(block, "_checkpoint_wrapped_module", None)
            target = inner if inside_checkpoint and inner is not None else block
            target.compile(fullgraph=fullgraph)
            count += 1
    return count
