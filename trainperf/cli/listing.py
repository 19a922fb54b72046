"""``trainperf list``: the benchmarks, their scales, targets and data status."""

from __future__ import annotations

import argparse

from trainperf.cli.common import print_rows, stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("list", help="benchmarks, their scales, targets and data status")


def cmd(_: argparse.Namespace) -> int:
    from trainperf.benchmarks import BENCHMARKS, rounds_of
    from trainperf.data.prepare import data_dir, data_status

    columns = ["benchmark", "rounds", "scale", "model", "seq", "GBS", "target", "data"]
    columns.append("description")
    rows = []
    for name, spec in BENCHMARKS.items():
        for scale, s in spec.scales.items():
            cfg = spec.config(scale)
            data = f"{data_status(cfg)} ({s.data_source}: {data_dir(cfg)})"
            rows.append([name, rounds_of(spec), scale, s.flavor, str(s.seq_len),
                         str(s.global_batch_size), f"<= {s.target:g}", data,
                         s.description])  # fmt: skip
    print_rows("trainperf benchmarks", columns, rows, out=stdout)
    return 0
