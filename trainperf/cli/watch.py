"""``trainperf watch``: follow a run live (samples, loss, evals against the target, ETA)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "watch",
        help="follow a run live: samples, loss, lr, throughput, evals vs target, ETA, status",
        description="Follow PATH as it grows: a result log, a results folder (every "
        "result_*.txt, new ones picked up; runs side by side) or a Slurm job's output "
        "(launcher prefixes such as '0: ' and other output are skipped). Works on any MLPerf "
        "submission's logs. Shows benchmark, run i of N (N from a set's runset.json or, for a "
        "published submission's folder, the rules' run count), samples, train loss, learning "
        "rate, training throughput (samples trained / time in the training blocks, evaluations "
        "excluded, as report shows it), each evaluation against the target with its trend, the "
        "ETA to the target "
        "from the slope of the last evaluations and from the RCP mean samples to converge, and "
        "the status. Without a terminal it prints one plain line per change.",
        epilog="Exit status: 0 every watched run ended with run_stop status success; 1 a run "
        "ended with another status (aborted, not converged); 2 bad input (PATH missing, a folder "
        "without logs); 3 --once or --timeout returned while a run was still going or an "
        "expected log was missing; 130 interrupted (Ctrl-C).",
    )
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    p.add_argument("--once", action="store_true", help="print the current state once and exit")
    p.add_argument("--timeout", type=float, metavar="S", help="stop watching after S seconds")
    p.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    p.add_argument(
        "--stale",
        type=float,
        default=60.0,
        metavar="S",
        help="show 'no new lines for Ns' once a running log has not grown for S s (default 60)",
    )


def cmd(args: argparse.Namespace) -> int:
    from trainperf.results.watch import Watch
    from trainperf.results.watch_view import follow, show_once

    bad = [f"{flag}({value}) must be > 0" for flag, value in (
        ("--interval", args.interval), ("--timeout", args.timeout), ("--stale", args.stale))
        if value is not None and not value > 0]  # fmt: skip
    if bad:
        raise ValueError("; ".join(bad))
    if args.json and not args.once:
        raise ValueError("--json prints one state: add --once (trainperf watch PATH --once --json)")
    watch = Watch(args.path)
    if args.once:
        return show_once(watch, console=stdout, as_json=args.json, stale_s=args.stale)
    return follow(
        watch, console=stdout, interval=args.interval, timeout=args.timeout, stale_s=args.stale
    )
