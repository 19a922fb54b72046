"""``trainperf check``: the official compliance, RCP and seed checks of a folder of logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check", help="official compliance, RCP and seed checks of a folder of result logs"
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--ruleset", help="ruleset (default: newest that knows the benchmark)")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.mlperf.compliance import check_ruleset
    from trainperf.results.check import check_directory

    check_ruleset(args.ruleset)
    report = check_directory(args.directory, ruleset=args.ruleset)
    for line in report.lines:
        stdout.print(line, markup=False)
    return 0 if report.passed else 1
