"""The report's figures, read through their matplotlib axes: legends on both loss panels and
large enough, the eval axis named after the benchmark's metric, throughput from 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib import pyplot as plt
from tiny_run_logs import write_tiny_run

from trainperf.results.report import build_report
from trainperf.results.report_figures import LEGEND_POINTS, build_figures, eval_label


@pytest.fixture
def figures(tmp_path: Path):
    for i in range(3):
        write_tiny_run(tmp_path, i, seed=i, train_s=10.0 + i)
    report = build_report(tmp_path, out=tmp_path / "report")
    built = build_figures(report)
    yield built
    for fig in built.values():
        plt.close(fig)


def test_loss_panels_have_readable_legends_and_the_metric_name(figures) -> None:
    train_ax, eval_ax = figures["loss.png"].axes
    runs = [t.get_text() for t in train_ax.get_legend().get_texts()]
    assert runs == ["result_0.txt", "result_1.txt", "result_2.txt"]
    assert [t.get_text() for t in eval_ax.get_legend().get_texts()] == ["target 3.7"]
    for ax in (train_ax, eval_ax):
        assert all(t.get_fontsize() >= 8 for t in ax.get_legend().get_texts())
    assert LEGEND_POINTS >= 8
    assert eval_ax.get_ylabel() == "eval log perplexity"
    assert eval_ax.get_title() == "eval log perplexity (lower is better)"
    assert train_ax.get_ylabel() == "train loss"


def test_throughput_axis_starts_at_zero(figures) -> None:
    (ax,) = figures["throughput.png"].axes
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top > 51.2  # the fastest run: 512 samples in 10 s
    assert ax.get_ylabel() == "training samples/s"
    assert "evaluation excluded" in ax.get_title()


def test_logs_without_train_loss_say_so(tmp_path: Path, craft) -> None:
    for i in range(2):
        craft(tmp_path / f"result_{i}.txt", [0.95, 0.93, 0.92], benchmark="llama2_70b_lora", gbs=8)
    report = build_report(tmp_path, out=tmp_path / "report", compliance=False, rcp=False)
    built = build_figures(report)
    try:
        train_ax, eval_ax = built["loss.png"].axes
        assert [t.get_text() for t in train_ax.texts] == ["these logs carry no train loss"]
        assert eval_ax.get_ylabel() == "eval loss"
        labels = [t.get_text() for t in eval_ax.get_legend().get_texts()]
        assert labels[:2] == ["result_0.txt", "result_1.txt"]  # the runs go here instead
    finally:
        for fig in built.values():
            plt.close(fig)


def test_eval_label() -> None:
    assert eval_label("llama31_8b") == "eval log perplexity"
    assert eval_label("llama2_70b_lora") == "eval loss"
    assert eval_label(None) == eval_label("gpt3") == "eval_accuracy"
