"""Where ``trainperf doctor``'s checks run: in this process, on ``--nproc`` ranks per node through
torchrun (one node, or several meeting at a c10d rendezvous), or in a Slurm job (one srun step of
torchrun per node). Rank 0 writes its report to a file that the launching process reads back, so
the report is rendered once, where the doctor was started; when the ranks fail, the launching
process says so in the all-reduce check beside the checks it can make alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from trainperf.config import Config
from trainperf.doctor import Check, checks_from_dict, overall, report_to_dict
from trainperf.doctor.run import DoctorOptions, diagnose, write_report
from trainperf.launch.runset import wait_for_run
from trainperf.launch.slurm import (
    SLURM_OPTIONS,
    SlurmRequest,
    gpu_request,
    job_head_node,
    print_docker_command,
    render_or_submit,
    slurm_options,
    srun_step,
)
from trainperf.launch.torchrun import relaunch_with_torchrun, without_options
from trainperf.train.distributed import (
    DistEnv,
    init_distributed,
    launched_by_torchrun,
    local_device,
    shutdown,
)


@dataclass(frozen=True)
class DoctorReport:
    """The checks of a doctor run (rank 0's), for rendering."""

    checks: list[Check]
    benchmark: str
    scale: str
    world_size: int

    @property
    def failed(self) -> bool:
        return overall(self.checks) == "fail"

    def to_dict(self) -> dict:
        return report_to_dict(
            self.checks, benchmark=self.benchmark, scale=self.scale, world_size=self.world_size
        )


@dataclass
class DoctorLaunch:
    """How to launch the doctor: the command line and its launch options."""

    argv: list[str]
    """The command line (without the program name) that the ranks run again."""
    rdzv_endpoint: str | None = None
    rdzv_id: str = "trainperf-doctor"
    report_file: Path | None = None
    """Set on the ranks: rank 0 writes its report here for the launching process."""
    slurm: SlurmRequest = field(default_factory=SlurmRequest)


def doctor_options(
    cfg: Config,
    *,
    explicit_data_dir: bool,
    nproc: int | None,
    nnodes: int,
    rdzv_endpoint: str | None,
    gemm_size: int,
    allreduce_mib: str | None,
    md5: bool,
    system: str | None,
    slurm_submits: bool,
) -> DoctorOptions:
    """The doctor's options from the command line's, checked (ValueError names the bad one).
    ``nproc`` None: every local GPU when there is more than one, else 1."""
    opts = DoctorOptions(
        cfg=cfg,
        explicit_data_dir=explicit_data_dir,
        nproc=doctor_nproc(nproc, nnodes=nnodes, gemm_size=gemm_size,
                           rdzv_endpoint=rdzv_endpoint, slurm_submits=slurm_submits),
        nnodes=nnodes,
        gemm_size=gemm_size,
        allreduce_mib=parse_mib_list(allreduce_mib),
        md5=md5,
    )  # fmt: skip
    if system:
        from trainperf.launch.systems import get_system

        opts.system = get_system(system)
    return opts


def doctor_nproc(
    nproc: int | None, *, nnodes: int, gemm_size: int, rdzv_endpoint: str | None,
    slurm_submits: bool,
) -> int:  # fmt: skip
    """The ranks per node: ``nproc``, else every local GPU when more than one, else 1."""
    import torch

    if slurm_submits and nproc is None:  # the GPUs are on the nodes, not here
        raise ValueError("--launcher slurm needs --nproc G: the GPUs (ranks) on each node")
    gpus = 0 if slurm_submits or not torch.cuda.is_available() else torch.cuda.device_count()
    nproc = nproc if nproc is not None else (gpus if gpus > 1 else 1)
    bad = [f"{flag}({value}) must be >= {low}" for flag, value, low in (
        ("--nproc", nproc, 1), ("--nnodes", nnodes, 1), ("--gemm-size", gemm_size, 16))
        if value < low]  # fmt: skip
    if bad:
        raise ValueError("; ".join(bad))
    if gpus and nproc > gpus:
        raise ValueError(f"--nproc({nproc}) is more than the {gpus} visible GPU(s)")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first node's)")
    return nproc


def parse_mib_list(text: str | None) -> tuple[int, ...] | None:
    """--allreduce-mib '64,256,1024' -> (64, 256, 1024); None stays None (the defaults)."""
    if text is None:
        return None
    try:
        sizes = tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--allreduce-mib {text!r}: give positive MiB sizes, e.g. 64,256,1024")
    return sizes


def launch_doctor(
    opts: DoctorOptions, request: DoctorLaunch, *, console: Console, out: Console
) -> DoctorReport | int:
    """Run the checks where `request` says: the report to render, or an exit status when there
    is none to render here (a rank other than 0, a submitted job, another node's share)."""
    if request.slurm.launcher == "slurm" or request.slurm.in_slurm_job:
        return _in_slurm(opts, request, console=console, out=out)
    if (opts.nproc > 1 or opts.nnodes > 1) and not launched_by_torchrun():
        return _with_torchrun(opts, request, console=console)
    return _here(opts, request)


def _here(opts: DoctorOptions, request: DoctorLaunch) -> DoctorReport | int:
    """This process's share of the checks (all of them alone; under torchrun, one rank's)."""
    env = init_distributed(local_device("auto"), timeout_s=120)
    try:
        checks = diagnose(opts, env)
    finally:
        shutdown(env)
    if checks is None:  # not rank 0
        return 0
    report = _report(opts, checks, env.world_size)
    if request.report_file is not None:  # the launching process renders it
        write_report(request.report_file, report.to_dict())
        return 0
    return report


def _with_torchrun(
    opts: DoctorOptions, request: DoctorLaunch, *, console: Console
) -> DoctorReport | int:
    """--nproc N / --nnodes: the checks on N ranks per node; rank 0 hands its report back."""
    with tempfile.TemporaryDirectory(prefix="trainperf-doctor-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [*without_options(request.argv, {"--report-file": True}), f"--report-file={report}"]
        rc = relaunch_with_torchrun(
            argv,
            opts.nproc,
            console=console,
            nnodes=opts.nnodes,
            endpoint=request.rdzv_endpoint,
            rdzv_id=request.rdzv_id,
            purpose="the doctor's checks",
        )
        return _report_back(opts, report, rc, ranks=opts.nproc * opts.nnodes, console=console)


def _in_slurm(
    opts: DoctorOptions, request: DoctorLaunch, *, console: Console, out: Console
) -> DoctorReport | int:
    """--launcher slurm: submit an sbatch job; inside it, one srun step of torchrun per node
    runs the ranks, and the first node prints rank 0's report into the job's output."""
    cfg = opts.cfg
    gpus = gpu_request(
        device=cfg.train.device,
        scale=cfg.scale,
        partition=request.slurm.partition,
        purpose="the doctor checks the GPUs",
    )
    sopts = slurm_options(
        request.slurm, gpus_per_node=opts.nproc, gpus=gpus, job_name="trainperf-doctor"
    )
    folder = Path("trainperf-doctor").absolute()  # the job's working folder: shared by the nodes
    if not request.slurm.in_slurm_job:
        if request.slurm.container_runtime == "docker":
            print_docker_command(sopts, request.argv, out=out)
            return 0
        job = render_or_submit(
            sopts, request.argv, dry_run=request.slurm.dry_run, results_dir=folder, out=out
        )
        if job is not None:
            out.print(f"submitted Slurm job {job.job_id}: {sopts.nodes} node(s) x {opts.nproc}")
            out.print(f"the report will be in {job.output}")
        return 0
    job_id = os.environ.get("SLURM_JOB_ID", "job")
    report = folder / "slurm" / f"doctor-{job_id}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    skip = {**SLURM_OPTIONS, "--report-file": True}
    ranks = [*without_options(request.argv, skip), f"--report-file={report}"]
    step = srun_step(sopts, ranks, head=job_head_node(), rendezvous_id=f"{job_id}-dr")
    rc = wait_for_run(step, console=console)
    return _report_back(opts, report, rc, ranks=sopts.nodes * opts.nproc, console=console)


def _report_back(
    opts: DoctorOptions, report: Path, rc: int, *, ranks: int, console: Console
) -> DoctorReport | int:
    """The report rank 0 wrote; without one, the launch failure and the local checks."""
    payload = json.loads(report.read_text()) if report.is_file() else None
    if payload is not None:
        return _report(opts, checks_from_dict(payload), payload["world_size"])
    if rc == 0 and opts.nnodes > 1:
        console.print("this node's ranks finished; the node that ran rank 0 prints the report")
        return 0
    # the ranks failed (NCCL, rendezvous, a crash): say so, and check what one process can
    opts.launch_failure = f"the {ranks} torchrun ranks did not finish (exit {rc})"
    return _report(opts, diagnose(opts, DistEnv()) or [], 1)


def _report(opts: DoctorOptions, checks: list[Check], world_size: int) -> DoctorReport:
    return DoctorReport(checks, opts.cfg.benchmark, opts.cfg.scale, world_size)
