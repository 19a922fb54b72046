"""ParallelDims: -1 resolution, the checked messages, and the mesh on a one-rank gloo group."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from trainperf.models.llama.model import get_llama_config
from trainperf.models.llama.parallelize import tp_sizes
from trainperf.parallel import ParallelDims


def test_dp_shard_minus_one_takes_the_rest() -> None:
    dims = ParallelDims(tp=2, world_size=8)
    assert (dims.dp_shard, dims.tp) == (4, 2)
    assert dims.dp_enabled and dims.tp_enabled


def test_defaults_are_one_rank_without_parallelism() -> None:
    dims = ParallelDims()
    assert (dims.dp_shard, dims.tp, dims.world_size) == (1, 1, 1)
    assert not dims.dp_enabled and not dims.tp_enabled


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tp": 3, "world_size": 8},
            r"tp\(3\) must divide world_size\(8\); try tp in \{1, 2, 4, 8\}",
        ),
        (
            {"dp_shard": 2, "tp": 2, "world_size": 8},
            r"dp_shard\(2\) \* tp\(2\) = 4 must equal world_size\(8\)",
        ),
        ({"tp": 0, "world_size": 2}, r"tp\(0\) must be >= 1"),
        ({"dp_shard": 0, "world_size": 2}, r"dp_shard\(0\) must be >= 1, or -1"),
        ({"world_size": 0}, r"world_size\(0\) must be >= 1"),
        ({"ep": 3, "world_size": 4}, r"ep\(3\) must divide the data-parallel ranks dp_shard\(4\)"),
        ({"ep": 2, "tp": 2, "world_size": 4}, r"expert parallel ep\(2\) with tp\(2\)"),
        ({"ep": 0, "world_size": 2}, r"ep\(0\) must be >= 1"),
    ],
)
def test_bad_sizes_say_what_to_do(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParallelDims(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "tp", "message"),
    [
        ({}, 4, r"tp\(4\) must divide n_kv_heads\(2\); try tp in \{1, 2\}"),
        (
            {"n_heads": 6, "n_kv_heads": 6, "dim": 96},
            4,
            r"tp\(4\) must divide n_heads\(6\); try tp in \{1, 2\}",
        ),
        ({"ffn_dim": 129}, 2, r"tp\(2\) must divide ffn_dim\(129\); try tp in \{1\}"),
        ({"vocab_size": 255}, 2, r"tp\(2\) must divide vocab_size\(255\); try tp in \{1\}"),
    ],
)
def test_tp_must_split_the_model_evenly(overrides: dict, tp: int, message: str) -> None:
    cfg = get_llama_config("debug", **overrides)
    with pytest.raises(ValueError, match=message):
        ParallelDims(tp=tp, world_size=tp).validate_sizes(tp_sizes(cfg))


def test_llama31_8b_suggests_the_tp_that_work() -> None:
    cfg = get_llama_config("llama3.1-8b")
    with pytest.raises(
        ValueError, match=r"tp\(3\) must divide n_heads\(32\); try tp in \{1, 2, 4, 8\}"
    ):
        ParallelDims(tp=3, world_size=3).validate_sizes(tp_sizes(cfg))
    ParallelDims(tp=8, world_size=64).validate_sizes(tp_sizes(cfg), seq_len=8192)


def test_sequence_parallel_needs_tp_to_divide_seq_len() -> None:
    cfg = get_llama_config("debug")
    dims = ParallelDims(tp=2, world_size=2)
    dims.validate_sizes(tp_sizes(cfg), seq_len=64)
    with pytest.raises(ValueError, match=r"tp\(2\) must divide seq_len\(63\)"):
        dims.validate_sizes(tp_sizes(cfg), seq_len=63)


def test_build_mesh_needs_an_initialized_process_group() -> None:
    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    with pytest.raises(ValueError, match="init_process_group"):
        ParallelDims().build_mesh("cpu")


def test_build_mesh_is_3d_with_size_one_dims(one_rank_group: None) -> None:
    with pytest.raises(ValueError, match=r"world_size\(2\) != torch.distributed world size \(1\)"):
        ParallelDims(world_size=2, tp=2).build_mesh("cpu")
    mesh = ParallelDims().build_mesh("cpu")
    assert mesh.mesh_dim_names == ("dp_shard", "cp", "tp")
    assert tuple(mesh.shape) == (1, 1, 1)
    assert mesh["tp"].size() == 1 and mesh["dp_shard"].size() == 1 and mesh["cp"].size() == 1
