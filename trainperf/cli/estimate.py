"""``trainperf estimate``: model FLOPs, tokens/s, MFU and days to train (the NVIDIA recipe's
arithmetic) from a step time."""

from __future__ import annotations

import argparse
import json

from trainperf.cli.common import stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "estimate", help="model FLOPs, tokens/s, MFU and days to train (NVIDIA recipe arithmetic)"
    )
    p.add_argument("--model", required=True, help="size registry name, e.g. llama3.1-405b")
    p.add_argument("--seq", type=int, required=True, help="sequence length")
    p.add_argument("--gbs", type=int, required=True, help="global batch size (sequences)")
    p.add_argument("--step-time", type=float, required=True, help="seconds per optimizer step")
    p.add_argument("--gpus", type=int, required=True, help="number of accelerators")
    p.add_argument("--device", required=True, help="h100, h200, b200, mi300x, mi325x, mi355x")
    p.add_argument("--dtype", default="bf16", help="bf16 or fp8 (the MFU denominator)")
    p.add_argument("--tokens", type=float, help="tokens to train, for the days estimate")
    p.add_argument(
        "--formula",
        default="nvidia-recipe",
        help="nvidia-recipe (405B with the recipe's 16 query groups, as it publishes) or model",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.perf.estimate import (
        estimate,
        estimate_to_dict,
        recipe_overrides,
        render_estimate,
    )

    kwargs = dict(
        model=args.model,
        seq=args.seq,
        gbs=args.gbs,
        step_time=args.step_time,
        gpus=args.gpus,
        device=args.device,
        dtype=args.dtype,
        tokens=args.tokens,
    )
    overrides = recipe_overrides(args.model, args.formula)
    result = estimate(**kwargs, model_overrides=overrides)
    exact = estimate(**kwargs) if overrides else result
    if args.json:
        out = estimate_to_dict(result)
        out["formula"] = args.formula
        out["model_flops_per_sample_exact_model"] = exact.model_flops_per_sample
        out["mfu_exact_model"] = exact.mfu
        print(json.dumps(out, indent=2))
        return 0
    note = None
    if overrides:
        convention = ", ".join(f"{key}={value}" for key, value in overrides.items())
        note = (
            f"(NVIDIA recipe convention {convention}; the model itself gives "
            f"{exact.model_flops_per_sample:.3E} FLOPs/sample and MFU {exact.mfu:.2%}: "
            "--formula model)"
        )
    render_estimate(result, stdout, note=note)
    return 0
