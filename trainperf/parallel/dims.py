"""How the ranks are split between data and tensor parallelism, and the device mesh they form.

    dims = ParallelDims(dp_shard=-1, tp=2, world_size=8)  # -> dp_shard 4
    dims.validate_for_model(cfg)
    mesh = dims.build_mesh("cuda")  # 2-D mesh ("dp_shard", "tp"); mesh["tp"], mesh["dp_shard"]

The tp dimension is the innermost (fastest-varying rank), so a tensor-parallel group is made
of consecutive ranks, which land on one node whenever tp divides the GPUs per node.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from trainperf.models.llama import LlamaConfig

MESH_DIM_NAMES = ("dp_shard", "tp")


def _divisors(n: int) -> str:
    return "{" + ", ".join(str(d) for d in range(1, n + 1) if n % d == 0) + "}"


@dataclass
class ParallelDims:
    """Sizes of the data-parallel (FSDP) and tensor-parallel mesh dimensions."""

    dp_shard: int = -1
    """Ranks that each hold a shard of the parameters (FSDP2); -1 = world_size // tp."""
    tp: int = 1
    """Ranks that split every matmul of a layer (tensor + sequence parallel)."""
    world_size: int = 1
    """Total number of ranks (torch.distributed world size)."""

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size({self.world_size}) must be >= 1")
        if self.tp < 1:
            raise ValueError(f"tp({self.tp}) must be >= 1; use tp=1 to turn tensor parallel off")
        if self.dp_shard == 0 or self.dp_shard < -1:
            raise ValueError(f"dp_shard({self.dp_shard}) must be >= 1, or -1 for world_size // tp")
        if self.dp_shard == -1:
            if self.world_size % self.tp:
                raise ValueError(
                    f"tp({self.tp}) must divide world_size({self.world_size}); "
                    f"try tp in {_divisors(self.world_size)}"
                )
            self.dp_shard = self.world_size // self.tp
        if self.dp_shard * self.tp != self.world_size:
            raise ValueError(
                f"dp_shard({self.dp_shard}) * tp({self.tp}) = {self.dp_shard * self.tp} must "
                f"equal world_size({self.world_size}); set dp_shard=-1 to use the rest of the ranks"
            )

    @property
    def dp_enabled(self) -> bool:
        return self.dp_shard > 1

    @property
    def tp_enabled(self) -> bool:
        return self.tp > 1

    def validate_for_model(self, cfg: LlamaConfig, *, seq_len: int | None = None) -> None:
        """Raise ValueError if tp cannot split `cfg` evenly (or `seq_len`, for sequence parallel).

        Each tensor-parallel rank takes whole query and K/V heads, an equal share of the SwiGLU
        width and of the vocabulary (embedding rows, output rows), and, with sequence parallel,
        an equal share of the tokens of every sequence.
        """
        sizes = {
            "n_heads": cfg.n_heads,
            "n_kv_heads": cfg.n_kv_heads,
            "ffn_dim": cfg.ffn_dim,
            "dim": cfg.dim,
            "vocab_size": cfg.vocab_size,
        }
        if seq_len is not None:
            sizes["seq_len"] = seq_len
        for name, size in sizes.items():
            if size % self.tp:
                smallest = min(sizes.values())
                common = [
                    d for d in range(1, smallest + 1) if all(s % d == 0 for s in sizes.values())
                ]
                raise ValueError(
                    f"tp({self.tp}) must divide {name}({size}); "
                    f"try tp in {{{', '.join(map(str, common))}}}"
                )

    def build_mesh(self, device_type: str) -> DeviceMesh:
        """The 2-D ("dp_shard", "tp") mesh over all ranks; either dimension may have size 1.

        Needs an initialized default process group of `world_size` ranks (torchrun does that
        with `torch.distributed.init_process_group`).
        """
        if not dist.is_initialized():
            raise ValueError(
                "build_mesh needs torch.distributed to be initialized; launch with torchrun "
                "and call torch.distributed.init_process_group first"
            )
        if dist.get_world_size() != self.world_size:
            raise ValueError(
                f"ParallelDims.world_size({self.world_size}) != torch.distributed world size "
                f"({dist.get_world_size()}); build ParallelDims with "
                f"world_size=dist.get_world_size()"
            )
        return init_device_mesh(
            device_type, (self.dp_shard, self.tp), mesh_dim_names=MESH_DIM_NAMES
        )
