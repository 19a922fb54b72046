"""Faults: a rank that dies or hangs mid-run ends that run (log closed, run_stop aborted with the
reason) within a bounded time, and the set goes on with its next run. Two CPU ranks (torchrun,
gloo). And a run past its time limit.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# 24 steps: run 0 is still training when its rank 1 is killed (right after its first step) and
# run 1 ends before the first evaluation (step 32), which no assertion needs.
ARGS = ["--nexp", "2", "--nproc", "2", "--seed", "1", "--no-progress", "train.max_steps=24",
        "train.warmup_steps=1", "train.micro_batch_size=8", "log.log_every_steps=1"]  # fmt: skip


def records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x.split(":::MLLOG ", 1)[1]) for x in lines if ":::MLLOG " in x]


def rank_pids(marker: str, rank: int) -> list[int]:
    """Processes of this test (its marker in their environment) that are torchrun rank `rank`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        wanted = {f"TRAINPERF_TEST_MARKER={marker}".encode(), f"RANK={rank}".encode()}
        if wanted <= env and f"LOCAL_RANK={rank}".encode() in env:
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize(
    ("fault", "signum"),
    [("dies", signal.SIGKILL), ("hangs", signal.SIGSTOP)],
)
def test_failed_rank_aborts_its_run_and_the_set_moves_on(tmp_path: Path, fault, signum) -> None:
    """Rank 1 of run 0 is killed (its peer's collective fails at once) or frozen (its peer's
    collective times out after parallel.collective_timeout_s)."""
    marker = uuid.uuid4().hex
    results = tmp_path / "set"
    env = {**os.environ, "TRAINPERF_TEST_MARKER": marker, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "trainperf", "run", "--results", str(results), *ARGS,
           "parallel.collective_timeout_s=10"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log0 = results / "result_0.txt"
    deadline = time.time() + 300
    while not any(r["key"] == "train_loss" for r in records(log0)):
        assert proc.poll() is None and time.time() < deadline, "run 0 never started training"
        time.sleep(0.2)
    victims = rank_pids(marker, 1)
    assert victims, "rank 1 of run 0 not found"
    killed_at = time.time()
    for pid in victims:
        os.kill(pid, signum)
    if signum == signal.SIGSTOP:
        # Once its peer has closed the log, the frozen rank may run again: torchrun's SIGTERM
        # then ends it at once, where a frozen one waits for the SIGKILL 30 s later.
        while not any(r["key"] == "run_stop" for r in records(log0)):
            assert proc.poll() is None and time.time() < killed_at + 300, "run 0 never stopped"
            time.sleep(0.2)
        for pid in victims:
            os.kill(pid, signal.SIGCONT)
    output = proc.communicate(timeout=600)[0].decode(errors="replace")
    stops = [r for r in records(log0) if r["key"] == "run_stop"]
    assert len(stops) == 1, output[-3000:]
    assert stops[0]["metadata"]["status"] == "aborted" and stops[0]["metadata"]["reason"]
    assert stops[0]["time_ms"] / 1000 - killed_at < 120  # bounded: not the 30-min PG timeout
    # the set went on: run 1 ran to its end, and a --resume would run index 0 again
    assert [r["key"] for r in records(results / "result_1.txt")].count("run_stop") == 1
    assert "run 2 of 2: result_1.txt" in output
    from trainperf.launch.runset import run_outcome

    assert run_outcome(log0)[0] == "failed"


def test_run_past_its_time_limit_stops_with_its_log_closed(tmp_path: Path) -> None:
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "trainperf", "run", "--results", str(results), "--seed", "1",
           "--no-progress", "train.max_steps=100000", "train.time_limit_min=0.1"]  # fmt: skip
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert "time limit of 0.1 min" in proc.stderr
    stops = [r for r in records(results / "result_0.txt") if r["key"] == "run_stop"]
    assert len(stops) == 1 and "time limit" in stops[0]["metadata"]["reason"]
    assert time.time() - started < 120
