"""A new user's first tiny run, timed as they would see it, then its convergence over many seeds.

1. From an empty TRAINPERF_HOME (no corpus, no base model), runs ``trainperf run BENCHMARK`` with
   its output on a pipe (not a terminal, as under CI, nohup or Slurm) and stamps each line as it
   arrives: the wall time of the whole first run and the longest silence between two lines.
2. Runs seeds 2..N with the same home (everything prepared is now cached) and reads each result
   log as the scorer does: the evaluations that counted, the samples to converge and the time.

    python bench/first_run.py llama2_70b_lora --seeds 10

Prints a Markdown table for bench/RESULTS.md. Nothing here is a test: the figures depend on the
machine (2 cores for the README's promise).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainperf.results.parse import summarize_run


def timed_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """(wall s, longest gap s between output lines, the line after that gap, exit code)."""
    t0 = time.perf_counter()
    last, gap, after = t0, 0.0, ""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        if now - last > gap:
            gap, after = now - last, line.strip()[:100]
        last = now
        print(f"{now - t0:7.1f}s | {line}", end="", flush=True)
    rc = proc.wait()
    end = time.perf_counter()
    if end - last > gap:
        gap, after = end - last, "(exit)"
    return end - t0, gap, after, rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("benchmark", nargs="?", default="llama2_70b_lora")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 1..N (default 10)")
    ap.add_argument("--home", help="TRAINPERF_HOME to start from (default: a new empty one)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="trainperf-home-"))
    results = Path(tempfile.mkdtemp(prefix="trainperf-first-run-"))
    env = dict(os.environ, TRAINPERF_HOME=str(home))
    rows = []
    for seed in range(1, args.seeds + 1):
        cmd = [sys.executable, "-m", "trainperf", "run", args.benchmark]
        cmd += ["--results", str(results / f"seed{seed}"), "--seed", str(seed)]
        wall, gap, after, rc = timed_run(cmd, env)
        if rc != 0:
            print(f"seed {seed}: exit {rc}", file=sys.stderr)
            return 1
        (log,) = sorted((results / f"seed{seed}").glob("result_*.txt"))
        run = summarize_run(log)
        rows.append((seed, wall, gap, after, run))
    first = rows[0]
    print(f"\nfirst run (empty {home}): {first[1]:.0f} s wall, longest silence {first[2]:.1f} s")
    print(f"  (before: {first[3]!r})\n")
    print("| seed | wall s | longest silence s | counted evals | samples to converge | last eval |")
    print("|---:|---:|---:|---:|---:|---:|")
    for seed, wall, gap, _, run in rows:
        print(
            f"| {seed} | {wall:.0f} | {gap:.1f} | {len(run.evals)} | {run.samples_to_converge} "
            f"| {run.final_eval:.4f} |"
        )
    counted = sorted(len(r[4].evals) for r in rows)
    print(
        f"\ncounted evaluations: min {counted[0]}, max {counted[-1]}; converged all: "
        f"{all(r[4].converged for r in rows)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
