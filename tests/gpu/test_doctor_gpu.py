"""On CUDA GPUs: doctor's GEMM check passes on an H100/H200, its all-reduce runs over every GPU.

Run on the device machine (bench/doctor_gpu.sh does): ``python -m pytest -m gpu
tests/gpu/test_doctor_gpu.py -o addopts=""``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from trainperf.doctor import gpu as G

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
HOPPER = torch.cuda.is_available() and any(
    k in torch.cuda.get_device_name(0) for k in ("H100", "H200")
)
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def _doctor(*args: str) -> tuple[int, dict, str]:
    multicast_off = {
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
    }
    env = {**os.environ, **multicast_off}
    proc = subprocess.run(
        [sys.executable, "-m", "trainperf", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_local_gpu_checks_pass() -> None:
    gpus = G.local_gpus()
    assert G.gpus_check(gpus, torch_cuda=torch.version.cuda).status == "pass"
    assert G.local_versions(gpus).status != "fail"
    assert G.free_memory_check(gpus).status in ("pass", "warn")


@pytest.mark.skipif(not HOPPER, reason="the dense peak and the 60% threshold are H100/H200's")
def test_gemm_reaches_60_percent_of_the_dense_peak_on_hopper() -> None:
    device = torch.device("cuda", 0)
    tflops = G.measure_gemm_tflops(device, n=8192)
    check = G.gemm_check([(torch.cuda.get_device_name(0), tflops)], n=8192)
    assert check.status == "pass", check.value
    assert 500 < tflops < 989.4, tflops  # below the dense peak: the timing is real


def test_doctor_on_one_gpu() -> None:
    rc, report, err = _doctor("--nproc", "1")
    checks = _by_name(report)
    assert checks["GPUs visible"]["status"] == "pass"
    assert checks["bf16 GEMM"]["status"] in (("pass",) if HOPPER else ("pass", "warn"))
    assert checks["all-reduce"]["status"] == "skip"
    assert checks["config: memory estimate"]["status"] != "skip"  # the GPU's memory is known
    assert rc == (1 if report["overall"] == "fail" else 0), err


@pytest.mark.skipif(GPUS < 2, reason="the all-reduce needs two GPUs or more")
def test_nccl_all_reduce_over_every_gpu() -> None:
    # micro-batch 1: the tiny GBS 16 splits over 1, 2, 4, 8 or 16 ranks
    rc, report, err = _doctor("--nproc", str(GPUS), "train.micro_batch_size=1")
    assert report["world_size"] == GPUS, err
    check = _by_name(report)["all-reduce"]
    assert f"{GPUS} ranks, nccl" in check["value"] and "1024 MiB bfloat16" in check["value"]
    busbw = float(check["value"].split()[1])
    assert busbw > 100.0, check  # PCIe-class at worst; NVLink H100/H200 pass above 300
    if HOPPER:
        assert check["status"] == "pass", check
    assert rc in (0, 1), err
