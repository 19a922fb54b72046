"""Rendering Slurm jobs: the batch script, one run's srun step, docker, refused values."""

import shlex
import subprocess
from pathlib import Path

import pytest

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
