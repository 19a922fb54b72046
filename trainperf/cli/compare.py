"""``trainperf compare``: a results folder's score beside published MLPerf results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="a results folder's score beside published MLPerf results",
        description="Score DIR (full-scale runs only: a reduced-scale run is not comparable) and "
        "list the published MLPerf results of its benchmark on the same accelerator kind and "
        "count (the nearest count when none), with the ratio of your score to each.",
        epilog="Exit status: 0 compared; 2 bad input (an accelerator without published results, "
        "a reduced-scale folder, a folder without a score).",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--accelerator", required=True, help="e.g. h100, h200, b200, mi300x")
    p.add_argument("--gpus", type=int, required=True, help="accelerators the runs used")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.results.published import compare_directory, comparison_to_dict, render_compare

    if not args.directory.is_dir():
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    result, rows = compare_directory(args.directory, accelerator=args.accelerator, count=args.gpus)
    if args.json:
        payload = {
            "score_minutes": result.score_minutes,
            "benchmark": result.benchmark,
            "provisional_reasons": result.provisional_reasons,
            "published": [comparison_to_dict(r) for r in rows],
        }
        print(json.dumps(payload, indent=2))
    else:
        render_compare(
            rows,
            stdout,
            score_minutes=result.score_minutes,
            provisional=result.provisional_reasons,
        )
    return 0
