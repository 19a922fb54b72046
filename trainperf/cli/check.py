"""``trainperf check``: the official compliance, RCP and seed checks of a folder of logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainperf.cli.common import plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="official compliance, RCP and seed checks of a folder of result logs",
        description="One verdict per result log against the ruleset inferred from the logs (the "
        "newest they pass; --ruleset overrides), then the RCP and seed verdicts. For reduced-"
        "scale runs of trainperf, the values that differ only because of scale are named in "
        "one line and do not fail the check.",
        epilog="Exit status: 0 every check passed; 1 one failed; 2 bad input.",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--ruleset", help="ruleset (default: inferred from the logs)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also print the checker's own messages"
    )


def cmd(args: argparse.Namespace) -> int:
    from trainperf.mlperf.compliance import check_ruleset
    from trainperf.results.check import check_directory

    check_ruleset(args.ruleset)
    report = check_directory(args.directory, ruleset=args.ruleset)
    assert report.ruleset is not None
    plain(report.ruleset.describe())
    for i, line in enumerate(report.lines):
        plain(line)
        for message in report.details.get(i, []) if args.verbose else []:
            plain("    " + message.replace("\n", "\n    "))
    plain(report.verdict)
    return 0 if report.passed else 1
