"""How a run is launched: refused combinations, and a set whose run fails for bad input."""

import sys
from pathlib import Path

import pytest
from rich.console import Console

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.launch import runset
from trainperf.launch.local import RunRequest, launch_run
from trainperf.launch.slurm import SlurmRequest

QUIET = Console(quiet=True)


def _cfg(tmp_path: Path):
    return apply_overrides(get_default_config("llama31_8b", "tiny"),
                           [f"log.results_dir={tmp_path / 'r'}"])  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (RunRequest(argv=["run"], nproc=0), r"--nproc\(0\) must be >= 1"),
        (RunRequest(argv=["run"], nnodes=0), r"--nnodes\(0\) must be >= 1"),
        (RunRequest(argv=["run"], slurm=SlurmRequest("slurm", nodes=0)), r"--nodes\(0\) must"),
        (RunRequest(argv=["run"], nexp=2, nnodes=2), "runs through Slurm"),
        (RunRequest(argv=["run"], nnodes=2), "needs --rdzv-endpoint"),
    ],
)
def test_refused_before_anything_starts(tmp_path: Path, request_, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        launch_run(_cfg(tmp_path), request_, console=QUIET, out=QUIET)


def test_a_set_under_torchrun_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="not under torchrun"):
        launch_run(_cfg(tmp_path), RunRequest(argv=["run"], nexp=2), console=QUIET, out=QUIET)


def test_set_runs_each_index_in_its_own_process_and_stops_at_bad_input(
    tmp_path: Path, monkeypatch
) -> None:
    commands: list[list[str]] = []

    def fake_wait(command: list[str], **_) -> int:
        commands.append(command)
        return 2  # the run's exit status for bad input

    monkeypatch.setattr(runset, "wait_for_run", fake_wait)
    monkeypatch.setattr("trainperf.launch.prepare.prepare_run", lambda cfg, progress: None)
    argv = ["run", "--nexp", "3", "--seed", "10", "--results", str(tmp_path / "r")]
    request = RunRequest(argv=argv, nexp=3, seed=10)
    assert launch_run(_cfg(tmp_path), request, console=QUIET, out=QUIET) == 2
    (command,) = commands  # every later run would fail the same way
    assert command[:3] == [sys.executable, "-m", "trainperf"]
    assert command[3:] == ["run", "--results", str(tmp_path / "r"), "--seed", "10",
                           "--run-index", "0"]  # fmt: skip
    assert (tmp_path / "r" / "runset.json").read_text() == '{"nexp": 3}\n'
