"""``trainperf doctor``: is this machine ready? GPUs, versions, GEMM rate, NCCL bandwidth, disk,
data and the config, each a check with a fix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainperf.cli.common import (
    add_bench_args,
    add_items_arg,
    add_slurm_args,
    console,
    resolve_run_config,
    slurm_request,
    stdout,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="is this machine ready? GPUs, versions, GEMM rate, NCCL bandwidth, disk, data, config",
        description="Check the machine and BENCHMARK's config (default llama31_8b; --scale and "
        "section.key=value as in run): GPUs visible, driver / torch / CUDA versions, free GPU "
        "memory, bf16 GEMM TFLOP/s against the device's dense peak (pass >= 60%, warn >= 40%), "
        "all-reduce bus bandwidth over --nproc local GPUs through torchrun (busbw = algbw x "
        "2(n-1)/n as nccl-tests reports it; H100/H200 pass above 300 GB/s), the data folder's "
        "free space and read speed (warn below 500 MB/s), the prepared data, tokenizer and "
        "checkpoint (verified offline, as prepare --verify), and the config's consistency (eval "
        "interval, batch split, steps, tensor parallel, the memory estimate). Each check: pass, "
        "warn, fail or skip, with a fix. Exit 0 with no fail (warns do not fail), 1 with a fail, "
        "2 for bad input (unknown benchmark or scale, bad override, --nproc above the GPUs); a "
        "--data-dir that does not exist is a failed check, not bad input.",
    )
    add_items_arg(p)
    add_bench_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--system",
        metavar="NAME",
        help="judge the config for this preset's GPUs and memory (trainperf systems) instead of "
        "the detected ones",
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="ranks on this machine for the all-reduce test and the config's world size "
        "(default: every local GPU when more than one, else 1; on CPU, N gloo processes)",
    )
    p.add_argument("--nnodes", type=int, default=1, help="machines (start doctor on each)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous (first node)")
    p.add_argument("--rdzv-id", default="trainperf-doctor", help="rendezvous id, same everywhere")
    p.add_argument("--gemm-size", type=int, default=8192, help="GEMM n for n x n x n (8192)")
    p.add_argument(
        "--allreduce-mib",
        metavar="M,M,...",
        help="all-reduce buffer sizes in MiB (default 64,256,1024 on GPUs, 1,4,16 on CPU)",
    )
    p.add_argument("--md5", action="store_true", help="also check the downloads' MD5 (slow)")
    add_slurm_args(p, time_limit="00:20:00", what="checks")
    p.add_argument("--report-file", type=Path, help=argparse.SUPPRESS)  # rank 0 -> launcher


def cmd(args: argparse.Namespace) -> int:
    from trainperf.doctor import render_checks
    from trainperf.doctor.launch import DoctorLaunch, doctor_options, launch_doctor

    args.seed, args.results = None, None
    cfg = resolve_run_config(args)  # unknown benchmark, scale or override: exit 2
    slurm = slurm_request(args)
    opts = doctor_options(
        cfg,
        explicit_data_dir=bool(args.data_dir),
        nproc=args.nproc,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        gemm_size=args.gemm_size,
        allreduce_mib=args.allreduce_mib,
        md5=args.md5,
        system=args.system,
        slurm_submits=slurm.submits,
    )
    request = DoctorLaunch(
        argv=args.argv,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        report_file=args.report_file,
        slurm=slurm,
    )
    report = launch_doctor(opts, request, console=console, out=stdout)
    if isinstance(report, int):
        return report
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        what = f"{report.benchmark} ({report.scale}), {report.world_size} rank(s)"
        render_checks(report.checks, stdout, title=f"trainperf doctor: {what}")
    return 1 if report.failed else 0
