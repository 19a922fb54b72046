"""The doctor's launch options: ranks per node and the all-reduce sizes, checked."""

import pytest
import torch

from trainperf.doctor.launch import doctor_nproc, parse_mib_list


def test_mib_list() -> None:
    assert parse_mib_list(None) is None
    assert parse_mib_list("64, 256,1024,") == (64, 256, 1024)
    for bad in ("", "x", "0,4", "-1"):
        with pytest.raises(ValueError, match="give positive MiB sizes"):
            parse_mib_list(bad)


def _nproc(nproc, **kw):
    options = {"nnodes": 1, "gemm_size": 8192, "rdzv_endpoint": None, "slurm_submits": False}
    return doctor_nproc(nproc, **{**options, **kw})


def test_nproc_default_and_refusals() -> None:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert _nproc(None) == (gpus if gpus > 1 else 1)
    assert _nproc(8, slurm_submits=True) == 8  # the GPUs are on the nodes, not here
    with pytest.raises(ValueError, match="--launcher slurm needs --nproc G"):
        _nproc(None, slurm_submits=True)
    with pytest.raises(ValueError, match=r"^--nproc\(0\) must be >= 1; --gemm-size\(8\) must"):
        _nproc(0, gemm_size=8)
    with pytest.raises(ValueError, match="needs --rdzv-endpoint"):
        _nproc(1, nnodes=2)
