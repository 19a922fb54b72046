"""Planning a run set: which indices run, which logs are kept, failed logs moved, seeds."""

import json
from pathlib import Path

import pytest

from trainperf.launch.runset import (
    move_failed_aside,
    plan_run_set,
    run_outcome,
    seeds_for,
)
from trainperf.mlperf.logger import create_result_file


def mllog(key: str, value=None, event_type: str = "POINT_IN_TIME", **metadata) -> str:
    record = {"namespace": "", "time_ms": 1_000, "event_type": event_type, "key": key,
              "value": value, "metadata": {"file": "t.py", "lineno": 1, **metadata}}  # fmt: skip
    return ":::MLLOG " + json.dumps(record)


def write_log(folder: Path, index: int, *, seed: int, stop: dict | None) -> Path:
    lines = [mllog("seed", seed), mllog("run_start", event_type="INTERVAL_START")]
    if stop is not None:
        lines.append(mllog("run_stop", event_type="INTERVAL_END", **stop))
    path = folder / f"result_{index}.txt"
    path.write_text("\n".join(lines) + "\n")
    (folder / f"config_{index}.json").write_text("{}")
    return path


SUCCESS = {"status": "success"}
NOT_CONVERGED = {"status": "aborted", "reason": "not converged: target 3.3 not reached in 9 steps"}
ERROR = {"status": "aborted", "reason": "RuntimeError: NCCL watchdog timeout"}


def test_fresh_folder_runs_every_index(tmp_path: Path) -> None:
    plan = plan_run_set(tmp_path / "new", 10, resume=False)
    assert plan.todo == list(range(10)) and not plan.kept and not plan.failed
    assert "10 run(s)" in plan.describe()


def test_existing_logs_need_resume(tmp_path: Path) -> None:
    write_log(tmp_path, 0, seed=1, stop=SUCCESS)
    with pytest.raises(ValueError, match=r"already holds 1 result log.*--resume"):
        plan_run_set(tmp_path, 3, resume=False)


def test_resume_keeps_finished_runs_and_reruns_failed_and_missing(tmp_path: Path) -> None:
    write_log(tmp_path, 0, seed=10, stop=SUCCESS)
    write_log(tmp_path, 1, seed=11, stop=NOT_CONVERGED)  # finished: MLPerf counts it
    write_log(tmp_path, 2, seed=12, stop=ERROR)
    write_log(tmp_path, 3, seed=13, stop=None)  # crashed: no run_stop
    (tmp_path / "result_5.txt").write_bytes(b"\xff\xfe not a log")
    plan = plan_run_set(tmp_path, 6, resume=True)
    assert plan.kept == {0: "success", 1: "not converged"}
    assert plan.todo == [2, 3, 4, 5]
    assert set(plan.failed) == {2, 3, 5} and "NCCL" in plan.failed[2]
    assert "no run_stop" in plan.failed[3]
    text = plan.describe()
    assert "2 of 6 finished" in text and "result_3.txt (no run_stop" in text
    assert "missing: result_4.txt" in text


def test_failed_log_moves_aside_with_its_config_never_overwritten(tmp_path: Path) -> None:
    log = write_log(tmp_path, 2, seed=12, stop=ERROR)
    first = move_failed_aside(tmp_path, 2)
    write_log(tmp_path, 2, seed=13, stop=None)
    second = move_failed_aside(tmp_path, 2)
    assert not log.exists() and first != second
    assert first.parent == second.parent == tmp_path / "failed"
    assert run_outcome(first)[0] == "failed" and "seed" in first.read_text()
    assert sorted(p.suffix for p in first.parent.iterdir()) == [".json", ".json", ".txt", ".txt"]
    assert move_failed_aside(tmp_path, 7) is None


def test_seeds_are_base_plus_index_or_fresh_and_distinct(tmp_path: Path) -> None:
    write_log(tmp_path, 0, seed=10, stop=SUCCESS)
    plan = plan_run_set(tmp_path, 4, resume=True)
    assert seeds_for(plan, 100) == {1: 101, 2: 102, 3: 103}
    fresh = seeds_for(plan, None)
    assert sorted(fresh) == [1, 2, 3] and len(set(fresh.values()) | {10}) == 4


def test_bad_nexp_and_taken_index(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--nexp\(0\) must be >= 1"):
        plan_run_set(tmp_path, 0, resume=False)
    create_result_file(tmp_path, index=4)
    with pytest.raises(ValueError, match="never overwritten"):
        create_result_file(tmp_path, index=4)
