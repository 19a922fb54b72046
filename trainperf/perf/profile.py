"""``trainperf perf --profile DIR``: where a training step's GPU time goes.

A few extra steps after the timed ones run under torch.profiler; each rank writes its Chrome
trace (``trace_rank{R}.json.gz``, open it in Perfetto or chrome://tracing) and rank 0's kernels
are summed into categories: GEMM, attention, communication (NCCL), optimizer, memory copies and
the rest (elementwise, norms, casts, fused Triton kernels). Two figures say what limits a step:

- GPU busy: the union of all kernels' time over the wall time; the remainder is the GPU waiting
  for the host (launch overhead, host syncs, data).
- exposed communication: NCCL kernel time during which no compute kernel runs on any stream, the
  communication that FSDP / TP did not hide behind compute.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainperf.atomic import atomic_path

# First match wins: attention kernels are named after GEMM libraries too (fmha_cutlass...,
# cudnn ... sdpa ... wgmma), Triton GEMM templates are "triton_tem_...".
KERNEL_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("communication", ("nccl",)),
    ("attention", ("flash", "fmha", "sdpa", "attention", "attn")),
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "triton_tem", "scaled_mm", "splitk")),
    ("optimizer", ("adam", "multi_tensor_apply")),
)
OTHER = "other"
MEMCPY = "memcpy/memset"


def kernel_category(name: str) -> str:
    lowered = name.lower()
    for category, needles in KERNEL_CATEGORIES:
        if any(n in lowered for n in needles):
            return category
    return OTHER


@dataclass
class ProfileSummary:
    steps: int
    """Profiled steps the figures are averaged over."""
    wall_ms_per_step: float
    gpu_busy_ms_per_step: float
    """Union of all kernel intervals (any stream), per step."""
    category_ms_per_step: dict[str, float]
    """Summed kernel time per category, per step (kernels on different streams may overlap)."""
    exposed_communication_ms_per_step: float
    top_kernels: list[tuple[str, str, float]] = field(default_factory=list)
    """(category, name, ms per step) of the longest-running kernels."""
    trace: str = ""

    @property
    def gpu_busy_fraction(self) -> float:
        return self.gpu_busy_ms_per_step / self.wall_ms_per_step if self.wall_ms_per_step else 0.0

    def lines(self) -> list[str]:
        """The summary as text, one figure per line."""
        busy = self.gpu_busy_ms_per_step
        out = [
            f"profile of {self.steps} step(s), rank 0 (trace: {self.trace}):",
            f"  wall {self.wall_ms_per_step:.1f} ms/step, GPU busy {busy:.1f} ms "
            f"({100 * self.gpu_busy_fraction:.0f}%)",
        ]
        for name, ms in sorted(self.category_ms_per_step.items(), key=lambda kv: -kv[1]):
            share = 100 * ms / busy if busy else 0.0
            out.append(f"  {name:<14} {ms:9.1f} ms/step  ({share:4.1f}% of busy)")
        out.append(f"  exposed communication {self.exposed_communication_ms_per_step:.1f} ms/step")
        for category, name, ms in self.top_kernels:
            out.append(f"    {ms:8.2f} ms  [{category}] {name[:110]}")
        return out


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def _subtract_length(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the union of `a` not covered by the union of `b`."""
    merged: list[list[float]] = []
    for s, e in sorted(b):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    exposed, end = 0.0, float("-inf")
    for s, e in sorted(a):
        s = max(s, end)
        if e <= s:
            continue
        end = e
        covered = sum(max(0.0, min(e, me) - max(s, ms)) for ms, me in merged)
        exposed += (e - s) - covered
    return exposed


def summarize_trace(
    events: Iterable[dict], *, steps: int, wall_s: float, top: int = 12, trace: str = ""
) -> ProfileSummary:
    """Sum the kernels of a Chrome trace's events (``ts``/``dur`` in microseconds).

    When the trace marks the profiler's steps (``ProfilerStep#N`` GPU annotations), kernels
    that start before the first step are left out: work still queued from before profiling.
    """
    events = list(events)
    first = first_step_start(events)
    per_category: dict[str, float] = defaultdict(float)
    per_kernel: dict[tuple[str, str], float] = defaultdict(float)
    compute, comm, everything = [], [], []
    for ev in events:
        if ev.get("ph") != "X" or "dur" not in ev:
            continue
        if float(ev["ts"]) < first:
            continue
        cat = str(ev.get("cat", "")).lower()
        if cat == "kernel":
            category = kernel_category(str(ev.get("name", "")))
        elif cat in ("gpu_memcpy", "gpu_memset"):
            category = MEMCPY
        else:
            continue
        start, dur = float(ev["ts"]), float(ev["dur"])
        per_category[category] += dur
        per_kernel[(category, str(ev.get("name", "")))] += dur
        everything.append((start, start + dur))
        (comm if category == "communication" else compute).append((start, start + dur))
    n = max(steps, 1)
    ms = 1e-3 / n  # microseconds in total -> milliseconds per step
    longest = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:top]
    return ProfileSummary(
        steps=steps,
        wall_ms_per_step=1e3 * wall_s / n,
        gpu_busy_ms_per_step=_union_length(everything) * ms,
        category_ms_per_step={k: v * ms for k, v in per_category.items()},
        exposed_communication_ms_per_step=_subtract_length(comm, compute) * ms,
        top_kernels=[(c, name, v * ms) for (c, name), v in longest],
        trace=trace,
    )


def first_step_start(events: list[dict]) -> float:
    """GPU start of the first profiled step (``ProfilerStep#N`` GPU annotation), or -inf."""
    starts = [
        float(ev["ts"])
        for ev in events
        if ev.get("ph") == "X"
        and ev.get("cat") == "gpu_user_annotation"
        and str(ev.get("name", "")).startswith("ProfilerStep#")
    ]
    return min(starts, default=float("-inf"))


def write_trace(prof: torch.profiler.profile, path: Path) -> list[dict]:
    """Export `prof` as gzip'd Chrome trace JSON at `path` (written whole, then renamed) and
    return its events."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(f".{path.name}.{os.getpid()}.json")
    prof.export_chrome_trace(str(raw))
    try:
        data = json.loads(raw.read_text())
        with atomic_path(path) as tmp, gzip.open(tmp, "wt") as fh:
            json.dump(data, fh)
    finally:
        raw.unlink(missing_ok=True)
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    return list(events)


def profile_activities(device: torch.device) -> list[torch.profiler.ProfilerActivity]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return activities


def summary_to_dict(summary: ProfileSummary) -> dict:
    out = asdict(summary)
    out["gpu_busy_fraction"] = summary.gpu_busy_fraction
    return out
