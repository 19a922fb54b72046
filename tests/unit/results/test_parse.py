"""Unit tests for trainperf.results.parse on synthetic MLLOG logs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mllog_lines import T0, mllog

from trainperf.results.parse import (
    NO_RUN_START,
    NO_RUN_STOP,
    parse_line,
    parse_lines,
    parse_log,
    summarize_run,
)


def build_log(
    *,
    start_ms: int = T0 + 60_000,
    stop_ms: int | None = T0 + 60_000 + 1_800_000,
    status: str = "success",
    evals: tuple[tuple[int, float], ...] = ((1536, 0.94), (1920, 0.93), (2304, 0.92)),
    run_start: bool = True,
    prefix: str = "",
) -> list[str]:
    """A small llama2_70b_lora-like log: init, run_start, evals, run_stop."""
    lines = [
        mllog("cache_clear", True, time_ms=T0),
        mllog("init_start", event_type="INTERVAL_START", time_ms=T0),
        mllog("submission_benchmark", "llama2_70b_lora", time_ms=T0),
        mllog("seed", 1234, time_ms=T0),
        mllog("global_batch_size", 8, time_ms=T0),
        mllog("init_stop", event_type="INTERVAL_END", time_ms=start_ms),
    ]
    if run_start:
        lines.append(mllog("run_start", event_type="INTERVAL_START", time_ms=start_ms))
    step = (stop_ms - start_ms) // max(len(evals), 1) if stop_ms else 60_000
    for i, (samples, value) in enumerate(evals, start=1):
        lines.append(
            mllog("eval_accuracy", value, time_ms=start_ms + i * step, samples_count=samples)
        )
    if stop_ms is not None:
        lines.append(
            mllog(
                "run_stop",
                event_type="INTERVAL_END",
                time_ms=stop_ms,
                samples_count=evals[-1][0] if evals else 0,
                status=status,
            )
        )
    return [prefix + line for line in lines]


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_time_to_train_and_samples_to_converge(tmp_path: Path) -> None:
    log = write_log(tmp_path / "result_0.txt", build_log(stop_ms=T0 + 60_000 + 1_620_000))
    run = summarize_run(log)
    assert run.time_to_train_minutes == pytest.approx(27.0)
    assert run.run_start_ms == T0 + 60_000
    assert run.status == "success" and run.converged
    assert run.samples_to_converge == 2304
    assert run.final_eval == pytest.approx(0.92)
    assert run.evals == [(1536, 0.94), (1920, 0.93), (2304, 0.92)]
    assert (run.benchmark, run.seed, run.global_batch_size) == ("llama2_70b_lora", 1234, 8)
    assert run.problems == []


def test_last_eval_before_run_stop_wins(tmp_path: Path) -> None:
    lines = build_log()
    lines.append(mllog("eval_accuracy", 0.5, time_ms=T0 + 10**8, samples_count=9999))
    run = summarize_run(write_log(tmp_path / "r.txt", lines))
    assert run.samples_to_converge == 2304
    assert run.final_eval == pytest.approx(0.92)
    assert len(run.evals) == 3


@pytest.mark.parametrize("prefix", ["0: ", " 0: ", "[1,0]<stdout>:", "12: [rank0] junk "])
def test_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    lines = ["+ echo 'Beginning trial 1 of 10'", ':::SYSJSON {"submitter": "x"}']
    lines += build_log(prefix=prefix) + ["0:   val_global_batch_size: 4", ""]
    parsed = parse_log(write_log(tmp_path / "r.txt", lines))
    assert parsed.errors == []
    assert [e.key for e in parsed.events][:3] == [
        "cache_clear",
        "init_start",
        "submission_benchmark",
    ]
    assert parsed.events[0].lineno == 3
    assert summarize_run(tmp_path / "r.txt").converged


def test_event_fields() -> None:
    event = parse_line(
        "0: " + mllog("run_stop", None, time_ms=T0, event_type="INTERVAL_END", status="success"),
        lineno=7,
    )
    assert event is not None
    assert (event.key, event.time_ms, event.event_type, event.lineno) == (
        "run_stop",
        T0,
        "INTERVAL_END",
        7,
    )
    assert event.metadata["status"] == "success"
    assert parse_line("plain text", lineno=1) is None


@pytest.mark.parametrize(
    "bad",
    [
        ':::MLLOG {"namespace": "", "time_ms": 17000',  # truncated
        ':::MLLOG {"namespace": "", "time_ms": 1, "key": "run_start"} extra',  # trailing junk
        ":::MLLOG [1, 2]",
        ':::MLLOG {"time_ms": 1, "value": 3}',  # no key
        ':::MLLOG {"time_ms": "soon", "key": "run_start"}',
        ':::MLLOG {"time_ms": 1, "key": "run_start", "metadata": 5}',
        ":::MLLOG ",
    ],
)
def test_garbled_lines_become_errors(tmp_path: Path, bad: str) -> None:
    lines = build_log()
    lines.insert(3, bad)
    parsed = parse_log(write_log(tmp_path / "r.txt", lines))
    assert len(parsed.errors) == 1
    assert parsed.errors[0].startswith("line 4: ")
    assert len(parsed.events) == len(lines) - 1
    run = summarize_run(tmp_path / "r.txt")
    assert run.converged
    assert run.problems == parsed.errors


def test_truncated_last_line(tmp_path: Path) -> None:
    lines = build_log(stop_ms=None)
    lines.append(lines[-1][:40])
    run = summarize_run(write_log(tmp_path / "r.txt", lines))
    assert not run.converged and run.status is None
    assert any(p.startswith(f"line {len(lines)}: invalid JSON") for p in run.problems)


def test_missing_run_stop_is_a_problem(tmp_path: Path) -> None:
    run = summarize_run(write_log(tmp_path / "r.txt", build_log(stop_ms=None)))
    assert NO_RUN_STOP in run.problems
    assert not run.converged
    assert run.status is None and run.time_to_train_minutes is None
    assert run.samples_to_converge == 2304  # evals so far


def test_missing_run_start_is_a_problem(tmp_path: Path) -> None:
    run = summarize_run(write_log(tmp_path / "r.txt", build_log(run_start=False)))
    assert NO_RUN_START in run.problems
    assert not run.converged and run.time_to_train_minutes is None


def test_aborted_run_is_not_converged(tmp_path: Path) -> None:
    run = summarize_run(write_log(tmp_path / "r.txt", build_log(status="aborted")))
    assert run.status == "aborted" and not run.converged
    assert run.time_to_train_minutes == pytest.approx(30.0)
    assert any("aborted" in p for p in run.problems)


def test_non_numeric_eval_is_skipped(tmp_path: Path) -> None:
    lines = build_log()
    lines.insert(-1, mllog("eval_accuracy", "nan-ish", time_ms=T0 + 10, samples_count=1))
    run = summarize_run(write_log(tmp_path / "r.txt", lines))
    assert run.samples_to_converge == 2304
    assert any("is not a number" in p for p in run.problems)


def test_unreadable_file_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read result log"):
        parse_log(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="cannot read result log"):
        parse_log(tmp_path)


def test_non_utf8_bytes_do_not_crash(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(b"\xff\xfe garbage \x80\n" + "\n".join(build_log()).encode())
    assert summarize_run(path).converged


def test_parse_lines_without_file() -> None:
    parsed = parse_lines(build_log())
    assert parsed.path is None and parsed.errors == [] and len(parsed.events) == 11


def _mutate(lines: list[str], rng: random.Random) -> list[str]:
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(4)
        i = rng.randrange(len(lines)) if lines else 0
        if not lines:
            break
        if choice == 0:  # truncate a line
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif choice == 1:  # flip characters
            chars = list(lines[i])
            for _ in range(rng.randint(1, 5)):
                if chars:
                    chars[rng.randrange(len(chars))] = chr(rng.randrange(32, 0x2FF))
            lines[i] = "".join(chars)
        elif choice == 2:  # delete a line
            del lines[i]
        else:  # truncate the file
            lines = lines[:i]
    return lines


def test_random_mutations_never_raise(tmp_path: Path) -> None:
    rng = random.Random(0)
    base = build_log(prefix="0: ")
    path = tmp_path / "r.txt"
    for _ in range(300):
        path.write_text("\n".join(_mutate(base, rng)), encoding="utf-8")
        run = summarize_run(path)
        assert run.converged == (
            run.status == "success"
            and run.time_to_train_minutes is not None
            and run.time_to_train_minutes >= 0
        )
        if not run.converged:
            assert run.problems
