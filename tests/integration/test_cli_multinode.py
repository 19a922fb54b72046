"""Multi-node torchrun: the same `trainperf run` on two "nodes" (two processes on localhost)
meets at one c10d rendezvous; one run, world size 2, one log."""

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_one_rendezvous(mllog, tmp_path: Path) -> None:
    results = tmp_path / "runs"
    cmd = [sys.executable, "-m", "trainperf", "run", "--nnodes", "2", "--nproc", "1",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "t", "--results",
           str(results), "--seed", "2", "--no-progress", "train.max_steps=4",
           "train.warmup_steps=1", "train.micro_batch_size=8"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in nodes]
    assert sorted(p.name for p in results.iterdir()) == ["config_0.json", "result_0.txt"]
    records = mllog(results / "result_0.txt")
    platform = next(r["value"] for r in records if r["key"] == "submission_platform")
    assert platform.startswith("2x"), outputs
    assert [r["key"] for r in records].count("run_stop") == 1


def test_nnodes_needs_an_endpoint_and_sets_need_slurm(trainperf) -> None:
    proc = trainperf("run", "--nnodes", "2")
    assert proc.returncode == 2 and "--rdzv-endpoint" in proc.stderr
    proc = trainperf("run", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--nexp", "3")
    assert proc.returncode == 2 and "--launcher slurm" in proc.stderr
