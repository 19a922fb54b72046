"""trainperf doctor's checks: the judging logic with pinned numbers, the hardware faked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.doctor import (
    Check,
    checks_from_dict,
    overall,
    report_to_dict,
    run_checks,
    summary_line,
)
from trainperf.doctor import consistency as K
from trainperf.doctor import gpu as G
from trainperf.doctor import host as H
from trainperf.launch.systems import SYSTEMS

H100 = "NVIDIA H100 80GB HBM3"


# ---- the frame -----------------------------------------------------------------------------------


def test_run_checks_turns_an_error_into_a_fail_and_goes_on() -> None:
    def broken() -> Check:
        raise OSError("disk on fire")

    checks = run_checks([("first", broken), ("second", lambda: Check("second", "pass", "ok"))])
    assert [(c.name, c.status) for c in checks] == [("first", "fail"), ("second", "pass")]
    assert "OSError: disk on fire" in checks[0].value and checks[0].fix


def test_overall_summary_and_json_round_trip() -> None:
    checks = [Check("a", "pass", "1"), Check("b", "warn", "2", "do x"), Check("c", "skip", "")]
    assert overall(checks) == "warn"
    assert overall([*checks, Check("d", "fail", "")]) == "fail"
    assert summary_line(checks) == "doctor: warn (1 pass, 1 warn, 1 skip)"
    payload = report_to_dict(checks, benchmark="llama31_8b")
    assert payload["overall"] == "warn" and payload["benchmark"] == "llama31_8b"
    assert checks_from_dict(payload) == checks
    with pytest.raises(AssertionError):
        Check("e", "ok", "")


# ---- GPUs ----------------------------------------------------------------------------------------


def test_no_gpu_is_a_warn_with_the_fix() -> None:
    cpu_build = G.gpus_check([], torch_cuda=None)
    assert cpu_build.status == "warn" and "CUDA build of torch" in cpu_build.fix
    hidden = G.gpus_check([], torch_cuda="12.8")
    assert hidden.status == "warn" and "CUDA_VISIBLE_DEVICES" in hidden.fix
    old_driver = G.gpus_check([], torch_cuda="12.8", driver_cuda="12.2")
    assert old_driver.status == "warn" and "driver" in old_driver.fix
    gpus = [G.GpuInfo(i, H100, 79.2, 78.5, (9, 0)) for i in range(8)]
    found = G.gpus_check(gpus, torch_cuda="12.8")
    assert found.status == "pass" and found.value == f"8 x {H100} (sm 9.0)"


def test_versions() -> None:
    ok = G.versions_check(
        torch_version="2.13.0", torch_cuda="12.8", driver="570.1", driver_cuda="12.8", nccl="2.27.3"
    )
    assert ok.status == "pass" and "NCCL 2.27.3" in ok.value
    old = G.versions_check(
        torch_version="2.10.1", torch_cuda=None, driver=None, driver_cuda=None, nccl=None
    )
    assert old.status == "fail" and "2.11" in old.fix
    stale = G.versions_check(
        torch_version="2.13.0", torch_cuda="12.8", driver="535", driver_cuda="12.2", nccl=None
    )
    assert stale.status == "warn"


def test_free_memory_thresholds() -> None:
    def gpu(free: float) -> G.GpuInfo:
        return G.GpuInfo(0, H100, 80.0, free, (9, 0))

    assert G.free_memory_check([gpu(79.0)]).status == "pass"
    assert G.free_memory_check([gpu(79.0), gpu(60.0)]).status == "warn"
    assert G.free_memory_check([gpu(30.0)]).status == "fail"
    assert G.free_memory_check([]).status == "skip"


@pytest.mark.parametrize(("tflops", "status"), [(700.0, "pass"), (500.0, "warn"), (300.0, "fail")])
def test_gemm_against_the_dense_peak(tflops: float, status: str) -> None:
    # H100 dense bf16 peak 989.4: 60 % = 593.6, 40 % = 395.8
    check = G.gemm_check([(H100, 750.0), (H100, tflops)], n=8192)
    assert check.status == status
    assert f"{tflops:.0f} TFLOP/s" in check.value and "slowest of 2" in check.value


def test_gemm_unknown_device_and_no_gpu() -> None:
    unknown = G.gemm_check([("NVIDIA A100-SXM4-80GB", 250.0)], n=8192)
    assert unknown.status == "warn" and "DEVICE_PEAKS" in unknown.fix
    assert G.gemm_check([], n=8192).status == "skip"


def test_bus_bandwidth_is_nccl_tests_formula() -> None:
    assert G.bus_bandwidth(200.0, 8) == 350.0  # 200 x 2 x 7 / 8
    assert G.bus_bandwidth(200.0, 2) == 200.0
    assert G.bus_bandwidth(200.0, 4) == 300.0


def _seconds_for(busbw_gbs: float, *, size: int, world: int) -> float:
    algbw = busbw_gbs / (2 * (world - 1) / world)
    return size / (algbw * 1e9)


@pytest.mark.parametrize(("busbw", "status"), [(350.0, "pass"), (200.0, "warn"), (50.0, "fail")])
def test_allreduce_thresholds_on_a_dgx_h100(busbw: float, status: str) -> None:
    big = 2**30
    results = [(64 * 2**20, 1.0), (big, _seconds_for(busbw, size=big, world=8))]
    check = G.allreduce_check(
        results, world_size=8, nodes=1, backend="nccl", accelerator="h100", dtype="bfloat16"
    )
    assert check.status == status
    assert f"busbw {busbw:.1f} GB/s" in check.value and "1024 MiB" in check.value


def test_allreduce_multinode_gloo_and_unknown() -> None:
    size = 2**30
    t = _seconds_for(45.0, size=size, world=16)
    multi = G.allreduce_check(
        [(size, t)], world_size=16, nodes=2, backend="nccl", accelerator="h100", dtype="bfloat16"
    )
    assert multi.status == "pass" and "on 2 nodes" in multi.value
    gloo = G.allreduce_check(
        [(size, 1.0)], world_size=2, nodes=1, backend="gloo", accelerator="cpu", dtype="float32"
    )
    assert gloo.status == "pass" and "gloo" in gloo.value and "no expected rate" in gloo.value


# ---- disk and data -------------------------------------------------------------------------------


def test_read_speed_of_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x01" * (3 * 2**20))
    nbytes, seconds, _ = H.measure_read(path, max_bytes=2 * 2**20)
    assert nbytes == 2 * 2**20 and seconds > 0
    assert H.largest_file(tmp_path) == path
    check = H.local_read_speed(tmp_path)
    assert check.status in ("pass", "warn") and "small sample" in check.value


def test_read_speed_thresholds() -> None:
    fast = H.read_speed_check(Path("x.bin"), 2**30, 2**30 / 2e9, dropped=True)
    assert fast.status == "pass" and fast.value.startswith("2,000 MB/s")
    slow = H.read_speed_check(Path("x.bin"), 2**30, 2**30 / 1e8, dropped=True)
    assert slow.status == "warn" and "NVMe" in slow.fix
    assert H.read_speed_check(None, 0, 0.0, dropped=False).status == "skip"


def test_disk_space(tmp_path: Path) -> None:
    missing = H.disk_space_check(
        tmp_path / "nope", free_gb=500, need_gb=80, data_present=False, explicit=True
    )
    assert missing.status == "fail" and "does not exist" in missing.value
    short = H.disk_space_check(tmp_path, free_gb=50, need_gb=80, data_present=False, explicit=True)
    assert short.status == "fail" and "~80 GB" in short.value
    low = H.disk_space_check(tmp_path, free_gb=5, need_gb=80, data_present=True, explicit=True)
    assert low.status == "warn"
    ok = H.disk_space_check(tmp_path, free_gb=95, need_gb=80, data_present=False, explicit=False)
    assert ok.status == "pass"


def test_missing_full_scale_data_fails_with_the_prepare_command(tmp_path: Path) -> None:
    cfg = apply_overrides(get_default_config("llama31_8b", "full"), [f"data.data_dir={tmp_path}"])
    check, tokenizer, checkpoint = H.data_checks(cfg)
    assert tokenizer.status == "fail" and checkpoint.status == "skip"  # 8B: random init
    assert check.status == "fail"
    assert check.fix == f"trainperf prepare llama31_8b --scale full --data-dir {tmp_path}"


def test_missing_data_still_checks_the_tokenizer_and_checkpoint(tmp_path: Path) -> None:
    cfg = apply_overrides(get_default_config("llama31_405b", "full"), [f"data.data_dir={tmp_path}"])
    checks = {c.name: c for c in H.data_checks(cfg)}
    assert list(checks) == ["prepared data", "tokenizer", "checkpoint"]
    assert all(c.status == "fail" for c in checks.values())
    assert "MLCommons members only" in checks["checkpoint"].fix
    lora = apply_overrides(
        get_default_config("llama2_70b_lora", "full"), [f"data.data_dir={tmp_path}"]
    )
    checkpoint = {c.name: c for c in H.data_checks(lora)}["checkpoint"]
    assert checkpoint.status == "fail" and "missing config.json" in checkpoint.value


def test_tiny_data_present_and_verified_then_corrupted() -> None:
    from trainperf.data.prepare import prepare_data

    cfg = apply_overrides(
        get_default_config("llama31_8b", "tiny"), ["data.max_bytes=300000", "data.vocab_size=512"]
    )
    paths = prepare_data(cfg, progress=False)
    (check,) = H.data_checks(cfg)
    assert check.status == "pass" and "hashes ok" in check.value
    bin_file = Path(f"{paths.valid_prefix}.bin")
    original = bin_file.read_bytes()
    try:
        bin_file.write_bytes(original[:-2] + b"\x00\x00")
        (check,) = H.data_checks(cfg)
        assert check.status == "fail" and "trainperf prepare" in check.fix
    finally:
        bin_file.write_bytes(original)


def test_missing_tiny_data_is_only_a_warn(tmp_path: Path) -> None:
    cfg = apply_overrides(get_default_config("llama31_8b", "tiny"), ["data.max_bytes=1234"])
    (check,) = H.data_checks(cfg)
    assert check.status == "warn" and "trainperf run" in check.fix


# ---- config consistency --------------------------------------------------------------------------


def _cfg(bench: str = "llama31_8b", scale: str = "tiny", *overrides: str):
    return apply_overrides(get_default_config(bench, scale), list(overrides))


def test_eval_interval_not_a_multiple_of_gbs() -> None:
    assert K.eval_interval_check(_cfg()).status == "pass"
    check = K.eval_interval_check(_cfg("llama31_8b", "tiny", "train.eval_every_samples=500"))
    assert check.status == "warn" and check.fix.startswith("train.eval_every_samples=512")


def test_gbs_not_divisible_by_dp_times_micro_batch() -> None:
    cfg = _cfg("llama31_8b", "tiny", "train.micro_batch_size=4")  # GBS 16
    assert K.batch_split_check(cfg, world_size=4).status == "pass"
    check = K.batch_split_check(cfg, world_size=3)
    assert check.status == "fail" and "3 data-parallel ranks" in check.value
    assert "multiple of 12" in check.fix
    tiny_on_8 = K.batch_split_check(_cfg(), world_size=8)  # GBS 16, micro-batch 16
    assert tiny_on_8.status == "fail" and tiny_on_8.fix.startswith("train.micro_batch_size=2 ")
    with_tp = K.batch_split_check(_cfg("llama31_8b", "full", "parallel.tp=2"), world_size=8)
    assert with_tp.value.startswith("GBS 32 = 4 dp x micro-batch 1 x 8")


def test_steps_must_reach_an_eval_after_the_skipped_ones() -> None:
    assert K.steps_check(_cfg()).status == "pass"
    # llama2_70b_lora at GBS 8 skips 3 evaluations of 384 samples: first logged at 1536
    check = K.steps_check(_cfg("llama2_70b_lora", "full", "train.max_steps=100"))
    assert check.status == "fail" and "first logged eval at 1,536" in check.value
    assert check.fix.startswith("train.max_steps >= 192")


def test_tp_must_divide_the_heads() -> None:
    cfg = _cfg("llama31_8b", "full", "parallel.tp=3")
    check = K.tensor_parallel_check(cfg, world_size=3)
    assert check.status == "fail" and "tp(3) must divide" in check.value
    assert "try tp in" in check.fix
    ok = K.tensor_parallel_check(_cfg("llama31_8b", "full", "parallel.tp=2"), world_size=8)
    assert ok.status == "pass" and ok.value == "dp_shard 4 x tp 2 = 8 ranks"


def test_memory_estimate_against_the_gpu_memory() -> None:
    full = _cfg("llama31_8b", "full")
    one = K.memory_check(full, SYSTEMS["H100_1x1"])  # 8B full training on one 80 GB GPU
    assert one.status == "fail" and "of 79 GiB (1 GPUs)" in one.value
    assert "no layout fits" in one.fix
    dgx = K.memory_check(full, SYSTEMS["DGXH200_1x8"])
    assert dgx.status == "pass"
    assert K.memory_check(full, SYSTEMS["CPU"]).status == "skip"
    # ~47 GiB/GPU over 8 GPUs without checkpointing: above 45; selective checkpointing fits
    tight = dataclasses.replace(SYSTEMS["DGXH100_1x8"], memory_gib=45.0)
    check = K.memory_check(full, tight)
    assert check.status == "fail" and "~47 GiB/GPU" in check.value
    assert check.fix.startswith("try parallel.activation_checkpointing=selective")


def test_config_checks_for_a_system() -> None:
    system = K.system_for(SYSTEMS["H200_1x1"], nproc=8, nnodes=1)
    checks = K.config_checks(_cfg("llama31_8b", "full"), system=system)
    assert [c.name for c in checks] == [
        "config: eval interval",
        "config: batch split",
        "config: steps reach an eval",
        "config: tensor parallel",
        "config: memory estimate",
    ]
    assert overall(checks) == "pass"


# ---- launchers (the CLI in-process; torchrun and srun faked) -------------------------------------


def test_slurm_dry_run_renders_a_doctor_job(capsys) -> None:
    from trainperf import cli

    argv = ["doctor", "--launcher", "slurm", "--nodes", "2", "--nproc", "8", "--dry-run"]
    assert cli.main(argv) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script
    assert "#SBATCH --time=00:20:00" in script
    assert "-m trainperf doctor --launcher slurm --nodes 2 --nproc 8 --in-slurm-job" in script


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU head node (--nproc 8 is checked)")
def test_in_slurm_job_one_srun_step_and_rank_0s_report(monkeypatch, tmp_path, capsys) -> None:
    import json

    from trainperf import cli
    from trainperf.doctor import launch

    commands: list[list[str]] = []

    def fake_srun(command: list[str], **_) -> int:  # rank 0 of the step writes the report
        commands.append(command)
        path = Path(next(a for a in command if a.startswith("--report-file=")).split("=", 1)[1])
        checks = [Check("all-reduce", "pass", "busbw 420.0 GB/s (algbw 240.0), 16 ranks")]
        path.write_text(json.dumps(report_to_dict(checks, world_size=16)))
        return 0

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(launch, "job_head_node", lambda: "node1")
    monkeypatch.setattr(launch, "wait_for_run", fake_srun)
    argv = ["doctor", "--launcher", "slurm", "--nodes", "2", "--nproc", "8", "--in-slurm-job"]
    assert cli.main([*argv, "--json"]) == 0
    (command,) = commands
    assert command[:2] == ["srun", "--nodes=2"]
    assert "--nproc-per-node=8" in command and "--rdzv-endpoint=node1:29500" in command
    rest = command[command.index("trainperf") + 1 :]
    assert rest[0] == "doctor" and "--launcher" not in rest and "--in-slurm-job" not in rest
    report = json.loads(capsys.readouterr().out)
    assert report["world_size"] == 16 and report["checks"][0]["value"].startswith("busbw 420")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's checks")
def test_ranks_that_fail_are_a_failed_check_beside_the_local_ones(monkeypatch, capsys) -> None:
    import json

    from trainperf import cli
    from trainperf.doctor import launch

    monkeypatch.setattr(launch, "relaunch_with_torchrun", lambda *a, **k: 1)
    assert cli.main(["doctor", "--nproc", "2", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["all-reduce"]["status"] == "fail"
    assert "the 2 torchrun ranks did not finish" in checks["all-reduce"]["value"]
    assert checks["versions"]["status"] == "pass" and len(checks) == 13


def test_diagnose_on_faked_gpus_in_one_process(monkeypatch) -> None:
    from trainperf.doctor import run as R
    from trainperf.train.distributed import DistEnv

    gpus = [G.GpuInfo(i, H100, 79.2, 78.6, (9, 0)) for i in range(8)]
    timed: list[int] = []
    monkeypatch.setattr(G, "local_gpus", lambda: list(gpus))
    monkeypatch.setattr(G, "driver_versions", lambda: ("570.86", "12.8"))
    monkeypatch.setattr(
        G, "measure_gemm_tflops", lambda device, n: timed.append(device.index) or 720.0
    )
    opts = R.DoctorOptions(cfg=_cfg(), explicit_data_dir=False, system=SYSTEMS["H100_1x1"])
    checks = {c.name: c for c in R.diagnose(opts, DistEnv())}
    assert timed == list(range(8))  # every local GPU, one after the other
    assert checks["GPUs visible"].status == "pass" and checks["GPU free memory"].status == "pass"
    assert checks["bf16 GEMM"].status == "pass" and "slowest of 8 GPUs" in checks["bf16 GEMM"].value
    assert checks["all-reduce"].status == "skip" and "--nproc" in checks["all-reduce"].fix
    assert checks["config: memory estimate"].status == "pass"  # tiny on one H100
