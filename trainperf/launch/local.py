"""Where a ``trainperf run`` (or ``perf``) runs: in this process, under torchrun on this machine
(``--nproc``, ``--nnodes``), as a run set (``--nexp``/``--resume``), or through Slurm.

``launch_run`` picks the way from the request and returns either an exit status (the work ran
in other processes, which reported on their own) or the ``RunResult`` of the run made here, for
the caller to render.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from trainperf.config import Config
from trainperf.launch.preflight import check_layout
from trainperf.launch.prepare import prepare_run
from trainperf.launch.runset import run_set
from trainperf.launch.slurm import SlurmRequest
from trainperf.launch.slurm_job import run_in_slurm_job, submit_run
from trainperf.launch.torchrun import relaunch_with_torchrun
from trainperf.train.distributed import (
    barrier,
    init_distributed,
    launched_by_torchrun,
    local_device,
    shutdown,
)

if TYPE_CHECKING:
    from trainperf.perf.measure import PerfResult
    from trainperf.train.run import RunResult


@dataclass
class RunRequest:
    """How to launch ``trainperf run``: the command line and its launch options."""

    argv: list[str]
    """The command line (without the program name): what torchrun, a set or Slurm runs again."""
    nproc: int = 1
    """Ranks (GPUs) on this machine, or on each Slurm node."""
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str = "trainperf"
    nexp: int = 1
    """Runs of a submission-style set (1: a single run)."""
    resume: bool = False
    seed: int | None = None
    run_index: int | None = None
    """A set's run: write result_<run_index>.txt."""
    progress: bool = True
    slurm: SlurmRequest = field(default_factory=SlurmRequest)


def launch_run(
    cfg: Config, request: RunRequest, *, console: Console, out: Console
) -> RunResult | int:
    """Run the benchmark of `cfg` as `request` asks: the ``RunResult`` of a run made in this
    process on rank 0 (the caller renders it), else the exit status."""
    counts = {"--nproc": request.nproc, "--nnodes": request.nnodes, "--nodes": request.slurm.nodes}
    for flag, count in counts.items():
        if count < 1:
            raise ValueError(f"{flag}({count}) must be >= 1")
    torchrun = launched_by_torchrun()
    nodes = request.slurm.nodes if request.slurm.launcher == "slurm" else request.nnodes
    # before any process starts; a Slurm submission runs on a login node: its layout only
    preflight(cfg, nproc=request.nproc, nodes=nodes, memory=not request.slurm.submits)
    if request.slurm.submits:
        return submit_run(cfg, request, out=out)
    if request.slurm.in_slurm_job:
        return run_in_slurm_job(cfg, request, console=console, out=out)
    if request.nexp != 1 or request.resume:
        if request.nnodes > 1:
            raise ValueError(
                "a run set (--nexp/--resume) on several nodes runs through Slurm (--launcher "
                "slurm --nodes N); --nnodes runs one run at a time"
            )
        if torchrun:
            raise ValueError("start a run set (--nexp/--resume) directly, not under torchrun; "
                             "--nproc N starts torchrun for each run")  # fmt: skip
        return run_set(cfg, argv=request.argv, nexp=request.nexp, resume=request.resume,
                       seed=request.seed, progress=request.progress, console=console,
                       out=out)  # fmt: skip
    if request.nnodes > 1 and not request.rdzv_endpoint:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first node's)")
    if (request.nproc > 1 or request.nnodes > 1) and not torchrun:
        prepare_run(cfg, progress=request.progress)
        return relaunch_with_torchrun(
            request.argv,
            request.nproc,
            console=console,
            nnodes=request.nnodes,
            endpoint=request.rdzv_endpoint,
            rdzv_id=request.rdzv_id,
        )
    return run_here(cfg, index=request.run_index, progress=request.progress, console=console)


def preflight(cfg: Config, *, nproc: int, nodes: int, memory: bool = True) -> None:
    """``check_layout`` for `nproc` ranks on each of `nodes` machines. Under torchrun, the
    layout for its world only: the process that started torchrun checked the memory."""
    if launched_by_torchrun():
        check_layout(cfg, world=int(os.environ["WORLD_SIZE"]), local_ranks=1, memory=False)
        return
    check_layout(cfg, world=nproc * nodes, local_ranks=nproc, memory=memory)


def run_here(
    cfg: Config, *, index: int | None, progress: bool, console: Console
) -> RunResult | int:
    """One run in this process (alone, or as one rank under torchrun). Returns the result on
    rank 0; the exit status on the other ranks, and 143 when SIGTERM stopped the run."""
    from trainperf.benchmarks import get_benchmark
    from trainperf.train.run import RunTerminated, run_benchmark

    env = init_distributed(
        local_device(cfg.train.device), timeout_s=cfg.parallel.collective_timeout_s
    )
    try:
        if env.is_main:
            paths = prepare_run(cfg, progress=progress)
        barrier(env)
        if not env.is_main:
            paths = prepare_run(cfg, progress=False)
        if env.is_main:
            console.print(
                f"[bold]{cfg.benchmark}[/] scale [bold]{cfg.scale}[/]: target eval <= "
                f"{cfg.train.target:g}, GBS {cfg.train.global_batch_size}, seq "
                f"{cfg.train.seq_len}" + (f", {env.world_size} ranks" if env.enabled else "")
            )
        result = run_benchmark(cfg, get_benchmark(cfg.benchmark), paths, console=console,
                               show_progress=progress, env=env, index=index)  # fmt: skip
    except RunTerminated as exc:
        if env.is_main:
            console.print(f"[red]run stopped:[/] {exc}; its log ends with run_stop aborted")
        return 128 + signal.SIGTERM
    finally:
        shutdown(env)
    if not env.is_main:
        return 0 if result.status == "success" else 1
    return result


@dataclass
class PerfRequest:
    """How to launch ``trainperf perf``: the command line, ranks, and what to time."""

    argv: list[str]
    nproc: int = 1
    steps: int = 10
    warmup: int = 3
    real_data: bool = False
    """Time on the prepared data (--data-dir) instead of synthetic tokens."""
    profile_dir: Path | None = None
    profile_steps: int = 2
    sync_each_step: bool = False
    """Wait for the GPU after every step (the old timing) instead of timing by CUDA events."""


def launch_perf(cfg: Config, request: PerfRequest, *, console: Console) -> PerfResult | int:
    """Measure the training step of `cfg` (``perf.measure``) here or on ``nproc`` ranks through
    torchrun: the result on rank 0, else the exit status (0 on the other ranks)."""
    from trainperf.benchmarks import get_benchmark
    from trainperf.perf.measure import measure

    if request.nproc < 1:
        raise ValueError(f"--nproc({request.nproc}) must be >= 1")
    preflight(cfg, nproc=request.nproc, nodes=1)
    if request.nproc > 1 and not launched_by_torchrun():
        return relaunch_with_torchrun(request.argv, request.nproc, console=console)
    env = init_distributed(
        local_device(cfg.train.device), timeout_s=cfg.parallel.collective_timeout_s
    )
    try:
        paths = prepare_run(cfg, progress=False) if request.real_data else None
        result = measure(
            cfg,
            get_benchmark(cfg.benchmark),
            paths,
            steps=request.steps,
            warmup=request.warmup,
            env=env,
            console=console,
            profile_dir=request.profile_dir,
            profile_steps=request.profile_steps,
            sync_each_step=request.sync_each_step,
        )
    finally:
        shutdown(env)
    return result if env.is_main else 0
