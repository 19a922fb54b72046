"""The ``trainperf`` command line: the parser and the dispatch. Each subcommand is a module that
adds its arguments (``add_parser``) and runs (``cmd``): one call into the package, then the
rendering of its result."""

from __future__ import annotations

import argparse
import os
import sys

from trainperf.cli import (
    check,
    compare,
    doctor,
    download,
    estimate,
    listing,
    perf,
    prepare,
    report,
    run,
    score,
    systems,
    watch,
)
from trainperf.cli.common import EXIT_USER_ERROR, console

# in the order of --help
SUBCOMMANDS = {
    "list": listing, "prepare": prepare, "download": download, "run": run, "perf": perf,
    "doctor": doctor, "systems": systems, "score": score, "estimate": estimate,
    "compare": compare, "watch": watch, "check": check, "report": report,
}  # fmt: skip
COMMANDS = {name: module.cmd for name, module in SUBCOMMANDS.items()}
WITH_OVERRIDES = ("run", "perf", "doctor")
"""Subcommands that take section.key=value items after their options too."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainperf",
        description="Reproduce and score the MLPerf Training LLM benchmarks on the GPUs you have.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # section.key=value overrides after the options too (argparse alone would not take them)
    args, unknown = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in WITH_OVERRIDES:
        args.items += [u for u in unknown if "=" in u and not u.startswith("-")]
        unknown = [u for u in unknown if u not in args.items]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in ("run", "perf"):
        # Training allocates and frees tensors of many sizes; segments that grow in place keep
        # the CUDA cache from fragmenting (torchtitan and NeMo set the same). A user's own
        # setting wins; it must be set before CUDA starts, and torchrun's workers inherit it.
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    try:
        return COMMANDS[args.command](args)
    except ValueError as exc:
        if os.environ.get("TRAINPERF_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError" or os.environ.get("TRAINPERF_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {out_of_memory_message(exc)}")
        return EXIT_USER_ERROR


def out_of_memory_message(exc: BaseException) -> str:
    """One paragraph for a CUDA out-of-memory error: what ran out and what to change."""
    first = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
    return (
        f"the GPU ran out of memory ({first.rstrip('.')}). Fit the step with less memory: "
        "parallel.activation_checkpointing=full, a smaller train.micro_batch_size, more GPUs "
        "(--nproc N / more nodes: FSDP shards the weights), parallel.float8=rowwise for a LoRA "
        "frozen base, parallel.compile_inside_checkpoint=true with compile and full checkpointing "
        "(or parallel.compile=false), or a "
        "proxy with fewer layers (--layers N for perf). Set TRAINPERF_DEBUG=1 for the traceback."
    )
