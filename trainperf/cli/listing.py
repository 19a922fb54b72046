"""``trainperf list``: the benchmarks, their scales, targets and data status."""

from __future__ import annotations

import argparse

from rich.table import Table

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("list", help="benchmarks, their scales, targets and data status")


def cmd(_: argparse.Namespace) -> int:
    from trainperf.benchmarks import BENCHMARKS
    from trainperf.data.prepare import data_dir, data_status

    table = Table(title="trainperf benchmarks")
    for col in ("benchmark", "scale", "model", "seq", "GBS", "target", "data", "description"):
        table.add_column(col)
    for name, spec in BENCHMARKS.items():
        for scale, s in spec.scales.items():
            cfg = spec.config(scale)
            data = f"{data_status(cfg)} ({s.data_source}: {data_dir(cfg)})"
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
