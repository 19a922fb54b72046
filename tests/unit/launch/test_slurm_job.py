"""Inside a run's sbatch job: one srun step per run, without the launcher's options."""

from pathlib import Path

from rich.console import Console

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.launch import slurm, slurm_job
from trainperf.launch.local import RunRequest, launch_run
from trainperf.launch.slurm import SlurmRequest

QUIET = Console(quiet=True)


def test_one_run_is_one_srun_step_over_every_node(tmp_path: Path, monkeypatch) -> None:
    steps: list[list[str]] = []
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setattr(slurm_job, "job_head_node", lambda: "node7")
    monkeypatch.setattr(slurm_job, "wait_for_run", lambda cmd, **_: steps.append(cmd) or 0)
    cfg = apply_overrides(get_default_config("llama31_8b", "tiny"), ["train.device=cpu"])
    argv = ["run", "--launcher", "slurm", "--nodes", "2", "--nproc", "4", "--seed", "5",
            "--results", str(tmp_path), "--in-slurm-job", "train.device=cpu"]  # fmt: skip
    request = RunRequest(
        argv=argv, nproc=4, seed=5, slurm=SlurmRequest("slurm", nodes=2, in_slurm_job=True)
    )
    assert launch_run(cfg, request, console=QUIET, out=QUIET) == 0
    (step,) = steps
    assert step[:2] == ["srun", "--nodes=2"] and "--rdzv-endpoint=node7:29500" in step
    assert "--rdzv-id=41-None" in step and "--nproc-per-node=4" in step
    assert step[step.index("trainperf") + 1 :] == [
        "run", "--results", str(tmp_path), "train.device=cpu"
    ]  # fmt: skip


def test_dry_run_prints_the_script_and_a_docker_runtime_the_command(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(slurm, "partition_gres", lambda partition: ["gpu:h100:8"])
    cfg = apply_overrides(get_default_config("llama31_8b", "tiny"),
                          [f"log.results_dir={tmp_path}"])  # fmt: skip
    argv = ["run", "--launcher", "slurm", "--dry-run", "--nproc", "2"]
    dry = RunRequest(argv=argv, nproc=2, slurm=SlurmRequest("slurm", dry_run=True))
    assert launch_run(cfg, dry, console=QUIET, out=Console()) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --gpus-per-node=2" in script
    assert script.splitlines()[-1].endswith("run --launcher slurm --nproc 2 --in-slurm-job")
    docker = RunRequest(argv=argv, nproc=2, slurm=SlurmRequest("slurm", container_runtime="docker"))
    assert launch_run(cfg, docker, console=QUIET, out=Console()) == 0
    line = capsys.readouterr().out
    assert line.startswith("docker run --rm") and line.rstrip().endswith("-m trainperf run")
    assert not list(tmp_path.iterdir())  # nothing written, nothing submitted
