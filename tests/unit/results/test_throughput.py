"""Unit tests for the one definition of training throughput (``curves.training_throughput``),
which ``watch`` and ``report`` both show: blocks' samples over their time, evaluations excluded."""

from __future__ import annotations

import pytest
from mllog_lines import T0, mllog

from trainperf.results.curves import extract_blocks, training_throughput
from trainperf.results.parse import parse_lines


def events(*lines: str):
    return parse_lines(lines).events


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def block(begin: float, end: float, first: int, last: int, *, size_only: bool = False):
    """A block from ``first`` to ``last`` samples between ``begin`` and ``end`` seconds, then a
    10 s evaluation; ``size_only``: the v5.1 convention (both events carry the block's size)."""
    a, b = (last - first, last - first) if size_only else (first, last)
    return [
        mllog("block_start", time_ms=at(begin), samples_count=a),
        mllog("train_loss", 3.0, time_ms=at(end), samples_count=last),
        mllog("block_stop", time_ms=at(end), samples_count=b),
        mllog("eval_start", time_ms=at(end), samples_count=last),
        mllog("eval_stop", time_ms=at(end + 10), samples_count=last),
    ]


def test_closed_blocks_give_samples_over_their_time() -> None:
    # 512 samples in 10 s, then 512 in 30 s: 1024 / 40 s, not the mean of 51.2 and 17.1
    log = events(mllog("run_start", time_ms=T0), *block(0, 10, 0, 512), *block(20, 50, 512, 1024))
    rate = training_throughput(log)
    assert rate is not None and rate.samples_per_s == pytest.approx(25.6)
    assert rate.source == "block timestamps"
    assert [b.end_samples for b in extract_blocks(log)] == [512, 1024]


def test_a_running_block_counts_up_to_its_last_train_event() -> None:
    lines = [mllog("run_start", time_ms=T0), *block(0, 10, 0, 512)]
    lines += [
        mllog("block_start", time_ms=at(20), samples_count=512),
        mllog("train_loss", 3.0, time_ms=at(40), samples_count=1024),
    ]
    assert training_throughput(events(*lines)).samples_per_s == pytest.approx(512 / 10)
    rate = training_throughput(events(*lines), open_block=True)
    assert rate.samples_per_s == pytest.approx(1024 / 30)  # (512 + 512) / (10 + 20) s
    blocks = extract_blocks(events(*lines), open_block=True)
    assert blocks[-1].open and blocks[-1].end_samples == 1024


def test_v51_block_sizes_never_count_as_running_totals() -> None:
    lines = [*block(0, 10, 0, 384, size_only=True), *block(20, 30, 384, 768, size_only=True)]
    lines += [
        mllog("block_start", time_ms=at(40), samples_count=384),
        mllog("tracked_stats", {"train_loss": 1.0}, time_ms=at(45), samples_count=1000),
    ]
    blocks = extract_blocks(events(*lines), open_block=True)
    assert [(b.samples, b.end_samples) for b in blocks] == [(384, 384), (384, 768)]
    assert training_throughput(events(*lines), open_block=True).samples_per_s == 38.4


def test_a_logged_throughput_stands_for_the_block() -> None:
    lines = block(0, 10, 0, 512)
    lines.insert(1, mllog("tracked_stats", {"throughput": 2.2}, time_ms=at(5), samples_count=256))
    rate = training_throughput(events(*lines))
    assert (rate.samples_per_s, rate.source) == (2.2, "logged")


def test_without_blocks_the_time_since_run_start_less_the_evaluations() -> None:
    lines = [
        mllog("run_start", time_ms=T0),
        mllog("eval_start", time_ms=at(10), samples_count=100),
        mllog("eval_stop", time_ms=at(30), samples_count=100),
        mllog("train_loss", 3.0, time_ms=at(40), samples_count=300),
    ]
    rate = training_throughput(events(*lines))
    assert rate.samples_per_s == pytest.approx(300 / 20) and rate.source == "time since run_start"
    assert training_throughput(events(mllog("run_start", time_ms=T0))) is None
