"""`trainperf doctor` through the real CLI on this machine (CPU: the GPU checks warn or skip)."""

from __future__ import annotations

import json

import pytest
import torch

from trainperf import cli

CHECKS = [
    "GPUs visible",
    "versions",
    "GPU free memory",
    "bf16 GEMM",
    "all-reduce",
    "data folder space",
    "data read speed",
    "prepared data",
    "config: eval interval",
    "config: batch split",
    "config: steps reach an eval",
    "config: tensor parallel",
    "config: memory estimate",
]
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's findings")


@cpu_only
def test_doctor_on_cpu_warns_no_gpu_and_exits_0(trainperf) -> None:
    proc = trainperf("doctor")
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "GPUs visible │ warn │ no GPU" in out and "CUDA build of torch" in out
    assert "bf16 GEMM │ skip" in out and "doctor: warn (" in out
    assert "Traceback" not in proc.stdout + proc.stderr


@cpu_only
def test_doctor_json_has_every_check_and_a_missing_data_dir_fails(trainperf, tmp_path) -> None:
    missing = tmp_path / "no-such-folder"
    proc = trainperf("doctor", "--json", "--data-dir", str(missing), "--scale", "tiny")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert report["overall"] == "fail" and report["world_size"] == 1
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["data folder space"] == "fail" and status["GPUs visible"] == "warn"
    assert all(c["status"] in ("pass", "warn", "fail", "skip") for c in report["checks"])


def test_doctor_bad_input_is_one_line_exit_2(trainperf, capsys) -> None:
    proc = trainperf("doctor", "llama99")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown benchmark 'llama99'")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # the same handling in-process (saves a start-up): a bad override, an impossible --nproc
    assert cli.main(["doctor", "train.nope=1"]) == 2
    assert cli.main(["doctor", "--nproc", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.nope'" in err and "--nproc(0) must be >= 1" in err


@cpu_only
def test_doctor_all_reduce_over_two_gloo_processes(trainperf) -> None:
    # GBS 16 over 2 ranks: micro-batch 8 splits it (the tiny default, 16, would fail the check)
    proc = trainperf("doctor", "--nproc", "2", "--json", "train.micro_batch_size=8")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["world_size"] == 2 and [c["name"] for c in report["checks"]] == CHECKS
    (allreduce,) = [c for c in report["checks"] if c["name"] == "all-reduce"]
    assert allreduce["status"] == "pass"
    assert "2 ranks, gloo" in allreduce["value"] and "at 16 MiB float32" in allreduce["value"]
    (split,) = [c for c in report["checks"] if c["name"] == "config: batch split"]
    assert split["value"].startswith("GBS 16 = 2 dp x micro-batch 8")
