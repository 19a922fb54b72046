"""Expert parallel matches one process: the `debug` gpt-oss (8 experts, top-2, sinks, biases)
with its experts split over ep ranks (FSDP over the rest), loaded sharded from an HF checkpoint
and trained 3 AdamW steps (the trainer's recipe and its mesh-aware grad-norm clip) on a global
batch of 4 split over the ranks, against one process on the whole batch.

Bounds as in test_parity.py (float32 rounding of the longest chain of sums, 2 LAMBDA sqrt(n) u,
and Adam's lr / eps gain for the weights): both runs add the same terms in other orders and
groups (each rank's tokens through its experts, then the all-to-all back and FSDP's reduction).
A wrong scale of the experts' gradients (their sum over the ranks not divided by the world, or
divided by the ep group only) is off by a factor of 2 or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_ep_worker.py")
TIMEOUT_S = 400


def launch(tmp: Path, world_size: int, layouts: list[str]) -> dict:
    env = dict(os.environ, WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp / "report.json"
    cmd = [sys.executable, str(WORKER), "--store", str(tmp / "store"), "--out", str(out)]
    cmd += ["--layouts", ",".join(layouts)]
    logs = [tmp / f"rank{r}.log" for r in range(world_size)]
    procs = []
    for rank, log in enumerate(logs):
        with open(log, "w") as f:
            rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(cmd, env=rank_env, stdout=f, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    reports = [json.loads(f.read_text()) for f in tmp.glob("report.json*")]
    failed = [rep["error"]["error"] for rep in reports if "error" in rep]
    if failed or not out.exists() or any(p.returncode for p in procs):
        tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
        pytest.fail(f"ranks exited {[p.returncode for p in procs]}; {failed[:1]}\n{tails}")
    return json.loads(out.read_text())


def bounds(rounding_bound) -> tuple[float, float]:
    """(losses and first gradients, weights in units of their largest gradient)."""
    from trainperf.models.gpt_oss.model import get_gpt_oss_config

    cfg = get_gpt_oss_config("debug")
    # the Llama chain of sums with the expert width as the feed-forward's (top_k experts add
    # top_k terms per token, a rounding of its own next to hundreds)
    shape = SimpleNamespace(dim=cfg.dim, n_layers=cfg.n_layers, head_dim=cfg.head_dim,
                            ffn_dim=cfg.moe_dim * cfg.top_k, vocab_size=cfg.vocab_size)  # fmt: skip
    bound = rounding_bound(shape, tokens=4 * 32, seq_len=32)
    return bound, 2 * 3 * 1e-3 / 1e-3 * bound  # 2 steps lr / eps x bound


def check(result: dict, rounding_bound) -> None:
    bound, adam_bound = bounds(rounding_bound)
    assert result["moved"] > 1e-3, f"training barely moved the weights: {result}"
    assert result["loss_rel"] <= bound, (result["losses"], result["ref_losses"], bound)
    assert result["grad_rel"] <= bound, f"gradients: {result['grad_rel']:.3g} > {bound:.3g}"
    assert result["weight_in_grads"] <= adam_bound, result
    assert "Shard(dim=0)" in result["placements"], result["placements"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return launch(tmp_path_factory.mktemp("ep2"), 2, ["ep2", "ep2_compile_full_ac"])


@pytest.mark.parametrize("layout", ["ep2", "ep2_compile_full_ac"])
def test_experts_split_over_two_ranks_match_one_process(two_ranks, layout, rounding_bound):
    result = two_ranks[layout]
    assert result["local_experts"] == 4  # 8 experts over 2 ranks
    check(result, rounding_bound)


def test_four_ranks_ep4_and_fsdp_over_ep2_match_one_process(tmp_path: Path, rounding_bound):
    report = launch(tmp_path, 4, ["ep4", "edp2_ep2"])
    assert report["ep4"]["local_experts"] == 2  # 8 experts over 4 ranks
    # 4 experts per ep rank, whose rows FSDP splits over the 2 edp ranks that hold them
    assert report["edp2_ep2"]["local_experts"] == 2
    assert (
        report["edp2_ep2"]["placements"] == "(Shard(dim=0), Shard(dim=0))"
        or "Strided" in (report["edp2_ep2"]["placements"])
    )
    for layout in ("ep4", "edp2_ep2"):
        check(report[layout], rounding_bound)
