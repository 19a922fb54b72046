"""Starting this command again under torchrun: the options its ranks must not see."""

import pytest
from rich.console import Console

from trainperf.launch import torchrun
from trainperf.launch.torchrun import TORCHRUN_OPTIONS, relaunch_with_torchrun, without_options


def test_without_options_either_spelling_keeps_the_rest_in_order() -> None:
    argv = ["run", "llama31_8b", "--nproc", "2", "--results=r", "--nnodes=2", "--seed", "3",
            "--resume", "train.lr=1e-3", "--rdzv-id", "x"]  # fmt: skip
    options = {"--nproc": True, "--nnodes": True, "--resume": False, "--rdzv-id": True}
    assert without_options(argv, options) == [
        "run", "llama31_8b", "--results=r", "--seed", "3", "train.lr=1e-3"
    ]  # fmt: skip


def test_without_options_never_drops_a_value_given_with_equals_or_a_prefix_match() -> None:
    # '--nproc=2' takes its value along: the item after it stays; '--nprocs' is another option
    argv = ["perf", "--nproc=2", "--steps", "5", "--nprocs", "4"]
    assert without_options(argv, {"--nproc": True}) == ["perf", "--steps", "5", "--nprocs", "4"]
    assert without_options([], TORCHRUN_OPTIONS) == []
    assert without_options(["--dry-run", "x"], {"--dry-run": False}) == ["x"]


@pytest.fixture
def torchrun_calls(monkeypatch):
    calls: list[list[str]] = []
    import torch.distributed.run

    monkeypatch.setattr(torch.distributed.run, "main", lambda args: calls.append(args))
    return calls


def test_one_node_is_standalone_without_the_launch_options(torchrun_calls) -> None:
    argv = ["run", "--nproc", "4", "--rdzv-id=a", "train.lr=1e-3"]
    assert relaunch_with_torchrun(argv, 4, console=Console(quiet=True)) == 0
    assert torchrun_calls == [
        ["--standalone", "--nproc-per-node=4", "-m", "trainperf", "run", "train.lr=1e-3"]
    ]


def test_several_nodes_meet_at_the_endpoint(torchrun_calls) -> None:
    argv = ["run", "--nnodes", "2", "--rdzv-endpoint", "h:1", "--nproc=8"]
    rc = relaunch_with_torchrun(
        argv, 8, console=Console(quiet=True), nnodes=2, endpoint="h:1", rdzv_id="job"
    )
    assert rc == 0
    assert torchrun_calls == [
        ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:1", "--rdzv-id=job",
         "--nproc-per-node=8", "-m", "trainperf", "run"]
    ]  # fmt: skip


def test_a_failed_rank_is_exit_1(monkeypatch) -> None:
    import torch.distributed.run

    def fail(args):
        raise RuntimeError("ChildFailedError")

    monkeypatch.setattr(torch.distributed.run, "main", fail)
    assert torchrun.relaunch_with_torchrun(["run"], 2, console=Console(quiet=True)) == 1
