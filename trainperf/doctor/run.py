"""The order of ``trainperf doctor``'s checks, on one process or on every rank under torchrun.

Under torchrun every rank times its own GPU's GEMM (rank 0 gathers them) and joins the
all-reduce; the rest runs on rank 0 only, which alone returns the checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainperf.atomic import write_text_atomic
from trainperf.config import Config
from trainperf.doctor import Check, run_checks
from trainperf.doctor import gpu as G
from trainperf.doctor import host as H
from trainperf.doctor.consistency import config_checks, system_for
from trainperf.launch.systems import SystemPreset
from trainperf.train.distributed import DistEnv

ALLREDUCE_MIB_CUDA = (64, 256, 1024)
ALLREDUCE_MIB_CPU = (1, 4, 16)
"""Buffer sizes of the all-reduce test; gloo on CPU takes small ones (the test stays quick)."""


@dataclass
class DoctorOptions:
    cfg: Config
    explicit_data_dir: bool
    """--data-dir was given: a missing folder is a failed check."""
    nproc: int = 1
    nnodes: int = 1
    system: SystemPreset | None = None
    """--system NAME (its GPUs and memory for the config checks); None: the detected GPUs."""
    gemm_size: int = 8192
    allreduce_mib: tuple[int, ...] | None = None
    md5: bool = False
    launch_failure: str | None = None
    """Set when the torchrun ranks did not finish: the all-reduce check fails with it."""


def diagnose(opts: DoctorOptions, env: DistEnv) -> list[Check] | None:
    """Every check in order; call it on every rank. The checks on rank 0, None on the others."""
    gpus: list[G.GpuInfo] = []
    checks: list[Check] = []
    if env.is_main:
        checks += run_checks([("GPUs visible", lambda: _visible(gpus))])
        checks += run_checks(
            [("versions", lambda: G.local_versions(gpus)),
             ("GPU free memory", lambda: G.free_memory_check(gpus))]
        )  # fmt: skip
    gemm = _gemm(opts, env, gpus)
    allreduce = _allreduce(opts, env, gpus)
    if not env.is_main:
        return None
    checks += [gemm, allreduce]
    checks += run_checks(_host_steps(opts, env, gpus))
    return checks


def _visible(out: list[G.GpuInfo]) -> Check:
    import torch

    out += G.local_gpus()
    return G.gpus_check(out, torch_cuda=torch.version.cuda, driver_cuda=G.driver_versions()[1])


def _gemm(opts: DoctorOptions, env: DistEnv, gpus: list[G.GpuInfo]) -> Check:
    import torch

    n = opts.gemm_size
    if not env.enabled:
        return run_checks(
            [("bf16 GEMM", lambda: G.gemm_check(
                [(g.name, G.measure_gemm_tflops(torch.device("cuda", g.index), n=n))
                 for g in gpus], n=n))]
        )[0]  # fmt: skip
    mine: object = None
    if torch.cuda.is_available():
        try:
            device = torch.device("cuda", env.local_rank)
            mine = (torch.cuda.get_device_name(device), G.measure_gemm_tflops(device, n=n))
        except Exception as exc:  # sent to rank 0 as the reason
            mine = f"rank {env.rank}: {type(exc).__name__}: {exc}"
    gathered: list[object] = [None] * env.world_size
    import torch.distributed as dist

    dist.all_gather_object(gathered, mine)
    if not env.is_main:
        return Check("bf16 GEMM", "skip", "")
    errors = [g for g in gathered if isinstance(g, str)]
    if errors:
        return Check("bf16 GEMM", "fail", errors[0], "rerun with TRAINPERF_DEBUG=1")
    return G.gemm_check([g for g in gathered if isinstance(g, tuple)], n=n)


def _allreduce(opts: DoctorOptions, env: DistEnv, gpus: list[G.GpuInfo]) -> Check:
    import torch

    name = "all-reduce"
    if opts.launch_failure:
        return Check(name, "fail", opts.launch_failure, "see the ranks' errors above")
    if not env.enabled:
        why = "one GPU: nothing to all-reduce with" if len(gpus) == 1 else "one process"
        fix = "" if len(gpus) == 1 else "--nproc N (default: every local GPU when more than one)"
        return Check(name, "skip", why, fix)
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
    mib = opts.allreduce_mib or (ALLREDUCE_MIB_CUDA if cuda else ALLREDUCE_MIB_CPU)
    dtype = torch.bfloat16 if cuda else torch.float32
    iters = (5, 20) if cuda else (1, 3)
    results = G.measure_allreduce(
        [m * 2**20 for m in mib], device=device, dtype=dtype, warmup=iters[0], iters=iters[1]
    )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))
    from trainperf.perf.peaks import device_key

    return G.allreduce_check(
        results,
        world_size=env.world_size,
        nodes=max(1, env.world_size // local),
        backend=dist.get_backend(),
        accelerator=(device_key(gpus[0].name) or "gpu") if gpus else "cpu",
        dtype=str(dtype).removeprefix("torch."),
    )


def _host_steps(opts: DoctorOptions, env: DistEnv, gpus: list[G.GpuInfo]):
    from trainperf.data.prepare import data_dir, data_paths, missing_files

    cfg = opts.cfg
    folder = data_dir(cfg)
    present = not missing_files(data_paths(cfg), cfg)
    reads = data_paths(cfg).root
    explicit = opts.explicit_data_dir
    return [
        ("data folder space", lambda: H.local_disk_space(
            cfg, folder, data_present=present, explicit=explicit)),
        ("data read speed", lambda: H.local_read_speed(reads if reads.is_dir() else folder)),
        ("prepared data", lambda: H.data_checks(cfg, md5=opts.md5)),
        ("config", lambda: config_checks(cfg, system=_system(opts, env))),
    ]  # fmt: skip


def _system(opts: DoctorOptions, env: DistEnv) -> SystemPreset:
    from trainperf.launch.systems import detect_system

    if opts.system is not None:
        return opts.system
    if env.enabled:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))
        return system_for(detect_system(), nproc=local, nnodes=env.world_size // local)
    return system_for(detect_system(), nproc=opts.nproc, nnodes=opts.nnodes)


def write_report(path: Path, payload: dict) -> None:
    import json

    write_text_atomic(path, json.dumps(payload))
