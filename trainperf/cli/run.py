"""``trainperf run``: train a benchmark to its quality target and write MLPerf result logs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from trainperf.cli.common import (
    add_bench_args,
    add_items_arg,
    add_slurm_args,
    console,
    resolve_run_config,
    slurm_request,
    stdout,
)

if TYPE_CHECKING:
    from trainperf.config import Config
    from trainperf.train.run import RunResult


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="train a benchmark to its quality target and write MLPerf result logs",
        description="Train BENCHMARK (default llama31_8b) at --scale (default tiny) until the "
        "quality target, writing result_<i>.txt MLLOG files into --results. Extra arguments "
        "section.key=value override the config (e.g. train.lr=3e-3 train.max_steps=800).",
    )
    add_items_arg(p)
    add_bench_args(p)
    p.add_argument(
        "--seed",
        type=int,
        help="run seed (default: a fresh random seed, logged); with --nexp run i uses SEED + i",
    )
    p.add_argument("--results", help="results folder (default ./results/<benchmark>)")
    p.add_argument(
        "--nexp",
        type=int,
        default=1,
        help="a submission-style set: this many runs into result_0.txt .. result_<N-1>.txt, each "
        "in its own process with its own seed, then the score (MLPerf: 10; llama31_405b: 3)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="complete the set in --results: keep its finished runs, rerun each missing or "
        "failed one (a failed log moves to failed/, never overwritten)",
    )
    p.add_argument("--run-index", type=int, help=argparse.SUPPRESS)  # a set's run: this index
    p.add_argument(
        "--system",
        metavar="NAME",
        help="a system preset (trainperf systems): its GPUs per node and nodes, and the fastest "
        "layout whose estimated memory fits; auto: the local GPUs. key=value still override",
    )
    add_slurm_args(p, time_limit="04:00:00", what="runs")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (GPUs) on this machine: >1 starts torchrun, FSDP over them (default 1)",
    )
    p.add_argument(
        "--nnodes",
        type=int,
        default=1,
        help="machines in the run: start the same command on each, with --rdzv-endpoint",
    )
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous (first node)")
    p.add_argument("--rdzv-id", default="trainperf", help="rendezvous id, the same on every node")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.launch.local import RunRequest, launch_run
    from trainperf.train.distributed import launched_by_torchrun

    cfg = resolve_run_config(args)
    if not launched_by_torchrun() and (note := retired_note(cfg.benchmark)):
        stdout.print(f"[yellow]note:[/] {note}")  # information: stderr keeps only errors
    if args.system and not launched_by_torchrun() and not args.in_slurm_job:
        cfg = _apply_system(args, cfg)
    request = RunRequest(
        argv=args.argv,
        nproc=args.nproc,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        nexp=args.nexp,
        resume=args.resume,
        seed=args.seed,
        run_index=args.run_index,
        progress=not args.no_progress,
        slurm=slurm_request(args),
    )
    result = launch_run(cfg, request, console=console, out=stdout)
    if isinstance(result, int):
        return result
    if result.status == "success":
        minutes = result.time_to_train_s / 60
        stdout.print(
            f"{result.status}: time to train {minutes:.3f} min, samples to converge "
            f"{result.samples}"
        )
    else:
        stdout.print(f"{result.status}: {result.reason}; {evaluation_note(result, cfg)}")
    stdout.print(f"log: {result.log_path}  config: {result.config_path}  seed: {result.seed}")
    if result.peak_memory_gib is not None:
        stdout.print(f"peak GPU memory {result.peak_memory_gib:.2f} GiB (rank 0)")
    return 0 if result.status == "success" else 1


def retired_note(benchmark: str) -> str | None:
    """What a run of a benchmark that the newest round no longer has is told first."""
    from trainperf.benchmarks import NEWEST_RULESET, get_benchmark

    return get_benchmark(benchmark).retired_note(NEWEST_RULESET)


def evaluation_note(result: RunResult, cfg: Config) -> str:
    """What the evaluations of an unsuccessful run said: "last eval 3.8123 (target 3.7)", or why
    none ran ("no evaluation ran: max_steps 10 x GBS 16 = 160 samples ends before the first
    evaluation at 512 samples")."""
    from trainperf.benchmarks import get_benchmark

    t = cfg.train
    if result.last_eval is not None:
        return f"last eval {result.last_eval:.4f} (target {t.target:g})"
    skip = get_benchmark(cfg.benchmark).resolve(cfg).train.eval_skip or 0
    first = (skip + 1) * t.eval_interval_samples
    if result.steps < t.max_steps:
        return f"no evaluation ran before it stopped (the first is at {first:,} samples)"
    return (
        f"no evaluation ran: max_steps {t.max_steps:,} x GBS {t.global_batch_size} = "
        f"{t.max_steps * t.global_batch_size:,} samples ends before the first evaluation at "
        f"{first:,} samples; raise train.max_steps"
    )


def _apply_system(args: argparse.Namespace, cfg: Config) -> Config:
    """--system NAME|auto: its GPUs per node and nodes, and its fastest fitting layout before
    the user's overrides; the runs it launches get them on their command line."""
    from trainperf.launch.systems import argv_for_system, choose_layout

    layout = choose_layout(args.system, cfg)
    console.print(layout.note)
    args.nproc, args.nodes = layout.system.gpus_per_node, layout.system.nodes
    args.argv = argv_for_system(args.argv, layout)
    return resolve_run_config(args, layout=layout.overrides)
