"""A diffusers checkpoint loads into the `debug` Flux sharded by FSDP2 over 2 gloo ranks (each
rank reading only its rows), trains like one process, and saves back the same tensors.

The ranks are separate processes (`_flux_worker.py`) meeting through a FileStore; rank 0
writes a JSON report. About 10 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainperf.models.flux.hf import save_diffusers_checkpoint
from trainperf.models.flux.model import Flux, get_flux_config

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_flux_worker.py")
WORLD = 2
TOL = 1e-5  # float32: 2 samples per rank against 4 in one process (other matmul blockings)


def test_sharded_load_train_and_save_match_one_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Flux(get_flux_config("debug"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.2)  # nothing left at the init's zeros
    ckpt = save_diffusers_checkpoint(model, tmp_path / "ckpt")
    env = dict(os.environ, WORLD_SIZE=str(WORLD), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp_path / "report.json"
    cmd = [sys.executable, str(WORKER), "--store", str(tmp_path / "store"), "--ckpt", str(ckpt)]
    cmd += ["--out", str(out)]
    logs = [tmp_path / f"rank{r}.log" for r in range(WORLD)]
    procs = []
    for rank, log in enumerate(logs):
        with open(log, "w") as f:
            rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(cmd, env=rank_env, stdout=f, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = [json.loads(f.read_text()) for f in tmp_path.glob("report.json*") if f.is_file()]
    if any(codes) or not out.exists() or any("error" in r for r in reports):
        tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
        pytest.fail(f"ranks exited {codes}; {[r.get('error') for r in reports]}\n{tails}")
    result = json.loads(out.read_text())
    assert result["load_equal"], "the sharded load differs from the full weights"
    assert result["out_rel"] <= TOL, result
    assert result["grad_rel"] <= TOL, result
    assert result["saved_equal"], "the gathered save differs from the checkpoint loaded"
