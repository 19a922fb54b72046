"""The run header discloses the layout as it was built, on several ranks (gloo, CPU).

Mandatory from ruleset 6.1.0: ``tensor|pipeline|context|expert_parallelism``, ``micro_batch_size``
and the lowest precision of the linear layers, attention and communication. Each layout's
Trainer is built on 2 or 4 processes as ``trainperf run --nproc N`` builds it; the values must be
the config's (tp, cp, ep) and the precisions the layout really uses: FSDP's all-gather carries the
parameter dtype (bfloat16 here) or float8 with tensorwise float8, its reduce-scatter float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_header_worker.py")

# name -> (overrides, tp, cp, (linear, attn, comm), gradient accumulation at GBS 4, micro 1)
TWO_RANKS = {
    "fsdp2_fp32": ([], 1, 1, ("fp32", "fp32", "fp32"), 2),
    "fsdp2_bf16": (["train.dtype=bfloat16"], 1, 1, ("bfloat16", "bfloat16", "bfloat16"), 2),
    "tp2": (["parallel.tp=2"], 2, 1, ("fp32", "fp32", "fp32"), 4),
    "cp2": (["parallel.cp=2"], 1, 2, ("fp32", "fp32", "fp32"), 4),
    "fsdp2_float8": (["parallel.float8=tensorwise"], 1, 1, ("fp8", "fp32", "fp8"), 2),
    # the debug gpt-oss (gpt_oss_20b's spec) with its experts split over the 2 ranks
    "moe_ep2": (["parallel.ep=2"], 1, 1, ("fp32", "fp32", "fp32"), 2),
}
EXPERT_PARALLEL = {"moe_ep2": 2}
"""Layouts whose expert_parallelism is not 1."""
FOUR_RANKS = {
    "cp2_tp2": (["parallel.cp=2", "parallel.tp=2"], 2, 2, ("fp32", "fp32", "fp32"), 4),
    "fsdp2_tp2_bf16": (
        ["parallel.tp=2", "train.dtype=bfloat16"], 2, 1, ("bfloat16",) * 3, 2,
    ),
}  # fmt: skip


def launch(tmp: Path, world: int, layouts: dict) -> dict:
    env = dict(os.environ, WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp / "report.json"
    spec = json.dumps({name: case[0] for name, case in layouts.items()})
    cmd = [sys.executable, str(WORKER), "--store", str(tmp / "store"), "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*cmd, "--layouts", spec], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for r in range(world)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0] for p in procs]
    if not out.exists() or any(p.returncode for p in procs):
        pytest.fail(f"ranks exited {[p.returncode for p in procs]}:\n" + "\n".join(logs)[-4000:])
    return json.loads(out.read_text())


@pytest.mark.parametrize("world, layouts", [(2, TWO_RANKS), (4, FOUR_RANKS)])
def test_disclosure_keys_are_the_layout_as_built(tmp_path: Path, world: int, layouts) -> None:
    pytest.importorskip("torchao")
    report = launch(tmp_path, world, layouts)
    for name, (_, tp, cp, (linear, attn, comm), accumulation) in layouts.items():
        got = report[name]
        assert "error" not in got, got.get("error")
        assert (got["tensor_parallelism"], got["context_parallelism"]) == (tp, cp), name
        assert got["pipeline_parallelism"] == 1
        assert got["expert_parallelism"] == EXPERT_PARALLEL.get(name, 1), name
        assert got["micro_batch_size"] == 1
        assert got["gradient_accumulation_steps"] == accumulation, name
        precisions = tuple(
            got[f"lowest_numerical_precision_in_{k}"] for k in ("linear", "attn", "comm")
        )
        assert precisions == (linear, attn, comm), name
        assert got["config_filename"] == "config_0.json"
