"""What the subcommands share: the consoles, the exit status for bad input, the argument groups
of several subcommands, and the run config that ``run``, ``perf`` and ``doctor`` resolve."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from trainperf.benchmarks import DEFAULT_BENCHMARK, DEFAULT_SCALE, get_default_config
from trainperf.config import Config, apply_overrides
from trainperf.launch import EXIT_USER_ERROR as EXIT_USER_ERROR
from trainperf.launch.slurm import SlurmRequest

console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress, notes and errors (stderr)."""
stdout = Console(highlight=False, soft_wrap=True)
"""Results: tables, scores, reports (stdout)."""


def plain(line: str) -> None:
    """A line of data on stdout, printed as it is (no rich markup)."""
    stdout.print(line, markup=False)


def print_rows(title: str, columns: list[str], rows: list[list[str]], *, out: Console) -> None:
    """A table of `rows` on `out` when it fits the console's width; else each row stacked as a
    block (its first cell, then one "column: value" line per other cell, folded at the width),
    so that a narrow terminal cuts nothing."""
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if Measurement.get(out, out.options.update_width(10_000), table).maximum <= out.width:
        out.print(table)
        return

    def fold(line: str, indent: str) -> str:
        return textwrap.fill(line, out.width, subsequent_indent=indent, break_on_hyphens=False)

    out.print(fold(title, ""), markup=False, style="italic")
    for first, *rest in rows:
        out.print(fold(first, "  "), markup=False, style="bold")
        for name, value in zip(columns[1:], rest, strict=True):
            out.print(fold(f"  {name}: {value}", "    "), markup=False)


def add_items_arg(p: argparse.ArgumentParser) -> None:
    """The positional ``[BENCHMARK] [section.key=value ...]`` of run, perf and doctor, with a
    usage line that says so (argparse alone writes ``[[BENCHMARK] [...] ...]``)."""
    p.usage = "%(prog)s [BENCHMARK] [section.key=value ...] [options]"
    p.add_argument(
        "items",
        nargs="*",
        metavar="BENCHMARK",
        help=f"a benchmark of `trainperf list` (default {DEFAULT_BENCHMARK}), then any "
        "section.key=value overrides of its config (e.g. train.lr=3e-3), also after the options",
    )


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        help=f"full | proxy | small | tiny (default: full with --data-dir, else {DEFAULT_SCALE})",
    )
    p.add_argument("--data-dir", help="folder of the prepared data (default: trainperf's cache)")


def add_slurm_args(p: argparse.ArgumentParser, *, time_limit: str, what: str) -> None:
    """--launcher slurm and its options, shared by run and doctor."""
    g = p.add_argument_group("Slurm (--launcher slurm)")
    g.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: this machine (--nproc GPUs through torchrun); slurm: render and submit an "
        f"sbatch job whose srun steps run torchrun on every node for the {what} (--dry-run "
        "prints it)",
    )
    g.add_argument("--nodes", type=int, default=1, help="Slurm nodes (each runs --nproc ranks)")
    g.add_argument("--time", default=time_limit, help=f"Slurm time limit (default {time_limit})")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--account", help="Slurm account")
    g.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    g.add_argument("--container", metavar="IMAGE", help="run the steps in IMAGE (pyxis/enroot)")
    g.add_argument(
        "--container-mounts",
        default="",
        metavar="SRC:DST,...",
        help="pyxis --container-mounts (e.g. /data:/data)",
    )
    g.add_argument(
        "--container-runtime",
        choices=["pyxis", "docker"],
        default="pyxis",
        help="docker: print the equivalent `docker run` command instead of an sbatch script",
    )
    g.add_argument("--in-slurm-job", action="store_true", help=argparse.SUPPRESS)


def slurm_request(args: argparse.Namespace) -> SlurmRequest:
    """The Slurm group's values (add_slurm_args)."""
    return SlurmRequest(
        launcher=args.launcher,
        nodes=args.nodes,
        time_limit=args.time,
        partition=args.partition,
        account=args.account,
        dry_run=args.dry_run,
        container=args.container,
        container_mounts=args.container_mounts,
        container_runtime=args.container_runtime,
        in_slurm_job=args.in_slurm_job,
    )


def scale_of(args: argparse.Namespace) -> str:
    """--scale, or its default: a data folder means the real data (full), none the tiny scale."""
    if args.scale:
        return args.scale
    return "full" if args.data_dir else DEFAULT_SCALE


def benchmark_of(items: list[str]) -> str:
    """The benchmark that the positional items name (the first that is not an override)."""
    names = [i for i in items if "=" not in i]
    return names[0] if names else DEFAULT_BENCHMARK


def resolve_run_config(args: argparse.Namespace, *, layout: tuple[str, ...] = ()) -> Config:
    """The config of ``[BENCHMARK] [section.key=value ...]`` (args.items) at the scale asked
    for, with --data-dir, --seed and --results; a system's `layout` overrides come before the
    user's, which win."""
    benchmark, overrides = DEFAULT_BENCHMARK, list(layout)
    for i, item in enumerate(args.items):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            benchmark = item
        else:
            raise ValueError(f"unexpected argument {item!r}: overrides look like section.key=value")
    cfg = get_default_config(benchmark, scale_of(args))
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    overrides.append(f"log.results_dir={args.results or Path('results') / benchmark}")
    return apply_overrides(cfg, overrides)
