"""The ``trainperf`` command line: argument parsing only; the work is in the packages."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainperf.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, DEFAULT_SCALE, get_default_config
from trainperf.config import Config, apply_overrides

EXIT_USER_ERROR = 2

console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        default=DEFAULT_SCALE,
        help=f"full | proxy | small | tiny (default {DEFAULT_SCALE})",
    )
    p.add_argument("--data-dir", help="folder of the prepared data (default: trainperf's cache)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainperf",
        description="Reproduce and score the MLPerf Training LLM benchmarks on the GPUs you have.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="benchmarks, their scales, targets and data status")

    p = sub.add_parser("prepare", help="get or build and verify a benchmark's data")
    p.add_argument("benchmark", nargs="?", default=DEFAULT_BENCHMARK)
    _add_bench_args(p)

    p = sub.add_parser(
        "run",
        help="train a benchmark to its quality target and write MLPerf result logs",
        description="Train BENCHMARK (default llama31_8b) at --scale (default tiny) until the "
        "quality target, writing result_<i>.txt MLLOG files into --results. Extra arguments "
        "section.key=value override the config (e.g. train.lr=3e-3 train.max_steps=800).",
    )
    p.add_argument("items", nargs="*", metavar="[BENCHMARK] [section.key=value ...]")
    _add_bench_args(p)
    p.add_argument("--seed", type=int, help="run seed (default: a fresh random seed, logged)")
    p.add_argument("--results", help="results folder (default ./results/<benchmark>)")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")

    p = sub.add_parser("score", help="time to train of each run and the MLPerf score of a folder")
    p.add_argument("directory", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def resolve_run_config(args: argparse.Namespace) -> Config:
    benchmark, overrides = DEFAULT_BENCHMARK, []
    for i, item in enumerate(args.items):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            benchmark = item
        else:
            raise ValueError(f"unexpected argument {item!r}: overrides look like section.key=value")
    cfg = get_default_config(benchmark, args.scale)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    overrides.append(f"log.results_dir={args.results or Path('results') / benchmark}")
    return apply_overrides(cfg, overrides)


def cmd_list(_: argparse.Namespace) -> int:
    from trainperf.data.prepare import data_dir, data_status

    table = Table(title="trainperf benchmarks")
    for col in ("benchmark", "scale", "model", "seq", "GBS", "target", "data", "description"):
        table.add_column(col)
    for name, module in BENCHMARKS.items():
        for scale, s in module.SCALES.items():
            cfg = module.default_config(scale)
            status = data_status(cfg)
            data = f"{status} ({s.data_source}: {data_dir(cfg)})"
            table.add_row(
                name,
                scale,
                s.flavor,
                str(s.seq_len),
                str(s.global_batch_size),
                f"<= {s.target:g}",
                data,
                s.description,
            )
    stdout.print(table)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from trainperf.data.prepare import prepare_data

    cfg = get_default_config(args.benchmark, args.scale)
    if args.data_dir:
        cfg = apply_overrides(cfg, [f"data.data_dir={args.data_dir}"])
    paths = prepare_data(cfg, progress=True)
    stdout.print(f"{cfg.benchmark} {cfg.scale}: data ready in {paths.root}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from trainperf.data.prepare import prepare_data
    from trainperf.train.trainer import run_benchmark

    cfg = resolve_run_config(args)
    paths = prepare_data(cfg, progress=not args.no_progress)
    console.print(
        f"[bold]{cfg.benchmark}[/] scale [bold]{cfg.scale}[/]: target eval <= "
        f"{cfg.train.target:g}, GBS {cfg.train.global_batch_size}, seq {cfg.train.seq_len}"
    )
    result = run_benchmark(cfg, paths, console=console, show_progress=not args.no_progress)
    minutes = None if result.time_to_train_s is None else result.time_to_train_s / 60
    line = (
        f"{result.status}: time to train {minutes:.3f} min, samples to converge {result.samples}"
        if result.status == "success"
        else f"{result.status}: {result.reason} (last eval {result.last_eval})"
    )
    stdout.print(line)
    stdout.print(f"log: {result.log_path}  config: {result.config_path}  seed: {result.seed}")
    return 0 if result.status == "success" else 1


def cmd_score(args: argparse.Namespace) -> int:
    from trainperf.results.score import render_score, score_directory, score_to_dict

    if not args.directory.is_dir():
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    result = score_directory(args.directory)
    if args.json:
        print(json.dumps(score_to_dict(result), indent=2))
    else:
        render_score(result, stdout)
    return 0 if result.score_minutes is not None else 1


COMMANDS = {"list": cmd_list, "prepare": cmd_prepare, "run": cmd_run, "score": cmd_score}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ValueError as exc:
        if os.environ.get("TRAINPERF_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
