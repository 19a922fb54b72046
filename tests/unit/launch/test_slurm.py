"""Rendering Slurm jobs: the batch script, one run's srun step, docker, refused values."""

import shlex
import subprocess
from pathlib import Path

import pytest

from trainperf.launch import slurm
from trainperf.launch.slurm import (
    SLURM_OPTIONS,
    SlurmOptions,
    docker_command,
    render_sbatch,
    srun_step,
)
from trainperf.launch.torchrun import without_options

NASTY = "/data/my runs/$(rm -rf ~) `id` 'q' \"dq\" ;ls"


def test_batch_script_quotes_every_value_and_is_valid_bash(tmp_path: Path) -> None:
    opts = SlurmOptions(
        nodes=2,
        gpus_per_node=8,
        time_limit="1-02:00:00",
        partition="gpu",
        account="mlperf",
        workdir=Path("/work dir"),
        python="/opt/py 3/python",
    )
    args = ["run", "llama31_8b", "--results", NASTY, "--nproc", "8", "train.lr=1e-4"]
    script = render_sbatch(opts, args)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=1-02:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --account=mlperf"):  # fmt: skip
        assert line in script.splitlines()
    exec_line = script.splitlines()[-1]
    assert exec_line.startswith("exec ")
    # the shell hands the exact arguments to Python: nothing is expanded or executed
    words = shlex.split(exec_line[len("exec ") :])
    assert words == ["/opt/py 3/python", "-m", "trainperf", *args, "--in-slurm-job"]
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_srun_step_runs_torchrun_on_every_node_with_one_rendezvous() -> None:
    opts = SlurmOptions(
        nodes=4,
        gpus_per_node=8,
        container="nvcr.io#pytorch:25.01",
        container_mounts=["/data:/data"],
        workdir=Path("/w"),
        python="python3",
    )
    cmd = srun_step(opts, ["run", "--seed", "3"], head="node001", rendezvous_id="42-0")
    assert cmd[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--container-image=nvcr.io#pytorch:25.01" in cmd
    assert "--container-mounts=/data:/data" in cmd and "--container-workdir=/w" in cmd
    for flag in ("--nnodes=4", "--nproc-per-node=8", "--rdzv-backend=c10d",
                 "--rdzv-endpoint=node001:29500", "--rdzv-id=42-0"):  # fmt: skip
        assert flag in cmd
    assert cmd[-5:] == ["-m", "trainperf", "run", "--seed", "3"]


def test_docker_equivalent() -> None:
    opts = SlurmOptions(gpus_per_node=8, container="img:1", container_mounts=["/d:/d"])
    cmd = docker_command(opts, ["run", "--results", "r"])
    assert cmd[:3] == ["docker", "run", "--rm"] and "--volume=/d:/d" in cmd and "img:1" in cmd
    assert "--nproc-per-node=8" in cmd and cmd[-3:] == ["run", "--results", "r"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nodes": 0}, r"--nodes\(0\)"),
        ({"time_limit": "2 hours"}, "not a Slurm time limit"),
        ({"partition": "gpu; rm"}, "not a Slurm name"),
        ({"container_mounts": ["/data"]}, "SRC:DST"),
    ],
)
def test_bad_values_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlurmOptions(**options)


def test_launcher_options_are_stripped_from_the_steps() -> None:
    argv = ["run", "--launcher", "slurm", "--nodes=2", "--nproc", "8", "--time", "1:00:00",
            "--dry-run", "--results", "r", "--in-slurm-job", "x.y=1"]  # fmt: skip
    assert without_options(argv, SLURM_OPTIONS) == ["run", "--results", "r", "x.y=1"]


@pytest.mark.parametrize(
    ("device", "scale", "gres", "gpus", "reason"),
    [
        ("cpu", "full", ["gpu:8"], False, "no GPUs requested: train.device=cpu"),
        ("cuda", "tiny", None, True, "GPUs requested: train.device=cuda"),
        ("auto", "tiny", ["(null)"], False, "partition cpu has gres (null) (sinfo -o %G); the"),
        ("auto", "tiny", ["gpu:h100:8(S:0-1)"], True, "partition cpu has gres gpu:h100:8"),
        ("auto", "tiny", None, False, "the tiny scale with train.device=auto and sinfo could"),
        ("auto", "full", None, True, "GPUs requested: the full scale (sinfo could not say"),
    ],
)
def test_gpus_are_requested_only_when_the_ranks_will_use_them(
    monkeypatch, device, scale, gres, gpus, reason
) -> None:
    monkeypatch.setattr(slurm, "partition_gres", lambda partition: gres)
    request = slurm.gpu_request(device=device, scale=scale, partition="cpu")
    assert request.gpus is gpus and reason in request.reason
    opts = SlurmOptions(gpus_per_node=2, gpus=request.gpus, gpus_reason=request.reason)
    script = render_sbatch(opts, ["run"])
    assert ("#SBATCH --gpus-per-node=2" in script) is gpus
    assert f"# {request.reason}\n" in script


def test_a_job_about_the_gpus_asks_for_them_unless_the_partition_has_none(monkeypatch) -> None:
    doctor = "the doctor checks the GPUs"
    monkeypatch.setattr(slurm, "partition_gres", lambda partition: None)
    request = slurm.gpu_request(device="auto", scale="tiny", partition=None, purpose=doctor)
    assert request.gpus and request.reason.startswith(f"GPUs requested: {doctor}")
    monkeypatch.setattr(slurm, "partition_gres", lambda partition: ["(null)"])
    request = slurm.gpu_request(device="auto", scale="tiny", partition=None, purpose=doctor)
    assert not request.gpus and "has gres (null)" in request.reason


def test_partition_gres_reads_sinfo(monkeypatch) -> None:
    out = "debug* (null)\ngpu gpu:h100:8(S:0-1)\ngpu gpu:h100:4\n"
    monkeypatch.setattr(
        slurm.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, out, "")
    )
    assert slurm.partition_gres(None) == ["(null)"]
    assert slurm.partition_gres("gpu") == ["gpu:h100:8(S:0-1)", "gpu:h100:4"]
    assert slurm.partition_gres("other") is None
