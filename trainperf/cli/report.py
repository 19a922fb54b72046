"""``trainperf report``: an HTML report of a results folder (curves, times, score, diagnoses)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="HTML report of a results folder: curves, times, throughput, score, diagnoses",
        description="One self-contained HTML file (figures embedded; the same PNGs beside it) on "
        "a folder of result logs, ours or a published submission's: train loss and eval curves "
        "against the target and the RCP band, time to train per run, throughput per block, the "
        "score with the compliance and RCP verdicts, the system description, and a diagnosis of "
        "each run (converged, diverged, plateaued, too slow, LR schedule or eval cadence not as "
        "the rules require).",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--out", type=Path, help="folder to write into (default: DIR/report)")
    p.add_argument("--json", action="store_true", help="print the diagnoses and paths as JSON")
    p.add_argument("--ruleset", help="compliance / RCP ruleset (default: inferred from the logs)")


def cmd(args: argparse.Namespace) -> int:
    if not args.directory.is_dir():  # before importing the checkers (seconds of scipy)
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    from trainperf.mlperf.compliance import check_ruleset
    from trainperf.results.report import build_report, report_to_dict, score_line
    from trainperf.results.score_view import ruleset_line

    check_ruleset(args.ruleset)
    report = build_report(args.directory, out=args.out, ruleset=args.ruleset)
    if args.json:
        print(json.dumps(report_to_dict(report), indent=2))
        return 0
    for run in report.runs:
        why = run.diagnosis.reasons[0] if run.diagnosis.reasons else ""
        stdout.print(f"{run.file}: {run.diagnosis.verdict}: {why}", markup=False)
    stdout.print(ruleset_line(report.score), markup=False)
    stdout.print(score_line(report.score), markup=False)
    stdout.print(f"wrote {report.html_path} (+ {len(report.png_paths)} PNG)", markup=False)
    return 0
