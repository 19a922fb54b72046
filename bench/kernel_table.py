"""The longest-running GPU kernels of a `trainperf perf --profile DIR` trace, per step.

Usage: python bench/kernel_table.py DIR/trace_rank0.json.gz [--top 40]
Prints category totals and the top kernels (ms per profiled step; steps counted from the
trace's ProfilerStep annotations), so a device call can bring back a table instead of the trace.
"""

from __future__ import annotations

import argparse
import gzip
import json

from trainperf.perf.profile import summarize_trace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with gzip.open(args.trace, "rt") as fh:
        data = json.load(fh)
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    marks = [ev for ev in events if ev.get("cat") == "gpu_user_annotation"]
    steps = len({ev["name"] for ev in marks if str(ev["name"]).startswith("ProfilerStep#")})
    s = summarize_trace(events, steps=steps, wall_s=0.0, top=args.top)
    print(f"profiled steps {steps}; GPU busy {s.gpu_busy_ms_per_step:.1f} ms per step")
    for cat, ms in sorted(s.category_ms_per_step.items(), key=lambda kv: -kv[1]):
        print(f"  {cat:14s} {ms:8.2f} ms")
    for cat, name, ms in s.top_kernels:
        print(f"{ms:8.2f} ms  {cat:10s} {name[:150]}")


if __name__ == "__main__":
    main()
