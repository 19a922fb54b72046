"""A/B of where torch.compile goes with full activation checkpointing, through `trainperf perf`.

    python bench/compile_scope.py outside|inside  llama2_70b_lora --preset 1gpu ... --json

outside (trainperf's default): the checkpoint-wrapped block is compiled, and AOTAutograd's
partitioner decides what the checkpointed region keeps. inside: the block is compiled inside
its checkpoint wrapper, which stays eager (`apply_compile(inside_checkpoint=True)`). One
process only (the switch is made in this process before `trainperf perf` runs).
"""

import functools
import sys

from trainperf import cli
from trainperf.parallel import compile as compile_mod
from trainperf.parallel import parallelize

scope, argv = sys.argv[1], sys.argv[2:]
if scope not in ("outside", "inside"):
    raise SystemExit(f"first argument: outside or inside, not {scope!r}")
if scope == "inside":
    parallelize.apply_compile = functools.partial(compile_mod.apply_compile, inside_checkpoint=True)
sys.exit(cli.main(["perf", *argv]))
