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
    p.add_argument("directories", type=Path, nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object (a list for several DIRs)")
    p.add_argument("--csv", action="store_true", help="print CSV: one row per run, then the score")
    p.add_argument("--ruleset", help="compliance / RCP ruleset (default: newest knowing it)")
    p.add_argument(
        "--write-scaling",
        action="store_true",
        help="write the RCP normalization factor to DIR/scaling.json (atomically)",
    )

    p = sub.add_parser(
        "estimate", help="model FLOPs, tokens/s, MFU and days to train (NVIDIA recipe arithmetic)"
    )
    p.add_argument("--model", required=True, help="size registry name, e.g. llama3.1-405b")
    p.add_argument("--seq", type=int, required=True, help="sequence length")
    p.add_argument("--gbs", type=int, required=True, help="global batch size (sequences)")
    p.add_argument("--step-time", type=float, required=True, help="seconds per optimizer step")
    p.add_argument("--gpus", type=int, required=True, help="number of accelerators")
    p.add_argument("--device", required=True, help="h100, h200, b200, mi300x, mi325x, mi355x")
    p.add_argument("--dtype", default="bf16", help="bf16 or fp8 (the MFU denominator)")
    p.add_argument("--tokens", type=float, help="tokens to train, for the days estimate")
    p.add_argument(
        "--formula",
        default="nvidia-recipe",
        help="nvidia-recipe (405B with the recipe's 16 query groups, as it publishes) or model",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("compare", help="a results folder's score beside published MLPerf results")
    p.add_argument("directory", type=Path)
    p.add_argument("--accelerator", required=True, help="e.g. h100, h200, b200, mi300x")
    p.add_argument("--gpus", type=int, required=True, help="accelerators the runs used")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser(
        "check", help="official compliance, RCP and seed checks of a folder of result logs"
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--ruleset", help="ruleset (default: newest that knows the benchmark)")
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
    from trainperf.results.score import (
        render_score,
        score_directory,
        score_to_csv,
        score_to_dict,
        write_scaling,
    )

    _check_ruleset(args.ruleset)
    for directory in args.directories:
        if not directory.is_dir():
            raise ValueError(f"{directory} is not a folder; give the folder holding result_*.txt")
    results, rc = [], 0
    for directory in args.directories:
        result = score_directory(directory, ruleset=args.ruleset)
        if args.write_scaling:
            if result.rcp is None or not result.rcp.passed:
                verdict = "none" if result.rcp is None else result.rcp.verdict
                raise ValueError(f"{directory}: RCP check {verdict}: no factor for scaling.json")
            path = write_scaling(directory, result.rcp.normalization_factor)
            console.print(f"wrote {path} (scaling_factor {result.rcp.normalization_factor!r})")
        if args.csv:
            score_to_csv(result, sys.stdout)
        elif not args.json:
            render_score(result, stdout)
        results.append(score_to_dict(result))
        rc |= result.score_minutes is None
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return int(rc)


def _check_ruleset(ruleset: str | None) -> None:
    from trainperf.mlperf.compliance import known_rulesets

    if ruleset is not None and ruleset not in known_rulesets():
        raise ValueError(f"unknown ruleset {ruleset!r}; known: {', '.join(known_rulesets())}")


def cmd_check(args: argparse.Namespace) -> int:
    from trainperf.results.check import check_directory

    _check_ruleset(args.ruleset)
    report = check_directory(args.directory, ruleset=args.ruleset)
    for line in report.lines:
        stdout.print(line, markup=False)
    return 0 if report.passed else 1


def cmd_estimate(args: argparse.Namespace) -> int:
    from trainperf.results.perf import (
        estimate,
        estimate_to_dict,
        recipe_overrides,
        render_estimate,
    )

    kwargs = dict(
        model=args.model,
        seq=args.seq,
        gbs=args.gbs,
        step_time=args.step_time,
        gpus=args.gpus,
        device=args.device,
        dtype=args.dtype,
        tokens=args.tokens,
    )
    overrides = recipe_overrides(args.model, args.formula)
    result = estimate(**kwargs, model_overrides=overrides)
    exact = estimate(**kwargs) if overrides else result
    if args.json:
        out = estimate_to_dict(result)
        out["formula"] = args.formula
        out["model_flops_per_sample_exact_model"] = exact.model_flops_per_sample
        out["mfu_exact_model"] = exact.mfu
        print(json.dumps(out, indent=2))
        return 0
    note = None
    if overrides:
        note = (
            f"(NVIDIA recipe convention {overrides}; the model itself gives "
            f"{exact.model_flops_per_sample:.3E} FLOPs/sample and MFU {exact.mfu:.2%}: "
            "--formula model)"
        )
    render_estimate(result, stdout, note=note)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from trainperf.results.published import compare_directory, comparison_to_dict, render_compare

    if not args.directory.is_dir():
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    result, rows = compare_directory(args.directory, accelerator=args.accelerator, count=args.gpus)
    if args.json:
        print(
            json.dumps(
                {
                    "score_minutes": result.score_minutes,
                    "benchmark": result.benchmark,
                    "published": [comparison_to_dict(r) for r in rows],
                },
                indent=2,
            )
        )
    else:
        render_compare(rows, stdout, score_minutes=result.score_minutes)
    return 0


COMMANDS = {
    "list": cmd_list,
    "prepare": cmd_prepare,
    "run": cmd_run,
    "score": cmd_score,
    "check": cmd_check,
    "estimate": cmd_estimate,
    "compare": cmd_compare,
}


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
