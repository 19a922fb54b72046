"""``trainperf perf``: throughput, MFU, memory and projected time to train of a benchmark's
training step (the NVIDIA 405B recipe method)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from trainperf.cli.common import add_items_arg, benchmark_of, console, resolve_run_config, stdout

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import PerfPreset
    from trainperf.perf.measure import PerfResult


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perf",
        help="throughput, MFU, memory and projected time to train (the NVIDIA 405B recipe method)",
        description="Time --steps optimizer steps (after --warmup) of BENCHMARK's real training "
        "step on synthetic tokens (or the prepared data with --data-dir): step time, tokens/s, "
        "model TFLOP/s/GPU and MFU vs the device's dense bf16 peak, peak memory, projected time "
        "to train from the RCP mean samples. Proxy configurations: --layers, --gbs. Extra "
        "section.key=value arguments override the config (default model.checkpoint=random).",
    )
    add_items_arg(p)
    p.add_argument(
        "--scale", help="full | small | tiny (default: full on a GPU machine, tiny on CPU)"
    )
    p.add_argument("--data-dir", help="time on the prepared data instead of synthetic tokens")
    p.add_argument("--steps", type=int, default=10, help="measured steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    p.add_argument("--layers", type=int, help="proxy: this many transformer layers")
    p.add_argument("--gbs", type=int, help="proxy: this global batch size")
    p.add_argument(
        "--preset",
        help="a named proxy configuration of the benchmark (--preset help lists them); "
        "--layers, --gbs and section.key=value still apply on top",
    )
    p.add_argument("--nproc", type=int, default=1, help="local GPUs through torchrun")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after the timed steps, profile --profile-steps more: a Chrome trace per rank in "
        "DIR and GPU time by kernel category (GEMM, attention, communication, ...)",
    )
    p.add_argument(
        "--profile-steps", type=int, default=2, help="steps under the profiler (default 2)"
    )
    p.add_argument(
        "--sync-each-step",
        action="store_true",
        help="wait for the GPU after every step and time each on the host (adds the host's "
        "batch preparation to each step); default: CUDA events, no host sync, as `run` trains",
    )


def cmd(args: argparse.Namespace) -> int:
    from trainperf.launch.local import PerfRequest, launch_perf
    from trainperf.perf.config import check_perf_options, perf_overrides, perf_scale

    check_perf_options(nproc=args.nproc, steps=args.steps, warmup=args.warmup,
                       profile_steps=args.profile_steps, profile_dir=args.profile)  # fmt: skip
    preset = _preset(args)
    args.scale = perf_scale(preset, args.scale)
    overrides = [i for i in args.items if "=" in i]
    args.items = [i for i in args.items if "=" not in i] + perf_overrides(
        preset, overrides, layers=args.layers, gbs=args.gbs
    )
    args.seed, args.results = None, None  # a fresh seed (shared by the ranks); no result files
    cfg = resolve_run_config(args)
    request = PerfRequest(
        argv=args.argv,
        nproc=args.nproc,
        steps=args.steps,
        warmup=args.warmup,
        real_data=bool(args.data_dir),
        profile_dir=args.profile,
        profile_steps=args.profile_steps,
        sync_each_step=args.sync_each_step,
    )
    result = launch_perf(cfg, request, console=console)
    if isinstance(result, int):
        return result
    _render(result, as_json=args.json)
    return 0


def _preset(args: argparse.Namespace) -> PerfPreset | None:
    """The preset --preset names, or None; 'help' lists the benchmark's and exits."""
    from trainperf.perf.config import describe_presets, find_preset

    if args.preset == "help":
        bench = benchmark_of(args.items)
        stdout.print(f"perf presets of {bench}:\n{describe_presets(bench)}", highlight=False)
        raise SystemExit(0)
    return find_preset(benchmark_of(args.items), args.preset)


def _render(r: PerfResult, *, as_json: bool) -> None:
    from trainperf.perf.measure import perf_to_dict

    if as_json:
        stdout.print_json(json.dumps(perf_to_dict(r)))
        return
    table = Table(title=f"trainperf perf {r.benchmark} ({r.scale}, {r.data})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    per = "rank" if r.device == "cpu" else "GPU"  # a CPU run's ranks share the processor
    rows = [
        ("device", f"{r.world_size} x {r.device}"),
        ("features", r.features),
        ("layers / seq / GBS / micro-batch",
         f"{r.n_layers} / {r.seq_len} / {r.global_batch_size} / {r.micro_batch_size}"),
        ("step time (median, min)", f"{r.median_step_s:.3f} s, {r.min_step_s:.3f} s"),
        ("timed by", r.timing),
        ("tokens/s", f"{r.tokens_per_s:,.0f}"),
        (f"tokens/s/{per}", f"{r.tokens_per_s_per_gpu:,.0f}"),
        (f"model TFLOP/s/{per}", "n/a (LoRA)" if r.model_tflops_per_gpu is None
         else _tflops(r.model_tflops_per_gpu)),
        ("MFU (dense bf16 peak)", "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%"),
        ("peak memory (rank 0)", "n/a" if r.peak_memory_gib is None
         else f"{r.peak_memory_gib:.2f} GiB"),
        ("projected time to train", "n/a" if r.projected_minutes is None
         else f"{r.projected_minutes:,.1f} min"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    stdout.print(r.projection_note, markup=False)
    stdout.print(f"step times: {r.step_times_s} (first {r.warmup_steps} not counted)")
    stdout.print(f"losses (rank 0, seed {r.seed}): {r.losses}")
    if r.profile is not None:
        from trainperf.perf.profile import ProfileSummary

        summary = ProfileSummary(**{k: v for k, v in r.profile.items() if k != "gpu_busy_fraction"})
        stdout.print("\n".join(summary.lines()), markup=False, highlight=False)


def _tflops(value: float) -> str:
    """TFLOP/s with one decimal, or three significant digits below 10 (a CPU's 0.00412, not
    0.0)."""
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
