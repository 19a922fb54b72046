"""`trainperf run --launcher slurm` on a real (one-node, localhost) Slurm cluster.

A two-run set of the tiny benchmark, 2 ranks (torchrun, gloo) per run, submitted with sbatch into
a results folder whose name has spaces, quotes and a `$(...)`: the job runs, the logs land in
that folder, the score is printed, and nothing in the name was executed.

The cluster: Debian's slurmctld, slurmd and munge, configuration in a temporary folder, daemons
as root (CI's container; .ci/run installs the packages), shut down afterwards. Skipped where the
Slurm binaries are not installed.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def missing_binaries() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path) -> Path:
    host = socket.gethostname()
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=trainperftest",
                f"SlurmctldHost={host}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"StateSaveLocation={folder}/state",
                f"SlurmdSpoolDir={folder}/spool",
                f"SlurmctldPidFile={folder}/slurmctld.pid",
                f"SlurmdPidFile={folder}/slurmd.pid",
                f"SlurmctldLogFile={folder}/log/slurmctld.log",
                f"SlurmdLogFile={folder}/log/slurmd.log",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    return conf


def _munge_works() -> bool:
    enc = subprocess.run(["munge", "-n"], capture_output=True)
    if enc.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=enc.stdout, capture_output=True).returncode == 0


def start(folder: Path) -> dict[str, str]:
    """Start munge (if needed), slurmctld and slurmd; returns the environment for clients."""
    if not _munge_works():
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["munged", "--force"], capture_output=True)
        for _ in range(50):
            if _munge_works():
                break
            time.sleep(0.1)
    env = {**os.environ, "SLURM_CONF": str(write_config(folder))}
    subprocess.run(["slurmctld"], env=env, check=True)
    subprocess.run(["slurmd"], env=env, check=True)
    for _ in range(100):
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if out.stdout.strip() == "idle":
            return env
        time.sleep(0.2)
    logs = "\n".join(p.read_text()[-2000:] for p in (folder / "log").glob("*.log"))
    stop(folder, env)
    raise RuntimeError(f"the test Slurm cluster did not come up:\n{logs}")


def stop(folder: Path, env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
    for name in ("slurmd", "slurmctld"):
        pid = folder / f"{name}.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass


def wait_for_job(job_id: str, env: dict[str, str], *, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id], env=env, capture_output=True, text=True
        )
        if job_id not in out.stdout:
            return
        time.sleep(1)
    subprocess.run(["scancel", job_id], env=env)
    raise TimeoutError(f"Slurm job {job_id} still running after {timeout_s} s")


pytestmark = pytest.mark.skipif(
    bool(missing_binaries()),
    reason=f"Slurm not installed ({', '.join(missing_binaries())} missing)",
)
SHORT = ["--no-progress", "train.device=cpu", "train.max_steps=4", "train.warmup_steps=1",
         "train.micro_batch_size=8"]  # fmt: skip


@pytest.fixture
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    env = start(folder)
    yield env
    stop(folder, env)


def test_run_set_through_sbatch(trainperf, mllog, cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    canary = tmp_path / "executed"
    results = tmp_path / f"runs and $(touch {canary}) 'it'"
    args = ["run", "--launcher", "slurm", "--nproc", "2", "--nexp", "2", "--seed", "7",
            "--results", str(results), *SHORT]  # fmt: skip
    dry = trainperf(*args, "--dry-run", check=True)
    assert dry.stdout.startswith("#!/bin/bash") and "#SBATCH --nodes=1" in dry.stdout
    assert not results.exists()  # a dry run writes nothing
    proc = trainperf(*args, check=True)
    job = re.search(r"submitted Slurm job (\d+)", proc.stdout).group(1)
    wait_for_job(job, cluster, timeout_s=400)
    out = (results / "slurm" / f"slurm-{job}.out").read_text()
    assert "Score" in out and "run 2 of 2: result_1.txt, seed 8" in out, out[-3000:]
    for i, seed in ((0, 7), (1, 8)):
        records = mllog(results / f"result_{i}.txt")
        keys = [r["key"] for r in records]
        assert keys.count("run_stop") == 1, out[-3000:]
        assert next(r["value"] for r in records if r["key"] == "seed") == seed
    assert job in (results / "slurm" / "jobs.txt").read_text()
    assert not canary.exists()


def test_a_cpu_cluster_gets_a_job_without_gpus(trainperf, cluster, tmp_path, monkeypatch) -> None:
    """train.device=auto (the tiny scale's default) on a partition without GPU gres: the job
    asks for none (sbatch would refuse --gpus-per-node there), and its script says why."""
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    args = ["run", "llama31_8b", "--scale", "tiny", "--nexp", "2", "--launcher", "slurm",
            "--results", str(tmp_path / "runs")]  # fmt: skip
    dry = trainperf(*args, "--dry-run", check=True)
    assert "--gpus-per-node" not in dry.stdout
    assert "# no GPUs requested: the default partition has gres (null) (sinfo -o %G)" in dry.stdout
    proc = trainperf(*args, check=True)
    job = re.search(r"submitted Slurm job (\d+)", proc.stdout).group(1)
    subprocess.run(["scancel", job], env=cluster, check=True)
