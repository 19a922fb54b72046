"""This command again under torchrun: ``--nproc`` ranks here, or this node's share of a run
over ``--nnodes`` machines that meet at one c10d rendezvous.

The ranks run the same ``trainperf`` command line without the launch options (torchrun has
already placed them), so every rank parses, validates and resolves the config exactly as the
launching process did.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console

TORCHRUN_OPTIONS = {"--nproc": True, "--nnodes": True, "--rdzv-endpoint": True, "--rdzv-id": True}
"""The options torchrun consumes (name -> whether it takes a value); its ranks never see them."""


def without_options(argv: list[str], options: Mapping[str, bool]) -> list[str]:
    """``argv`` without the given options (name -> whether it takes a value), spelled either
    ``--name value`` or ``--name=value``; every other item keeps its place."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in options:
            skip = options[name] and "=" not in item
            continue
        out.append(item)
    return out


def relaunch_with_torchrun(
    argv: list[str],
    nproc: int,
    *,
    console: Console,
    nnodes: int = 1,
    endpoint: str | None = None,
    rdzv_id: str = "",
    purpose: str | None = None,
) -> int:
    """Start ``nproc`` copies of ``trainperf *argv`` on this machine through torchrun; with
    ``nnodes`` > 1, this machine joins the c10d rendezvous at ``endpoint`` with the other nodes.
    Returns 0 when every rank succeeded, else 1 (the ranks printed their errors)."""
    from torch.distributed.run import main as torchrun_main

    rest = without_options(argv, TORCHRUN_OPTIONS)
    if nnodes > 1:
        where = [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
                 f"--rdzv-id={rdzv_id}"]  # fmt: skip
        console.print(f"joining {nnodes} nodes at {endpoint} with {nproc} process(es) here")
    else:
        where = ["--standalone"]
        purpose = purpose or f"FSDP over {nproc} ranks"
        console.print(f"starting {nproc} processes with torchrun ({purpose})")
    try:
        torchrun_main([*where, f"--nproc-per-node={nproc}", "-m", "trainperf", *rest])
    except Exception:  # torchrun's ChildFailedError; the ranks printed their errors or status
        console.print("the run did not succeed on every rank (see the lines above)")
        return 1
    return 0
