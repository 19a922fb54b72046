"""``trainperf systems``: the system presets and the layout each runs a benchmark with."""

from __future__ import annotations

import argparse

from trainperf.cli.common import print_rows, stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "systems",
        help="system presets (config_<system>.sh as data) and the layout each runs BENCH with",
        description="Each preset's GPUs and memory, and for BENCHMARK (default llama31_8b at full "
        "scale) the fastest layout whose estimated memory per GPU fits, with the estimate.",
    )
    p.add_argument("benchmark", nargs="?", default="llama31_8b")
    p.add_argument("--scale", default="full", help="scale of the benchmark (default full)")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.benchmarks import get_default_config
    from trainperf.launch.systems import system_fits

    cfg = get_default_config(args.benchmark, args.scale)
    title = f"trainperf systems: layout for {args.benchmark} ({args.scale})"
    columns = ["system", "GPUs", "GiB/GPU", "description", "layout", "estimate"]
    rows = []
    for fit in system_fits(cfg):
        system, estimate = fit.system, fit.estimate
        layout = " ".join(fit.pick.overrides) if fit.pick else "does not fit"
        rows.append([
            system.name,
            f"{system.nodes}x{system.gpus_per_node}",
            f"{system.memory_gib:.0f}" if system.memory_gib else "-",
            system.description,
            layout if system.memory_gib else "(defaults)",
            f"~{estimate.total_gib:.0f} GiB" if estimate and system.memory_gib else "-",
        ])  # fmt: skip
    print_rows(title, columns, rows, out=stdout)
    return 0
