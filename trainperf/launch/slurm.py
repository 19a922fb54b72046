"""``trainperf run ... --launcher slurm``: one sbatch job that runs the runs on its nodes.

The submission's ``run.sub`` + ``config_<system>.sh`` + sed-patched ``srun`` lines become:

    trainperf run llama31_8b --scale full --data-dir /data/c4 --launcher slurm --nodes 2 \\
        --nproc 8 --time 04:00:00 --partition gpu --nexp 10 --results runs/h200x16

which renders a batch script (``--dry-run`` prints it and stops), writes it beside the results
(``<results>/slurm/``), submits it with ``sbatch --parsable`` and records the job id. The script
runs ``trainperf run`` once, on the first node of the allocation, with ``--in-slurm-job``; there
each run of the set becomes one ``srun`` step: one task per node, each starting
``torch.distributed.run`` with a c10d rendezvous on the first node, so every node runs
``--nproc`` ranks. Commands are argument lists end to end (Python builds them, ``shlex.join``
writes the one line the script executes): a path with spaces, quotes or ``$(...)`` is data.

``--container IMAGE`` adds pyxis/enroot's ``--container-image``, ``--container-mounts`` and
``--container-workdir`` to each ``srun`` step; ``--container-runtime docker`` only prints the
equivalent ``docker run`` command for one node.

This module renders and submits; ``slurm_job.py`` holds what a run does with it (the submission
of ``trainperf run`` and the step loop inside the job), ``doctor/launch.py`` the doctor's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from trainperf.atomic import write_text_atomic
from trainperf.launch.torchrun import without_options

RENDEZVOUS_PORT = 29500
_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")  # sbatch --time forms: MM, HH:MM:SS, D-HH...
_NAME = re.compile(r"^[\w.,:@%+=-]+$")  # Slurm partition / account / job names: no blanks


SLURM_OPTIONS = {
    "--nnodes": True, "--rdzv-endpoint": True, "--rdzv-id": True,
    "--launcher": True, "--nodes": True, "--time": True, "--partition": True, "--account": True,
    "--dry-run": False, "--container": True, "--container-mounts": True,
    "--container-runtime": True, "--in-slurm-job": False, "--nproc": True,
}  # fmt: skip
"""The launching command's options that the job's steps must not see (name -> takes a value)."""


@dataclass(frozen=True)
class SlurmRequest:
    """The Slurm options of ``run`` and ``doctor`` as given; checked when a job is built."""

    launcher: str = "local"
    """local: this machine; slurm: an sbatch job."""
    nodes: int = 1
    time_limit: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    dry_run: bool = False
    """Print the batch script, submit nothing."""
    container: str | None = None
    container_mounts: str = ""
    """pyxis --container-mounts: SRC:DST[:FLAGS],..."""
    container_runtime: str = "pyxis"
    """docker: print the equivalent ``docker run`` command instead of a batch script."""
    in_slurm_job: bool = False
    """This process is the job's own command, on the first node of the allocation."""

    @property
    def submits(self) -> bool:
        """--launcher slurm from outside the job: render and submit (or print) a job."""
        return self.launcher == "slurm" and not self.in_slurm_job


@dataclass
class SlurmOptions:
    nodes: int = 1
    gpus_per_node: int = 1
    """Ranks per node (torchrun --nproc-per-node); GPUs asked per node when `gpus` is set."""
    gpus: bool = True
    """Ask Slurm for GPUs (--gpus-per-node); false on CPU clusters (the tiny scale, tests)."""
    gpus_reason: str = ""
    """Why GPUs are or are not asked for (`gpu_request`), a comment line of the script."""
    time_limit: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    job_name: str = "trainperf"
    container: str | None = None
    container_mounts: list[str] = field(default_factory=list)
    workdir: Path = field(default_factory=Path.cwd)
    python: str = sys.executable
    """The Python that runs trainperf on the nodes (python3 inside a container)."""

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError(
                f"--nodes({self.nodes}) and --nproc({self.gpus_per_node}) must be >= 1"
            )
        if not _TIME.match(self.time_limit):
            raise ValueError(
                f"--time {self.time_limit!r} is not a Slurm time limit; use HH:MM:SS, MM or "
                "D-HH:MM:SS"
            )
        for flag, value in (("--partition", self.partition), ("--account", self.account),
                            ("job name", self.job_name)):  # fmt: skip
            if value is not None and not _NAME.match(value):
                raise ValueError(
                    f"{flag} {value!r} is not a Slurm name (letters, digits, . , : @ % + = - _)"
                )
        for mount in self.container_mounts:
            if ":" not in mount:
                raise ValueError(f"--container-mounts {mount!r} must be SRC:DST[:FLAGS]")


@dataclass(frozen=True)
class GpuRequest:
    """Whether a job asks Slurm for GPUs, and why (a comment line of the script)."""

    gpus: bool
    reason: str


def partition_gres(partition: str | None) -> list[str] | None:
    """The generic resources (``sinfo -o %G``: 'gpu:h100:8', '(null)') of the nodes of
    `partition` (None: the default one, marked * by sinfo); None when sinfo cannot tell (no
    Slurm here, the controller unreachable, no such partition)."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True,
                              timeout=15)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    gres = []
    for line in proc.stdout.splitlines():
        name, _, value = line.strip().partition(" ")
        if name == partition or (partition is None and name.endswith("*")):
            gres.append(value.strip())
    return gres or None


def gpu_request(
    *, device: str, scale: str, partition: str | None, purpose: str | None = None
) -> GpuRequest:
    """GPUs for a job whose ranks use train.device `device`: cpu never, cuda always; auto
    (CUDA where the node has it) as the partition's gres say, and when sinfo cannot tell,
    for every scale but tiny (which trains on CPU in minutes), or always for a job whose
    `purpose` is the GPUs themselves (the doctor's)."""
    if device == "cpu":
        return GpuRequest(False, "no GPUs requested: train.device=cpu")
    if device != "auto":
        return GpuRequest(True, f"GPUs requested: train.device={device}")
    where = f"partition {partition}" if partition else "the default partition"
    gres = partition_gres(partition)
    if gres is not None:
        has = any(g.startswith("gpu") or ",gpu" in g for g in gres)
        said = f"{where} has gres {', '.join(sorted(set(gres)))} (sinfo -o %G)"
        if has:
            return GpuRequest(True, f"GPUs requested: {said}")
        return GpuRequest(False, f"no GPUs requested: {said}; the ranks train on CPU")
    if purpose is not None:
        return GpuRequest(True, f"GPUs requested: {purpose} (sinfo could not say what {where} "
                          "has; train.device=cpu asks for none)")  # fmt: skip
    if scale == "tiny":
        return GpuRequest(False, "no GPUs requested: the tiny scale with train.device=auto and "
                          f"sinfo could not say what {where} has; train.device=cuda asks for "
                          "them")  # fmt: skip
    return GpuRequest(True, f"GPUs requested: the {scale} scale (sinfo could not say what "
                      f"{where} has; train.device=cpu asks for none)")  # fmt: skip


def slurm_options(
    request: SlurmRequest, *, gpus_per_node: int, gpus: GpuRequest, job_name: str
) -> SlurmOptions:
    """The job of `request` with ``gpus_per_node`` ranks per node (python3 in a container)."""
    container = request.container
    return SlurmOptions(
        nodes=request.nodes,
        gpus_per_node=gpus_per_node,
        gpus=gpus.gpus,
        gpus_reason=gpus.reason,
        time_limit=request.time_limit,
        partition=request.partition,
        account=request.account,
        job_name=job_name,
        container=container,
        container_mounts=[m for m in request.container_mounts.split(",") if m],
        python="python3" if container else sys.executable,
    )


def render_sbatch(opts: SlurmOptions, trainperf_args: list[str]) -> str:
    """The batch script: #SBATCH lines, then one exec of `trainperf run ... --in-slurm-job`."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={opts.job_name}"]
    lines += [f"#SBATCH --nodes={opts.nodes}", "#SBATCH --ntasks-per-node=1"]
    if opts.gpus:
        lines.append(f"#SBATCH --gpus-per-node={opts.gpus_per_node}")
    lines.append(f"#SBATCH --time={opts.time_limit}")
    for flag, value in (("partition", opts.partition), ("account", opts.account)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")  # checked: a Slurm name, no blanks
    if opts.gpus_reason:  # after the #SBATCH lines: sbatch stops reading them at a command
        lines.append(f"# {opts.gpus_reason}")
    # sbatch reads #SBATCH lines itself (no shell): a path with spaces cannot be written there,
    # so the output file is given on the sbatch command line instead (see `submit`).
    lines += [
        "# written by trainperf run --launcher slurm; every value below is quoted for the shell",
        "set -euo pipefail",
        f"cd {shlex.quote(str(opts.workdir))}",
        "exec " + shlex.join([opts.python, "-m", "trainperf", *trainperf_args, "--in-slurm-job"]),
        "",
    ]
    return "\n".join(lines)


def container_flags(opts: SlurmOptions) -> list[str]:
    if not opts.container:
        return []
    flags = [f"--container-image={opts.container}", f"--container-workdir={opts.workdir}"]
    if opts.container_mounts:
        flags.append(f"--container-mounts={','.join(opts.container_mounts)}")
    return flags


def srun_step(
    opts: SlurmOptions, trainperf_args: list[str], *, head: str, rendezvous_id: str
) -> list[str]:
    """One run of the set as an srun step: torchrun on every node, rendezvous on `head`."""
    return [
        "srun",
        f"--nodes={opts.nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *container_flags(opts),
        opts.python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={opts.nodes}",
        f"--nproc-per-node={opts.gpus_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={head}:{RENDEZVOUS_PORT}",
        f"--rdzv-id={rendezvous_id}",
        "-m",
        "trainperf",
        *trainperf_args,
    ]


def docker_command(opts: SlurmOptions, trainperf_args: list[str]) -> list[str]:
    """The `docker run` equivalent of one node's step (printed for the user, never run)."""
    mounts = [f"--volume={m}" for m in opts.container_mounts]
    return [
        "docker", "run", "--rm", "--gpus=all", "--ipc=host", "--network=host", *mounts,
        f"--workdir={opts.workdir}", opts.container or "IMAGE",
        "python3", "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={opts.gpus_per_node}", "-m", "trainperf", *trainperf_args,
    ]  # fmt: skip


def job_head_node() -> str:
    """The first host of this job's allocation (inside a Slurm job)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError("--in-slurm-job outside a Slurm job (no SLURM_JOB_NODELIST)")
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


def submit(script: str, *, results_dir: Path) -> tuple[str, Path, Path]:
    """Write `script` into results_dir/slurm/, submit it; returns (job id, script, output)."""
    folder = results_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"trainperf-{stamp}-{os.getpid()}.sbatch"
    write_text_atomic(path, script)
    output = folder / "slurm-%j.out"
    try:
        proc = subprocess.run(
            ["sbatch", "--parsable", f"--output={output}", str(path)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise ValueError(
            "sbatch not found: run on a Slurm login node, or use --dry-run to get the script"
        ) from None
    if proc.returncode != 0:
        raise ValueError(f"sbatch refused the job ({path}): {proc.stderr.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    with open(folder / "jobs.txt", "a") as fh:
        fh.write(f"{job_id}\t{stamp}\t{path.name}\n")
    return job_id, path, Path(str(output).replace("%j", job_id))


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    script: Path
    output: Path


def print_docker_command(opts: SlurmOptions, argv: list[str], *, out: Console) -> None:
    """--container-runtime docker: the ``docker run`` line of one node's step, for the user."""
    print(shlex.join(docker_command(opts, without_options(argv, SLURM_OPTIONS))), file=out.file)


def render_or_submit(
    opts: SlurmOptions, argv: list[str], *, dry_run: bool, results_dir: Path, out: Console
) -> SubmittedJob | None:
    """The batch script that runs ``trainperf *argv`` in the job: printed on `out` (dry_run;
    returns None) or submitted from ``results_dir/slurm/``."""
    script = render_sbatch(opts, without_options(argv, {"--dry-run": False}))
    if dry_run:
        print(script, end="", file=out.file)
        return None
    job_id, path, output = submit(script, results_dir=results_dir)
    return SubmittedJob(job_id, path, output)
