"""The real ``trainperf watch`` CLI on crafted logs: --once, --json, a live follow, bad input.

The ``trainperf`` fixture (conftest.py) runs the CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mllog_lines import T0, mllog
from tiny_run_logs import write_tiny_run

from trainperf.launch.runset import write_set_file


def run_lines(seed: int, evals: list[tuple[int, float]], status: str | None) -> list[str]:
    """A llama2_70b_lora run at GBS 8: header, a train_loss and an eval per point, run_stop."""
    lines = [
        mllog("submission_benchmark", "llama2_70b_lora", time_ms=T0),
        mllog("global_batch_size", 8, time_ms=T0),
        mllog("seed", seed, time_ms=T0),
        mllog("run_start", time_ms=T0 + 1000),
    ]
    for samples, value in evals:
        at = T0 + 1000 + samples * 400  # 2.5 samples/s
        lines.append(mllog("train_loss", 1.2, time_ms=at, samples_count=samples, lr=4e-4))
        lines.append(mllog("eval_accuracy", value, time_ms=at, samples_count=samples))
    if status is not None:
        at = T0 + 1000 + evals[-1][0] * 400
        lines.append(mllog("run_stop", time_ms=at, samples_count=evals[-1][0], status=status))
    return lines


EVALS = [(1536, 0.94), (1920, 0.933), (2304, 0.924)]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_once_on_a_finished_log_exits_0(tmp_path: Path, trainperf) -> None:
    log = write(tmp_path / "result_0.txt", run_lines(1, EVALS, "success"))
    proc = trainperf("watch", str(log), "--once")
    assert proc.returncode == 0, proc.stderr
    assert "success" in proc.stdout and "eval 0.9240 <= target" in proc.stdout
    assert proc.stdout.strip().endswith("1 of 1 runs ended: all succeeded")


def test_once_json_on_a_folder_still_going_exits_3(tmp_path: Path, trainperf) -> None:
    write(tmp_path / "result_0.txt", run_lines(1, EVALS, "success"))
    going = [f"0: {line}" for line in run_lines(2, EVALS[:2], None)]
    write(tmp_path / "result_1.txt", ["0: srun noise", *going])
    proc = trainperf("watch", str(tmp_path), "--once", "--json")
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["expected_runs"] == 10 and data["finished"] == 1 and data["exit_code"] == 3
    first, second = data["runs"]
    assert (first["status"], second["status"]) == ("success", "running")
    assert second["label"] == "run 2 of 10" and second["evals"] == [[1536, 0.94], [1920, 0.933]]
    assert second["target"] == 0.925 and second["eta_slope_s"] > 0 and second["eta_rcp_s"] > 0
    assert second["samples_per_s"] == 2.5 and second["lr"] == 4e-4


def test_once_on_an_aborted_run_exits_1(tmp_path: Path, trainperf) -> None:
    log = write(tmp_path / "result_0.txt", run_lines(1, EVALS, "aborted"))
    proc = trainperf("watch", str(log), "--once")
    assert proc.returncode == 1 and "aborted" in proc.stdout


def test_live_follow_exits_0_when_run_stop_success_arrives(tmp_path: Path) -> None:
    lines = run_lines(3, EVALS, "success")
    log = write(tmp_path / "slurm-1234.out", ["srun: starting", *lines[:4]])

    def append() -> None:
        for line in ["+ some shell noise", *lines[4:]]:
            time.sleep(0.3)
            with log.open("a") as handle:
                handle.write(f"0: {line}\n")

    proc = subprocess.Popen(
        [sys.executable, "-m", "trainperf", "watch", str(log), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # watching: now the run goes on
    writer = threading.Thread(target=append)
    writer.start()
    out, err = proc.communicate(timeout=60)
    writer.join()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines_out = [first.rstrip("\n"), *out.splitlines()]
    # not a terminal: one plain line per change, then the summary
    assert len(lines_out) >= 4 and "running" in lines_out[0] and "[0 evals]" in lines_out[0]
    assert any("eval 0.9400" in line for line in lines_out)
    assert "success" in lines_out[-2] and lines_out[-1] == "1 of 1 runs ended: all succeeded"


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    log = write(tmp_path / "result_0.txt", run_lines(1, EVALS[:1], None))
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainperf", "watch", str(log), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal, even where the suite itself was started with SIGINT ignored
        # (a background job of a script: Python then keeps it ignored in its children)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert "running" in proc.stdout.readline()  # watching
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, trainperf) -> None:
    (tmp_path / "empty").mkdir()
    for args in (
        [str(tmp_path / "missing.txt")],
        [str(tmp_path / "empty"), "--once"],
    ):
        proc = trainperf("watch", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr


def test_once_on_our_single_finished_run_is_one_finished_run(tmp_path: Path, trainperf) -> None:
    write_tiny_run(tmp_path / "ok", 0)  # a `trainperf run`: config_0.json, no runset.json
    proc = trainperf("watch", str(tmp_path / "ok"), "--once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run 1 of 1 (seed 1234, GBS 16): success" in proc.stdout and "of 10" not in proc.stdout
    assert proc.stdout.splitlines()[-1] == "1 of 1 runs ended: all succeeded"
    write_tiny_run(tmp_path / "not", 0, evals=(4.9, 4.2), status="aborted")
    proc = trainperf("watch", str(tmp_path / "not"), "--once")
    assert proc.returncode == 1 and "of 10" not in proc.stdout
    assert proc.stdout.splitlines()[-1] == "1 of 1 runs ended: a run did not succeed"


def test_once_on_a_set_still_expects_its_runs(tmp_path: Path, trainperf) -> None:
    write_set_file(tmp_path, 3)  # trainperf run --nexp 3
    write_tiny_run(tmp_path, 0)
    proc = trainperf("watch", str(tmp_path), "--once")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "run 1 of 3" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "1 of 3 runs ended: still running"


def test_watch_and_report_show_one_training_throughput(tmp_path: Path, trainperf) -> None:
    # 512 samples per 10 s block, then a 20 s evaluation: 51.2 training samples/s (17.1 over the
    # wall time since run_start, which the two commands used to mix up)
    write_tiny_run(tmp_path, 0, evals=(4.9, 4.2, 3.6), train_s=10.0, eval_s=20.0)
    proc = trainperf("watch", str(tmp_path), "--once")
    assert "51.2 training samples/s, 6,554 tok/s (block timestamps)" in proc.stdout
    watched = json.loads(trainperf("watch", str(tmp_path), "--once", "--json").stdout)
    report = json.loads(trainperf("report", str(tmp_path), "--json", check=True).stdout)
    assert watched["runs"][0]["samples_per_s"] == pytest.approx(51.2)
    assert report["runs"][0]["training_samples_per_s"] == pytest.approx(51.2)
    assert watched["throughput"] == report["throughput"]
    assert report["throughput"].startswith("training samples/s = samples trained / time spent")
    page = Path(report["html"]).read_text()
    assert "<th>training samples/s</th>" in page and "<td>51.200</td>" in page
