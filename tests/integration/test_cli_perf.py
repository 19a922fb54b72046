"""`trainperf perf`: the recipe's measurement through the real CLI at the tiny scale (CPU)."""

import json

import pytest


def test_perf_json_llama31_8b_proxy(trainperf):
    proc = trainperf(
        "perf", "llama31_8b", "--steps", "2", "--warmup", "1", "--layers", "1", "--gbs", "8",
        "--json", "train.micro_batch_size=4", check=True,
    )  # fmt: skip
    r = json.loads(proc.stdout)
    assert r["benchmark"] == "llama31_8b" and r["scale"] == "tiny" and r["n_layers"] == 1
    assert r["global_batch_size"] == 8 and r["micro_batch_size"] == 4
    assert len(r["step_times_s"]) == 3 and r["warmup_steps"] == 1
    assert r["median_step_s"] > 0 and r["timing"] == "host clock"  # CPU: no CUDA events
    assert r["tokens_per_s"] == pytest.approx(8 * 128 / r["median_step_s"])
    assert r["model_tflops_per_gpu"] > 0 and r["mfu"] is None  # CPU: no dense peak
    assert (
        r["projected_minutes"] is None and "not the benchmark's full model" in r["projection_note"]
    )


def test_perf_lora_table(trainperf):
    proc = trainperf("perf", "llama2_70b_lora", "--steps", "1", "--warmup", "0", check=True)
    assert "trainperf perf llama2_70b_lora (tiny, synthetic tokens)" in proc.stdout
    assert "n/a (LoRA)" in proc.stdout and "tokens/s/rank" in proc.stdout  # CPU: no GPU


def test_perf_on_cpu_says_rank_and_shows_its_small_rate(trainperf):
    proc = trainperf("perf", "--steps", "1", "--warmup", "0", "--layers", "1", check=True)
    assert "GPU" not in proc.stdout, proc.stdout
    (line,) = [line for line in proc.stdout.splitlines() if "model TFLOP/s/rank" in line]
    assert float(line.split("│")[-2]) > 0  # three significant digits, not "0.0"


@pytest.mark.parametrize("command", ["run", "perf", "doctor"])
def test_usage_names_the_positionals_once(trainperf, command):
    proc = trainperf(command, "--help", check=True)
    usage = f"usage: trainperf {command} [BENCHMARK] [section.key=value ...] [options]"
    assert proc.stdout.startswith(usage) and "[[" not in proc.stdout


def test_perf_profile_writes_trace_and_summary(trainperf, tmp_path):
    out = tmp_path / "prof"
    proc = trainperf(
        "perf", "llama31_8b", "--steps", "1", "--warmup", "0", "--layers", "1",
        "--profile", str(out), "--profile-steps", "1", "--json", check=True,
    )  # fmt: skip
    r = json.loads(proc.stdout)
    assert (out / "trace_rank0.json.gz").is_file()
    assert r["profile"]["steps"] == 1 and r["profile"]["wall_ms_per_step"] > 0
    assert r["profile"]["trace"] == str(out / "trace_rank0.json.gz")
    table = trainperf("perf", "--steps", "1", "--warmup", "0", "--profile", str(out), check=True)
    assert "profile of 1 step" not in table.stdout and "profile of 2 step(s)" in table.stdout


def test_perf_bad_input(trainperf):
    for args, message in (
        (["--steps", "0"], "--steps(0) must be >= 1"),
        (["--layers", "0"], "model.n_layers"),
        (["--scale", "huge"], "unknown scale 'huge'"),
        (["--profile-steps", "0"], "--profile-steps(0) must be >= 1"),
        (["--profile", __file__], "is a file; give a folder"),
    ):
        proc = trainperf("perf", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_perf_llama31_405b_proxy_code_path(trainperf):
    # the proxy scale's own numbers need GPUs; on CPU its code path with a toy model
    proc = trainperf(
        "perf", "llama31_405b", "--scale", "proxy", "--steps", "1", "--warmup", "0", "--gbs", "2",
        "--json", "model.flavor=tiny", "train.seq_len=32", check=True,
    )  # fmt: skip
    r = json.loads(proc.stdout)
    assert r["benchmark"] == "llama31_405b" and r["scale"] == "proxy" and r["n_layers"] == 1
    assert "not the benchmark's full model" in r["projection_note"]
