"""``trainperf run --launcher slurm``: the submission of a run or run set, and inside the job
(on the first node of the allocation, ``--in-slurm-job``) each run as one srun step over every
node (see ``slurm.py`` for the script and the step)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from trainperf.config import Config
from trainperf.launch.runset import SET_OPTIONS, plan_run_set, run_set, wait_for_run
from trainperf.launch.slurm import (
    SLURM_OPTIONS,
    SlurmOptions,
    gpu_request,
    job_head_node,
    print_docker_command,
    render_or_submit,
    slurm_options,
    srun_step,
)
from trainperf.launch.torchrun import without_options

if TYPE_CHECKING:
    from trainperf.launch.local import RunRequest


def run_options(cfg: Config, request: RunRequest) -> SlurmOptions:
    """The job of a run: ``--nproc`` ranks on each of ``--nodes`` nodes, with GPUs when its
    ranks will use them (``gpu_request``)."""
    gpus = gpu_request(device=cfg.train.device, scale=cfg.scale, partition=request.slurm.partition)
    return slurm_options(
        request.slurm,
        gpus_per_node=request.nproc,
        gpus=gpus,
        job_name=f"trainperf-{cfg.benchmark}",
    )


def submit_run(cfg: Config, request: RunRequest, *, out: Console) -> int:
    """``trainperf run --launcher slurm``: render the batch script; print it or submit it."""
    opts = run_options(cfg, request)
    results_dir = Path(cfg.log.results_dir).expanduser().absolute()
    if request.slurm.container_runtime == "docker":
        print_docker_command(opts, request.argv, out=out)
        return 0
    if request.nexp != 1 or request.resume:  # refuse a set that cannot start before queueing it
        plan_run_set(results_dir, request.nexp, resume=request.resume)
    job = render_or_submit(
        opts, request.argv, dry_run=request.slurm.dry_run, results_dir=results_dir, out=out
    )
    if job is not None:
        out.print(f"submitted Slurm job {job.job_id}: {opts.nodes} node(s) x {opts.gpus_per_node}")
        out.print(f"script: {job.script}\noutput: {job.output}\nresults: {results_dir}")
    return 0


def run_in_slurm_job(cfg: Config, request: RunRequest, *, console: Console, out: Console) -> int:
    """Inside the sbatch job (first node): each run as one srun step over all nodes."""
    opts = run_options(cfg, request)
    head, job = job_head_node(), os.environ.get("SLURM_JOB_ID", "job")

    def step(run_args: list[str], index: int | None) -> list[str]:
        run_args = without_options(run_args, SLURM_OPTIONS)
        return srun_step(opts, run_args, head=head, rendezvous_id=f"{job}-{index}")

    if request.nexp != 1 or request.resume:
        return run_set(cfg, argv=request.argv, nexp=request.nexp, resume=request.resume,
                       seed=request.seed, progress=request.progress, console=console, out=out,
                       step=step)  # fmt: skip
    return wait_for_run(step(without_options(request.argv, SET_OPTIONS), None), console=console)
