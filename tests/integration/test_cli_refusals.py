"""Requests that cannot work are refused by the real CLI before any model is built: one
message with the numbers and the fix, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest


def _refused(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("error:") == 1, proc.stderr
    return " ".join(proc.stderr.split())


@pytest.mark.parametrize("command", ["run", "perf"])
def test_tensor_parallel_beyond_the_ranks_is_refused(command, tmp_path: Path, trainperf) -> None:
    extra = ["--results", str(tmp_path)] if command == "run" else []
    err = _refused(trainperf(command, "parallel.tp=2", *extra))
    assert "parallel.tp(2) needs 2 ranks, and this run has 1" in err and "--nproc 2" in err
    assert not list(tmp_path.iterdir())


def test_tensor_parallel_that_does_not_divide_the_heads_is_refused(trainperf) -> None:
    err = _refused(trainperf("run", "--no-progress", "parallel.tp=3", "--nproc", "3"))
    assert "tp(3) must divide n_heads(4); try tp in {1, 2}" in err


@pytest.mark.parametrize("command", ["run", "perf"])
def test_master_weights_in_the_optimizer_where_they_cannot_be_is_refused(
    command, tmp_path: Path, trainperf
) -> None:
    """float32 compute (tiny on CPU) has no bf16 copies to keep."""
    extra = ["--results", str(tmp_path)] if command == "run" else []
    err = _refused(trainperf(command, "train.master_weights=optimizer", *extra))
    assert "train.master_weights=optimizer does not apply: the compute dtype is float32" in err
    assert "use train.master_weights=model (or auto, which chooses)" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["run", "perf"])
def test_a_model_too_big_for_the_machine_is_refused(command, trainperf) -> None:
    err = _refused(trainperf(command, "llama31_405b", "--scale", "full", "train.device=cpu"))
    assert "llama31_405b at scale full does not fit: it needs ~" in err
    assert "GiB for 1 CPU rank(s)" in err and "this machine's available RAM is" in err
    assert "--scale tiny" in err and "TRAINPERF_SKIP_MEMORY_CHECK=1" in err


@pytest.mark.parametrize(
    "args",
    [
        ["run", "deepseekv3_671b"],
        ["run", "deepseekv3_671b", "--scale", "full", "--nproc", "8"],
        ["perf", "deepseekv3_671b"],
        ["doctor", "deepseekv3_671b"],
        ["systems", "deepseekv3_671b"],
        ["prepare", "deepseekv3_671b", "--scale", "full"],
    ],
    ids=lambda args: "-".join(args),
)
def test_a_benchmark_without_a_model_family_is_refused(args, trainperf) -> None:
    err = _refused(trainperf(*args))
    assert err.startswith(
        "error: deepseekv3_671b cannot be trained with trainperf: there is no DeepSeek-V3 "
        "model family under trainperf/models (multi-head latent attention"
    )
    assert "multi-token prediction are not implemented" in err
    assert "MLCommons members only" in err and "score, check, watch and report" in err


def test_estimate_has_no_deepseek_model_to_count(trainperf) -> None:
    err = _refused(trainperf("estimate", "--model", "deepseek-v3-671b", "--seq", "4096",
                             "--gbs", "16384", "--step-time", "10", "--gpus", "256",
                             "--device", "h200"))  # fmt: skip
    assert "unknown model 'deepseek-v3-671b'" in err
