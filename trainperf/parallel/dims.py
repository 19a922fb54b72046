"""How the ranks are split between data, context and tensor parallelism, and their device mesh.

    dims = ParallelDims(dp_shard=-1, cp=2, tp=2, world_size=8)  # -> dp_shard 2
    dims.validate_for_model(cfg, seq_len=8192)
    mesh = dims.build_mesh("cuda")  # 3-D ("dp_shard", "cp", "tp"); mesh["tp"], mesh["cp"], ...
    dims.fsdp_mesh(mesh)            # what FSDP shards over: dp_shard x cp, flattened

The tp dimension is the innermost (fastest-varying rank), so a tensor-parallel group is made
of consecutive ranks, which land on one node whenever tp divides the GPUs per node; cp comes
next. The ranks of a context-parallel group read the same samples (each a part of every
sequence) and hold the same parameters, so FSDP shards the parameters over dp_shard and cp
together, as torchtitan does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

MESH_DIM_NAMES = ("dp_shard", "cp", "tp")


def _divisors(n: int) -> str:
    return "{" + ", ".join(str(d) for d in range(1, n + 1) if n % d == 0) + "}"


@dataclass
class ParallelDims:
    """Sizes of the data-parallel (FSDP), context-parallel and tensor-parallel mesh dimensions."""

    dp_shard: int = -1
    """Ranks that read different samples (FSDP2 shards); -1 = world_size // (cp * tp)."""
    cp: int = 1
    """Ranks that split every sequence (context parallel: 1/cp of the tokens each)."""
    tp: int = 1
    """Ranks that split every matmul of a layer (tensor + sequence parallel)."""
    world_size: int = 1
    """Total number of ranks (torch.distributed world size)."""
    ep: int = 1
    """Expert-parallel degree: ep consecutive data-parallel ranks split each mixture-of-experts
    layer's experts (``parallel/ep.py``); must divide dp_shard, with tp = cp = 1."""

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size({self.world_size}) must be >= 1")
        if self.tp < 1:
            raise ValueError(f"tp({self.tp}) must be >= 1; use tp=1 to turn tensor parallel off")
        if self.cp < 1:
            raise ValueError(f"cp({self.cp}) must be >= 1; use cp=1 to turn context parallel off")
        if self.dp_shard == 0 or self.dp_shard < -1:
            raise ValueError(
                f"dp_shard({self.dp_shard}) must be >= 1, or -1 for world_size // (cp * tp)"
            )
        inner = self.cp * self.tp
        if self.dp_shard == -1:
            if self.world_size % inner:
                what = (
                    f"tp({self.tp})" if self.cp == 1 else f"cp({self.cp}) * tp({self.tp}) = {inner}"
                )
                raise ValueError(
                    f"{what} must divide world_size({self.world_size}); try "
                    f"{'tp' if self.cp == 1 else 'cp * tp'} in {_divisors(self.world_size)}"
                )
            self.dp_shard = self.world_size // inner
        if self.dp_shard * inner != self.world_size:
            cp = f" * cp({self.cp})" if self.cp > 1 else ""
            raise ValueError(
                f"dp_shard({self.dp_shard}){cp} * tp({self.tp}) = {self.dp_shard * inner} must "
                f"equal world_size({self.world_size}); set dp_shard=-1 to use the rest of the ranks"
            )
        self._check_ep()

    def _check_ep(self) -> None:
        if self.ep < 1:
            raise ValueError(f"ep({self.ep}) must be >= 1; use ep=1 to turn expert parallel off")
        if self.ep > 1 and (self.tp > 1 or self.cp > 1):
            raise ValueError(
                f"expert parallel ep({self.ep}) with tp({self.tp}) or cp({self.cp}) > 1 is not "
                "supported yet; use tp=1 cp=1 with ep, or ep=1"
            )
        if self.dp_shard % self.ep:
            raise ValueError(
                f"ep({self.ep}) must divide the data-parallel ranks dp_shard({self.dp_shard}); "
                f"try ep in {_divisors(self.dp_shard)}"
            )

    @property
    def ep_enabled(self) -> bool:
        return self.ep > 1

    @property
    def dp_enabled(self) -> bool:
        """Whether FSDP shards the parameters: more than one rank over dp_shard x cp."""
        return self.dp_shard * self.cp > 1

    @property
    def cp_enabled(self) -> bool:
        return self.cp > 1

    @property
    def tp_enabled(self) -> bool:
        return self.tp > 1

    def validate_sizes(self, tp_sizes: dict[str, int], *, seq_len: int | None = None) -> None:
        """Raise ValueError if tp cannot split a model's `tp_sizes` evenly (its family's
        ``tp_sizes``: a Llama's heads, K/V heads, widths and vocabulary), or `seq_len`, whose
        tokens sequence parallel shares out, or cp its 2 x cp chunks.
        """
        sizes = dict(tp_sizes)
        if seq_len is not None and self.cp > 1 and seq_len % (2 * self.cp):
            raise ValueError(
                f"context parallel cp({self.cp}) cuts each sequence into 2 x cp = {2 * self.cp} "
                f"equal chunks, which seq_len({seq_len}) cannot be; pick cp with seq_len "
                f"divisible by 2 x cp"
            )
        if seq_len is not None:
            sizes["seq_len"] = seq_len // self.cp  # each cp rank's share, split again by SP
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
        """The 3-D ("dp_shard", "cp", "tp") mesh over all ranks; any dimension may have size 1.

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
            device_type, (self.dp_shard, self.cp, self.tp), mesh_dim_names=MESH_DIM_NAMES
        )

    def build_ep_mesh(self, device_type: str) -> DeviceMesh:
        """The 2-D ("edp", "ep") mesh of expert parallel over all ranks (tp = cp = 1): the ep
        consecutive ranks of an "ep" group split the experts; an "edp" group holds the same
        experts (FSDP shards them over it)."""
        return init_device_mesh(
            device_type, (self.dp_shard // self.ep, self.ep), mesh_dim_names=("edp", "ep")
        )

    def fsdp_mesh(self, mesh: DeviceMesh) -> DeviceMesh:
        """The 1-D mesh FSDP shards over and averages gradients over: dp_shard, or dp_shard x cp
        flattened when context parallel is on (its ranks hold the same parameters too)."""
        if not self.cp_enabled:
            return mesh["dp_shard"]
        return mesh["dp_shard", "cp"]._flatten("dp_shard_cp")
