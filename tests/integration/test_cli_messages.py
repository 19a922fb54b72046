"""The real CLI's short messages: a run that ends before its first evaluation says so (not
"last eval None"), estimate's recipe note is key=value (not a Python dict)."""

from __future__ import annotations

from pathlib import Path


def test_a_run_too_short_to_evaluate_says_why(tmp_path: Path, trainperf) -> None:
    proc = trainperf(
        "run",
        "--no-progress",
        "--results",
        str(tmp_path),
        "--seed",
        "1",
        "train.max_steps=3",
        "train.warmup_steps=0",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "aborted: not converged: target 3.7 not reached in 3 steps; no evaluation ran: max_steps "
        "3 x GBS 16 = 48 samples ends before the first evaluation at 512 samples; raise "
        "train.max_steps"
    ) in proc.stdout
    assert "None" not in proc.stdout


def test_estimate_note_names_the_recipe_convention(trainperf) -> None:
    proc = trainperf(
        "estimate",
        *("--model", "llama3.1-405b", "--seq", "8192", "--gbs", "252", "--step-time", "11.24"),
        *("--gpus", "576", "--device", "h100", "--dtype", "fp8"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "(NVIDIA recipe convention n_kv_heads=16; the model itself gives" in proc.stdout
    assert "{" not in proc.stdout
