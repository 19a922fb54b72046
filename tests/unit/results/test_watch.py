"""Unit tests for trainperf.results.watch and watch_view: tailer, run state, ETAs, exit codes,
rendering, published fixtures."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mllog_lines import T0, mllog
from rich.console import Console

from trainperf.launch.runset import SET_FILE as RUNSET_SET_FILE
from trainperf.launch.runset import write_set_file
from trainperf.perf.estimate import rcp_mean_samples
from trainperf.results.parse import summarize_run
from trainperf.results.watch import (
    EXIT_FAILED,
    EXIT_RUNNING,
    EXIT_SUCCESS,
    SET_FILE,
    LogTail,
    Watch,
)
from trainperf.results.watch_view import follow, render_lines, render_table, watch_to_dict

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"


def header(*, benchmark: str = "llama31_8b", gbs: int = 32, seed: int = 7) -> list[str]:
    return [
        mllog("cache_clear", False, time_ms=T0),
        mllog("init_start", time_ms=T0, event_type="INTERVAL_START"),
        mllog("submission_benchmark", benchmark, time_ms=T0),
        mllog("global_batch_size", gbs, time_ms=T0),
        mllog("seed", seed, time_ms=T0),
        mllog("init_stop", time_ms=T0 + 1000, event_type="INTERVAL_END"),
        mllog("run_start", time_ms=T0 + 1000, event_type="INTERVAL_START"),
    ]


def body(evals: list[tuple[int, float]], *, per_s: float = 10.0, lr: float = 1e-3) -> list[str]:
    """train_loss (with lr, as ours and NVIDIA's log it) and an eval at each (samples, value)."""
    lines = []
    for samples, value in evals:
        at = T0 + 1000 + round(samples / per_s * 1000)
        lines.append(mllog("train_loss", value + 0.5, time_ms=at, samples_count=samples, lr=lr))
        lines.append(mllog("eval_accuracy", value, time_ms=at, samples_count=samples))
    return lines


def stop(status: str, *, samples: int, per_s: float = 10.0) -> str:
    at = T0 + 1000 + round(samples / per_s * 1000)
    return mllog(
        "run_stop", time_ms=at, event_type="INTERVAL_END", samples_count=samples, status=status
    )


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def config(path: Path, *, scale: str = "tiny", target: float = 3.3, seq_len: int = 256) -> None:
    path.write_text(json.dumps({"scale": scale, "train": {"target": target, "seq_len": seq_len}}))


def watched(path: Path, **kwargs: Any) -> Watch:
    watch = Watch(path, **kwargs)
    watch.poll(final=True)
    return watch


# -- the tailer -----------------------------------------------------------------------------------
def test_tail_hands_back_only_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    tail = LogTail(log)
    assert tail.read() == []  # not there yet
    pieces = [b"ab", b"c\nd\xc3", b"\xa9\n\nxy", b"z"]
    got = []
    for piece in pieces:  # the "é" is split between two writes
        with log.open("ab") as handle:
            handle.write(piece)
        got.append(tail.read())
    assert got == [[], [(1, "abc")], [(2, "dé"), (3, "")], []]
    assert tail.read(final=True) == [(4, "xyz")]
    log.write_bytes(b"new\r\n")  # rewritten shorter: read again from the start
    assert tail.read() == [(1, "new")] and tail.truncated


# -- run state ------------------------------------------------------------------------------------
def test_state_of_our_log_with_config(tmp_path: Path) -> None:
    evals = [(1000, 4.0), (2000, 3.8), (3000, 3.6)]
    log = write(tmp_path / "result_0.txt", header() + body(evals))
    config(tmp_path / "config_0.json", target=3.3, seq_len=256)
    watch = watched(log)
    (run,) = watch.all_runs
    assert (run.summary.benchmark, run.summary.seed, run.summary.global_batch_size) == (
        "llama31_8b",
        7,
        32,
    )
    assert run.samples == 3000 and run.train_loss == pytest.approx(4.1) and run.lr == 1e-3
    assert run.samples_per_s == pytest.approx(10.0)
    assert run.tokens_per_s == pytest.approx(2560.0)  # seq_len of the config
    assert run.target == (3.3, "config")
    assert run.trend == pytest.approx(-0.2)
    assert run.status == "running" and watch.exit_code() == EXIT_RUNNING
    # slope -0.2 per 1000 samples: 0.3 to go = 1500 samples at 10 samples/s
    eta, _ = run.eta_slope()
    assert eta == pytest.approx(150.0)
    rcp_eta, mean, why = run.eta_rcp()
    assert rcp_eta is None and mean is None and "full-scale" in why  # tiny scale: no RCP ETA
    data = watch_to_dict(watch)
    assert data["runs"][0]["evals"] == [[1000, 4.0], [2000, 3.8], [3000, 3.6]]
    assert data["runs"][0]["label"] == "run 1 of 1" and data["exit_code"] == EXIT_RUNNING


def test_rcp_eta_from_the_rcp_mean_samples(tmp_path: Path) -> None:
    # A published-style llama2_70b_lora log: no config, the rules' target.
    lines = header(benchmark="llama2_70b_lora", gbs=8) + body([(1536, 0.94)], per_s=2.56)
    watch = watched(write(tmp_path / "job.out", lines))
    (run,) = watch.all_runs
    mean, _, _ = rcp_mean_samples("llama2_70b_lora", 8)
    eta, got_mean, basis = run.eta_rcp()
    assert got_mean == pytest.approx(mean) and "batch size 8" in basis
    assert eta == pytest.approx((mean - 1536) / 2.56)
    assert run.target == (0.925, "rules")
    assert run.eta_slope() == (None, "needs 2 evaluations")


def test_eta_without_downward_trend_and_at_target(tmp_path: Path) -> None:
    up = watched(write(tmp_path / "a.txt", header() + body([(1000, 4.0), (2000, 4.1)])))
    assert up.all_runs[0].eta_slope() == (None, "no downward trend")
    done = watched(write(tmp_path / "b.txt", header() + body([(1000, 3.4), (2000, 3.2)])))
    assert done.all_runs[0].eta_slope() == (0.0, "target reached")


@pytest.mark.parametrize(
    ("status", "code"), [("success", EXIT_SUCCESS), ("aborted", EXIT_FAILED), (None, EXIT_RUNNING)]
)
def test_status_and_exit_code(tmp_path: Path, status: str | None, code: int) -> None:
    lines = header() + body([(1000, 3.5), (2000, 3.3)])
    if status is not None:
        lines.append(stop(status, samples=2000))
    if status == "aborted":  # ours says why
        lines[-1] = lines[-1].replace('"status"', '"reason": "not converged: 2 steps", "status"')
    watch = watched(write(tmp_path / "result_0.txt", lines))
    assert watch.exit_code() == code
    if status == "aborted":
        assert ": aborted (not converged: 2 steps);" in render_lines(watch)[0]
    assert watch.done() == (status is not None)
    assert watch.all_runs[0].status == (status or "running")


def test_garbled_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    good = header() + body([(1000, 3.5)])
    lines = [*good[:3], ':::MLLOG {"key": "seed", "time_', "plain output", *good[3:]]
    lines += [stop("success", samples=1000)[:-20]]  # a truncated run_stop
    watch = watched(write(tmp_path / "result_0.txt", lines))
    (run,) = watch.all_runs
    assert len(run.errors) == 2 and run.errors[0].startswith("line 4:")
    assert run.status == "running" and run.samples == 1000
    assert "2 parse errors" in render_lines(watch)[0]


def test_slurm_output_with_prefixes_noise_and_two_trials(tmp_path: Path) -> None:
    def trial(i: int) -> list[str]:
        run = header(seed=i) + body([(1000, 3.5), (2000, 3.2)]) + [stop("success", samples=2000)]
        return [f"Beginning trial {i} of 2", *(f"{i - 1}: {line}" for line in run), "noise"]

    out = tmp_path / "slurm-1234.out"
    write(out, ["srun: job 1234 queued", *trial(1), "+ sleep 30"])
    watch = watched(out)
    assert [r.summary.seed for r in watch.all_runs] == [1]
    assert not watch.done() and watch.exit_code() == EXIT_RUNNING  # trial 2 of 2 is to come
    with out.open("a") as handle:
        handle.write("\n".join(trial(2)) + "\n")
    watch.poll()
    runs = watch.all_runs
    assert [r.summary.seed for r in runs] == [1, 2]
    assert [watch.label(r) for r in runs] == ["run 1 of 2", "run 2 of 2"]
    assert all(r.summary.evals == [(1000, 3.5), (2000, 3.2)] for r in runs)
    assert watch.done() and watch.exit_code() == EXIT_SUCCESS


def test_folder_set_size_new_files_and_failed_run(tmp_path: Path) -> None:
    assert SET_FILE == RUNSET_SET_FILE
    write_set_file(tmp_path, 3)
    watch = Watch(tmp_path)  # no log yet, but a set that will write them
    watch.poll()
    assert watch.all_runs == [] and watch.expected_runs() == 3 and not watch.done()
    ok = header() + body([(1000, 3.2)]) + [stop("success", samples=1000)]
    write(tmp_path / "result_0.txt", ok)
    write(tmp_path / "result_1.txt", header(seed=8) + body([(1000, 3.4)]))
    watch.poll()
    assert [watch.label(r) for r in watch.all_runs] == ["run 1 of 3", "run 2 of 3"]
    assert watch.exit_code() == EXIT_RUNNING
    with (tmp_path / "result_1.txt").open("a") as handle:
        handle.write(stop("aborted", samples=1000) + "\n")
    write(tmp_path / "result_2.txt", ok)
    watch.poll()
    assert watch.done() and watch.exit_code() == EXIT_FAILED
    assert watch_to_dict(watch)["finished"] == 3
    one = watched(tmp_path / "result_1.txt")  # one log of the set knows its place in it
    assert one.label(one.all_runs[0]) == "run 2 of 3" and one.exit_code() == EXIT_FAILED


def test_folder_without_set_file_expects_the_rules_run_count(tmp_path: Path) -> None:
    write(tmp_path / "result_0.txt", header() + body([(1000, 3.2)]) + [stop("success", samples=1)])
    watch = watched(tmp_path)
    assert watch.expected_runs() == 10 and not watch.done()  # llama31_8b: 10 runs
    assert watch.exit_code() == EXIT_RUNNING


def test_bad_paths_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Watch(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no result_"):
        Watch(tmp_path)


def test_partial_last_line_waits_then_counts_when_the_file_stops_growing(tmp_path: Path) -> None:
    log = tmp_path / "result_0.txt"
    lines = header() + body([(1000, 3.2)])
    log.write_text("\n".join(lines) + "\n" + stop("success", samples=1000))  # no final newline
    now = [log.stat().st_mtime + 1]
    watch = Watch(log, clock=lambda: now[0])
    watch.poll()
    assert not watch.done()
    now[0] += 10  # quiet for longer than PARTIAL_GRACE_S: the last line is whole
    watch.poll()
    assert watch.done() and watch.exit_code() == EXIT_SUCCESS


def test_a_log_that_stopped_growing_says_so(tmp_path: Path) -> None:
    log = write(tmp_path / "result_0.txt", header() + body([(1000, 3.5)]))
    old = log.stat().st_mtime - 600
    os.utime(log, (old, old))
    watch = Watch(log, clock=lambda: old + 600)
    watch.poll(final=True)
    assert "running, no new lines for 10m00s" in render_lines(watch)[0]
    watch = Watch(log, clock=lambda: old + 10)
    watch.poll(final=True)
    assert "no new lines" not in render_lines(watch)[0]


def test_render_table_has_one_column_per_run(tmp_path: Path) -> None:
    write(tmp_path / "result_0.txt", header() + body([(1000, 3.5), (2000, 3.4)]))
    write(tmp_path / "result_1.txt", header(seed=9) + body([(1000, 3.6)]))
    console = Console(file=io.StringIO(), width=200)
    console.print(render_table(watched(tmp_path)))
    text = console.file.getvalue()
    assert "result_0.txt" in text and "result_1.txt" in text
    for row in ("ETA (slope)", "ETA (RCP)", "train loss", "throughput", "run 2 of 10"):
        assert row in text


def test_follow_prints_a_line_per_change_and_exits_with_the_status(tmp_path: Path) -> None:
    log = write(tmp_path / "result_0.txt", header())
    pending = [body([(1000, 3.5)]), body([(2000, 3.2)]), [stop("success", samples=2000)]]

    def sleep(_: float) -> None:  # the run goes on while watch sleeps
        with log.open("a") as handle:
            handle.write("\n".join(pending.pop(0)) + "\n")

    out = io.StringIO()
    code = follow(Watch(log), console=Console(file=out, width=300), interval=0.01, sleep=sleep)
    lines = out.getvalue().splitlines()
    assert code == EXIT_SUCCESS and not pending
    assert [ln.split(": ", 2)[2].split(";")[0] for ln in lines[:4]] == [
        "running",
        "running",
        "running",
        "success",
    ]
    assert "eval 3.5000" in lines[1] and "eval 3.2000 <= target" in lines[2]
    assert lines[-1] == "1 of 1 runs ended: all succeeded"


def test_follow_timeout_returns_running(tmp_path: Path) -> None:
    log = write(tmp_path / "result_0.txt", header())
    out = io.StringIO()
    code = follow(Watch(log), console=Console(file=out), interval=0.01, timeout=0.05)
    assert code == EXIT_RUNNING and "still running" in out.getvalue()


# -- published submissions ------------------------------------------------------------------------
PUBLISHED = {
    "training_results_v4.0/NVIDIA/results/eos_ngc24.04_nemo/llama2_70b_lora": "llama2_70b_lora",
    "training_results_v4.1/NVIDIA/results/eos_ngc24.09_nemo/llama2_70b_lora": "llama2_70b_lora",
    "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora": (
        "llama2_70b_lora"
    ),
    "training_results_v5.1/HPE/results/HPE-Cray-XD670-H200-SXM5-141GB_n8_25.09/llama31_8b": (
        "llama31_8b"
    ),
}


@pytest.mark.parametrize("folder", sorted(PUBLISHED))
def test_published_folders_end_success_with_their_evals(folder: str) -> None:
    path = FIXTURES / folder
    if not path.is_dir():
        pytest.skip("published fixtures absent (../shared)")
    expected = json.loads((FIXTURES / "expected_scores.json").read_text())[folder]["runs"]
    watch = watched(path)
    runs = watch.all_runs
    names = sorted(expected, key=lambda name: int(name.removeprefix("result_")[:-4]))
    assert [r.path.name for r in runs] == names  # natural order, every run
    assert watch.expected_runs() == 10 and watch.done() and watch.exit_code() == EXIT_SUCCESS
    for run in runs:
        official = summarize_run(run.path)
        assert run.status == "success" and run.summary.benchmark == PUBLISHED[folder]
        assert run.summary.evals == official.evals and len(official.evals) >= 4
        assert run.summary.time_to_train_minutes == pytest.approx(expected[run.path.name])
        assert run.samples == official.samples_to_converge  # block sizes never count as totals
        assert run.samples_per_s is not None and run.samples_per_s > 0
        assert run.errors == []
    if "v4." in folder:  # NVIDIA NeMo logs their throughput (samples/s) in tracked_stats
        assert all(r.logged_throughput and 2.0 < r.logged_throughput < 2.3 for r in runs)
    if "v5.1" in folder:  # the log's own target_accuracy
        assert runs[0].target[1] == "log"


def test_cli_watch_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainperf import cli

    log = write(tmp_path / "result_0.txt", header() + body([(1000, 3.2)]))
    assert cli.main(["watch", str(log), "--json"]) == 2  # --json needs --once
    assert "add --once" in capsys.readouterr().err
    assert cli.main(["watch", str(log), "--interval", "0"]) == 2
    assert "--interval(0.0) must be > 0" in capsys.readouterr().err
    assert cli.main(["watch", str(log), "--once", "--json"]) == EXIT_RUNNING
    assert json.loads(capsys.readouterr().out)["runs"][0]["status"] == "running"


def test_follow_on_a_terminal_uses_live(tmp_path: Path) -> None:
    log = write(tmp_path / "result_0.txt", header() + body([(1000, 3.5)]))
    pending = [[stop("aborted", samples=1000)]]

    def sleep(_: float) -> None:
        with log.open("a") as handle:
            handle.write("\n".join(pending.pop(0)) + "\n")

    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True)
    assert follow(Watch(log), console=console, interval=0.01, sleep=sleep) == EXIT_FAILED
    text = out.getvalue()
    assert "ETA (slope)" in text and "aborted" in text and "a run did not succeed" in text


def test_odd_values_and_configs_never_crash(tmp_path: Path) -> None:
    odd: list[Any] = [None, "x", [], {}, True, float("nan"), -1, 1e308]
    lines = header()
    for i, value in enumerate(odd):
        at = T0 + 2000 + i
        lines += [
            mllog("train_loss", value, time_ms=at, samples_count=value, lr=value),
            mllog("tracked_stats", {"throughput": value, "train_loss": value}, time_ms=at),
            mllog("tracked_stats", value, time_ms=at, samples_count=value),
            mllog("eval_accuracy", value, time_ms=at, samples_count=value),
            mllog("max_sequence_length", value, time_ms=at),
            mllog("target_accuracy", value, time_ms=at),
            mllog("run_stop", time_ms=at, status=value, reason=value),
        ]
    log = write(tmp_path / "result_0.txt", lines)
    (tmp_path / "config_0.json").write_text(json.dumps({"scale": 3, "train": [1]}))
    watch = watched(log)
    assert len(watch.all_runs) == 1 and watch.exit_code() == EXIT_FAILED  # no run opener after
    render_lines(watch)
    watch_to_dict(watch)
    Console(file=io.StringIO()).print(render_table(watch))
