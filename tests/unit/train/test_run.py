"""A run's lifecycle: its MLLOG sequence and its behaviour on failure, signals and reruns, on a
very small built-in corpus."""

import time

import pytest

from trainperf.config import load_config
from trainperf.train import run as R
from trainperf.train import trainer as T


def test_mllog_sequence_and_cadence(tmp_path, small, run, records):
    cfg = small(tmp_path, "train.seed=5")
    result = run(cfg)
    assert result.status == "aborted" and result.steps == 9  # target 0.5 is out of reach
    recs = records(result.log_path)
    keys = [r["key"] for r in recs]
    assert keys[:2] == ["cache_clear", "init_start"]
    assert keys.index("init_stop") < keys.index("run_start") < keys.index("block_start")
    assert keys[-1] == "run_stop" and keys.count("run_stop") == 1
    # eval every 10 samples rounded up to the GBS of 4: at 12 and 24 samples (steps 3 and 6), 36
    evals = [r["metadata"]["samples_count"] for r in recs if r["key"] == "eval_accuracy"]
    assert evals == [12, 24, 36]
    assert recs[-1]["metadata"]["status"] == "aborted"
    assert recs[-1]["metadata"]["samples_count"] == 36
    seed = [r for r in recs if r["key"] == "seed"]
    assert len(seed) == 1 and seed[0]["value"] == 5
    assert load_config(result.config_path).train.seed == 5
    # every eval is bracketed by block_stop/eval_start ... eval_stop at the same samples_count
    for s in evals:
        around = [
            r["key"]
            for r in recs
            if r["metadata"].get("samples_count") == s
            and r["key"] in ("block_stop", "eval_start", "eval_accuracy", "eval_stop")
        ]
        assert around == ["block_stop", "eval_start", "eval_accuracy", "eval_stop"]


def test_success_stops_at_first_eval_below_target(tmp_path, small, run, records):
    result = run(small(tmp_path, "train.seed=5", "train.target=100"))
    assert result.status == "success" and result.samples == 12 and result.steps == 3
    recs = records(result.log_path)
    assert recs[-1]["key"] == "run_stop"
    assert recs[-1]["metadata"]["status"] == "success"


def test_crash_leaves_a_closed_log(tmp_path, monkeypatch, small, run, records):
    calls = {"n": 0}
    original = T.Trainer.train_step

    def failing_step(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated GPU fault")
        return original(self)

    monkeypatch.setattr(T.Trainer, "train_step", failing_step)
    with pytest.raises(RuntimeError):
        run(small(tmp_path, "train.seed=1"))
    log = tmp_path / "results" / "result_0.txt"
    last = records(log)[-1]
    assert last["key"] == "run_stop"
    assert last["metadata"]["status"] == "aborted"
    assert "simulated GPU fault" in last["metadata"]["reason"]
    assert last["metadata"]["samples_count"] == 12


def test_reruns_never_overwrite(tmp_path, small, run):
    cfg = small(tmp_path, "train.max_steps=3")
    first = run(cfg)
    before = first.log_path.read_bytes()
    second = run(cfg)
    assert (first.index, second.index) == (0, 1)
    assert first.log_path.read_bytes() == before
    assert first.seed != second.seed  # a fresh seed per run when none is given


def test_sigterm_becomes_run_terminated_once_then_the_old_handler_returns() -> None:
    import os
    import signal

    from trainperf.train.run import RunTerminated, sigterm_raises

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunTerminated, match="SIGTERM"):
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
    assert signal.getsignal(signal.SIGTERM) is before
    with sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except RunTerminated:
            os.kill(os.getpid(), signal.SIGTERM)  # while closing the log: ignored
            time.sleep(0.2)


def test_page_cache_drop_reports_whether_it_happened(monkeypatch) -> None:
    import builtins

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(builtins, "open", denied)
    assert R.clear_page_cache() is False
