"""``trainperf score``: the time to train of each run and the MLPerf score of a folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainperf.cli.common import console, stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="time to train of each run and the MLPerf score of a folder"
    )
    p.add_argument("directories", type=Path, nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object (a list for several DIRs)")
    p.add_argument("--csv", action="store_true", help="print CSV: one row per run, then the score")
    p.add_argument(
        "--ruleset",
        help="compliance / RCP ruleset (default: inferred from the logs: the newest they pass)",
    )
    p.add_argument(
        "--write-scaling",
        action="store_true",
        help="write the RCP normalization factor to DIR/scaling.json (atomically)",
    )


def cmd(args: argparse.Namespace) -> int:
    from trainperf.mlperf.compliance import check_ruleset
    from trainperf.results.score import (
        render_score,
        score_directory,
        score_to_csv,
        score_to_dict,
        write_scaling,
    )

    check_ruleset(args.ruleset)
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
