"""The CLI's error handling around any command (the commands themselves: tests/integration)."""

import pytest
import torch

from trainperf import cli


def test_cuda_out_of_memory_is_one_message_with_fixes(monkeypatch, capsys) -> None:
    def step(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 448.00 MiB.\nmore")

    monkeypatch.setitem(cli.COMMANDS, "perf", step)
    monkeypatch.delenv("TRAINPERF_DEBUG", raising=False)
    assert cli.main(["perf"]) == cli.EXIT_USER_ERROR
    out = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "ran out of memory (CUDA out of memory. Tried to allocate 448.00 MiB)" in out
    assert "activation_checkpointing=full" in out and "Traceback" not in out


def test_other_errors_are_not_swallowed(monkeypatch) -> None:
    def step(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "perf", step)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["perf"])
