"""GPU checks: visible devices, versions, free memory, bf16 GEMM rate, all-reduce bandwidth.

The measuring functions (``measure_*``) touch the hardware; the judging functions (``*_check``)
take plain numbers, so the thresholds are tested without a GPU.

Thresholds:

- GEMM: a bf16 matmul (8192^3 by default) against the device's dense bf16 peak
  (``trainperf.perf.peaks.DEVICE_PEAKS``): pass at >= 60 % of the peak, warn at >= 40 %, else
  fail. cuBLAS reaches about 70-80 % on H100/H200 SXM at this size; a GPU held back by its clocks,
  power cap or temperature, or another process, lands below.
- all-reduce: bus bandwidth as nccl-tests reports it, busbw = algbw x 2(n-1)/n with algbw =
  bytes / time, at the largest size measured. Within one node: H100/H200 (NVLink 4) pass above
  300 GB/s (a DGX H100 shows 350-480 with NVLink SHARP off), warn above 100 (PCIe-class), else
  fail; B200 (NVLink 5, twice the links' rate) 600 / 200, scaled from H100, not measured here.
  Across nodes the NIC bounds it: pass above 40 GB/s (one 400 Gb/s NIC per GPU), warn above 10.
  Other devices and gloo on CPU have no expected rate: the value is reported, status pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from trainperf.doctor import Check

GIB = 2**30
MIN_TORCH = (2, 11)
GEMM_PASS, GEMM_WARN = 0.60, 0.40
FREE_PASS, FREE_WARN = 0.90, 0.50
BUSBW_GBS: dict[str, tuple[float, float]] = {
    "h100": (300.0, 100.0),
    "h200": (300.0, 100.0),
    "b200": (600.0, 200.0),
}
"""(pass above, warn above) all-reduce bus bandwidth in GB/s within one node, per accelerator."""
BUSBW_MULTINODE_GBS = (40.0, 10.0)
CUDA_TORCH_FIX = (
    "install a CUDA build of torch (pip install 'torch>=2.11' from download.pytorch.org/whl/cu128)"
)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_gib: float
    free_gib: float
    capability: tuple[int, int]


def local_gpus() -> list[GpuInfo]:
    """The CUDA devices this process sees (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(GpuInfo(i, props.name, total / GIB, free / GIB, (props.major, props.minor)))
    return out


def _nvidia_smi(*args: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = subprocess.run(
            ["nvidia-smi", *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def driver_versions() -> tuple[str | None, str | None]:
    """(driver version, the highest CUDA version the driver supports) from nvidia-smi."""
    header = _nvidia_smi()
    driver = re.search(r"Driver Version:\s*([\d.]+)", header or "")
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header or "")
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def gpus_check(
    gpus: Sequence[GpuInfo], *, torch_cuda: str | None, driver_cuda: str | None = None
) -> Check:
    """pass with the devices; no GPU is a warn (trainperf still runs on CPU) with the likely fix."""
    if gpus:
        names = sorted({g.name for g in gpus})
        caps = sorted({f"sm {g.capability[0]}.{g.capability[1]}" for g in gpus})
        value = f"{len(gpus)} x {', '.join(names)} ({', '.join(caps)})"
        return Check("GPUs visible", "pass", value)
    if torch_cuda is None:
        return Check("GPUs visible", "warn", "no GPU: this torch is a CPU build", CUDA_TORCH_FIX)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if driver_cuda and _version_tuple(driver_cuda) < _version_tuple(torch_cuda):
        return Check(
            "GPUs visible",
            "warn",
            f"no GPU: the driver supports CUDA {driver_cuda}, torch is built for {torch_cuda}",
            f"update the NVIDIA driver, or install a torch built for CUDA <= {driver_cuda}",
        )
    where = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "nvidia-smi"
    return Check(
        "GPUs visible",
        "warn",
        f"no GPU visible to torch (CUDA {torch_cuda} build)",
        f"check {where}: does nvidia-smi list the GPUs, is CUDA_VISIBLE_DEVICES right?",
    )


def versions_check(
    *,
    torch_version: str,
    torch_cuda: str | None,
    driver: str | None,
    driver_cuda: str | None,
    nccl: str | None,
    rocm: str | None = None,
) -> Check:
    """torch >= 2.11 (fail below), and a driver new enough for torch's CUDA (warn)."""
    build = f"CUDA {torch_cuda}" if torch_cuda else f"ROCm {rocm}" if rocm else "CPU build"
    parts = [f"torch {torch_version}", build]
    if driver:
        parts.append(f"driver {driver} (CUDA <= {driver_cuda})")
    if nccl:
        parts.append(f"NCCL {nccl}")
    value = ", ".join(parts)
    if _version_tuple(torch_version) < MIN_TORCH:
        fix = "trainperf needs torch >= 2.11: pip install -U 'torch>=2.11'"
        return Check("versions", "fail", value, fix)
    if torch_cuda and driver_cuda and _version_tuple(driver_cuda) < _version_tuple(torch_cuda):
        fix = f"update the NVIDIA driver (it supports CUDA {driver_cuda}, torch needs {torch_cuda})"
        return Check("versions", "warn", value, fix)
    return Check("versions", "pass", value)


def local_versions(gpus: Sequence[GpuInfo]) -> Check:
    import torch

    driver, driver_cuda = driver_versions() if gpus or torch.version.cuda else (None, None)
    nccl = None
    if gpus and torch.distributed.is_nccl_available():
        version = torch.cuda.nccl.version()
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return versions_check(
        torch_version=torch.__version__.split("+")[0],
        torch_cuda=torch.version.cuda,
        driver=driver,
        driver_cuda=driver_cuda,
        nccl=nccl,
        rocm=torch.version.hip,
    )


def free_memory_check(gpus: Sequence[GpuInfo]) -> Check:
    """The least free GPU: pass above 90 % free, warn above 50 %, else fail (another process)."""
    if not gpus:
        return Check("GPU free memory", "skip", "no GPU")
    worst = min(gpus, key=lambda g: g.free_gib / g.total_gib)
    frac = worst.free_gib / worst.total_gib
    value = f"least free: GPU {worst.index} {worst.free_gib:.1f} of {worst.total_gib:.1f} GiB"
    if frac >= FREE_PASS:
        return Check("GPU free memory", "pass", value)
    fix = "another process holds GPU memory: find it with nvidia-smi and stop it"
    return Check("GPU free memory", "warn" if frac >= FREE_WARN else "fail", value, fix)


def measure_gemm_tflops(device, *, n: int = 8192, warmup: int = 5, iters: int = 20) -> float:
    """TFLOP/s of an (n x n) @ (n x n) bf16 matmul on a CUDA `device`, timed with CUDA events."""
    import torch

    with torch.cuda.device(device):
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
        for _ in range(warmup):
            torch.matmul(a, b, out=c)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(iters):
            torch.matmul(a, b, out=c)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / iters
        del a, b, c
    return 2 * n**3 / seconds / 1e12


def gemm_check(results: Sequence[tuple[str, float]], *, n: int) -> Check:
    """`results`: (device name, TFLOP/s) per GPU; judged by the slowest against its dense peak."""
    from trainperf.perf.peaks import DEVICE_PEAKS, device_key

    if not results:
        return Check("bf16 GEMM", "skip", "no GPU")
    name, tflops = min(results, key=lambda r: r[1])
    spread = f" (slowest of {len(results)} GPUs)" if len(results) > 1 else ""
    peak = DEVICE_PEAKS.get(device_key(name) or "", {}).get("bf16")
    if peak is None:
        value = f"{tflops:.0f} TFLOP/s at {n}^3{spread} on {name}"
        fix = f"no dense bf16 peak known for {name}: add it to perf/peaks.py DEVICE_PEAKS"
        return Check("bf16 GEMM", "warn", value, fix)
    frac = tflops / peak
    value = f"{tflops:.0f} TFLOP/s at {n}^3{spread}, {frac:.0%} of {name}'s {peak:g} dense peak"
    if frac >= GEMM_PASS:
        return Check("bf16 GEMM", "pass", value)
    fix = (
        "check clocks, power cap and temperature (nvidia-smi -q -d CLOCK,POWER,TEMPERATURE) and "
        "that no other process uses the GPU"
    )
    return Check("bf16 GEMM", "warn" if frac >= GEMM_WARN else "fail", value, fix)


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' all-reduce bus bandwidth: algbw x 2(n-1)/n (what each link carries)."""
    return algbw * 2 * (world_size - 1) / world_size


def measure_allreduce(
    sizes: Sequence[int], *, device, dtype, warmup: int = 5, iters: int = 20
) -> list[tuple[int, float]]:
    """(bytes, seconds per all-reduce) for each buffer size, the slowest rank's time. Every rank
    of the default process group must call it."""
    import torch
    import torch.distributed as dist

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = []
    for size in sizes:
        buf = torch.zeros(max(1, size // dtype.itemsize), dtype=dtype, device=device)
        for _ in range(warmup):
            dist.all_reduce(buf)
        sync()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(buf)
        sync()
        elapsed = torch.tensor([(time.perf_counter() - start) / iters], device=device)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        out.append((buf.numel() * buf.element_size(), float(elapsed.item())))
        del buf
    return out


def allreduce_check(
    results: Sequence[tuple[int, float]],
    *,
    world_size: int,
    nodes: int,
    backend: str,
    accelerator: str,
    dtype: str,
) -> Check:
    """Judge the largest size's bus bandwidth (GB/s, 1e9 bytes) against the known system."""
    size, seconds = max(results)
    algbw = size / seconds / 1e9
    busbw = bus_bandwidth(algbw, world_size)
    where = f"{world_size} ranks" + (f" on {nodes} nodes" if nodes > 1 else "")
    value = (
        f"busbw {busbw:.1f} GB/s (algbw {algbw:.1f}) at {size / 2**20:.0f} MiB {dtype}, {where}, "
        f"{backend}"
    )
    name = "all-reduce"
    limits = BUSBW_MULTINODE_GBS if nodes > 1 else BUSBW_GBS.get(accelerator)
    if limits is None or backend != "nccl":
        return Check(name, "pass", value + " (no expected rate for this device)")
    good, poor = limits
    if busbw > good:
        return Check(name, "pass", value + f" (> {good:g} expected)")
    fix = (
        "check the links: nvidia-smi topo -m (NVLink, not PCIe), NCCL_DEBUG=INFO for the "
        "transport, and that no other job shares the GPUs"
        if nodes == 1
        else "check the NICs: NCCL_DEBUG=INFO should show NET/IB on every GPU's rail"
    )
    return Check(name, "warn" if busbw > poor else "fail", value + f" (expected > {good:g})", fix)
