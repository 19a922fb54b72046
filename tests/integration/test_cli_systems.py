"""`trainperf systems` and `trainperf run --system`: presets, layouts, refusals (no training)."""


def test_systems_table(trainperf) -> None:
    proc = trainperf("systems", "llama2_70b_lora", check=True)
    assert "DGXH200_1x8" in proc.stdout and "does not fit" in proc.stdout  # H100_1x1


def test_system_preset_sets_gpus_and_layout(trainperf) -> None:
    proc = trainperf("run", "llama31_8b", "--scale", "full", "--system", "H200_1x2",
                     "--launcher", "slurm", "--dry-run", check=True)  # fmt: skip
    exec_line = proc.stdout.splitlines()[-1]
    assert "--nproc=2" in exec_line and "parallel.float8=tensorwise" in exec_line
    assert "#SBATCH --gpus-per-node=2" in proc.stdout
    assert "system H200_1x2" in proc.stderr and "GiB/GPU" in proc.stderr


def test_layout_that_cannot_fit_is_refused_with_the_estimate(trainperf) -> None:
    proc = trainperf("run", "llama31_8b", "--scale", "full", "--system", "H100_1x1")
    assert proc.returncode == 2 and "does not fit H100_1x1" in proc.stderr
    assert "gradients + optimizer" in proc.stderr and "Traceback" not in proc.stderr
