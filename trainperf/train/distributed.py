"""The process group of a run: one process per GPU under torchrun, or a single process.

torchrun (or ``trainperf run --nproc N``, which starts it) sets RANK, WORLD_SIZE and LOCAL_RANK;
without them the run is a single process and nothing here touches torch.distributed.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device, *, timeout_s: int = DEFAULT_TIMEOUT_S) -> DistEnv:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); no-op alone."""
    if not launched_by_torchrun():
        return DistEnv()
    if dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s)}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, **kwargs)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)


def local_device(name: str) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK under torchrun with CUDA, else as named."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA GPU is visible; use train.device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and launched_by_torchrun():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                "start at most one process per GPU (--nproc)"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_value(value: Any, env: DistEnv) -> Any:
    """Rank 0's value on every rank."""
    if not env.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
