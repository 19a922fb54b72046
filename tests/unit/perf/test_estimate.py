"""trainperf.perf.estimate and peaks: the NVIDIA 405B recipe figures and RCP projections."""

from __future__ import annotations

import json

import pytest

from trainperf.benchmarks import get_benchmark
from trainperf.perf.estimate import (
    NVIDIA_405B_RECIPE_OVERRIDES,
    estimate,
    estimate_to_dict,
    project_time_to_train,
    projection_to_dict,
    rcp_mean_samples,
)
from trainperf.perf.peaks import DEVICE_PEAKS, dense_peak_tflops, device_key

RECIPE = dict(model="llama3.1-405b", seq=8192, gbs=252, gpus=576, device="h100", dtype="fp8")


def test_recipe_flops_per_sample_and_mfu() -> None:
    # NVIDIA DGX Cloud Llama 3.1 405B recipe: 2.17E16 FLOPs/sample, 42.71% MFU at 11.24 s/step.
    est = estimate(**RECIPE, step_time=11.24, model_overrides=NVIDIA_405B_RECIPE_OVERRIDES)
    assert f"{est.model_flops_per_sample:.2E}" == "2.17E+16"
    assert round(est.mfu * 100, 2) == 42.71
    assert est.peak_tflops == 1978.9


def test_true_405b_config_gives_8_query_groups_figures() -> None:
    est = estimate(**RECIPE, step_time=11.24)
    assert f"{est.model_flops_per_sample:.2E}" == "2.15E+16"
    assert round(est.mfu * 100, 2) == 42.30


def test_recipe_tokens_per_s_and_days() -> None:
    est = estimate(**RECIPE, step_time=12.84, tokens=1e12)
    assert round(est.tokens_per_s) == 160_778
    assert est.tokens_per_s_per_gpu == pytest.approx(160_777.57 / 576, rel=1e-6)
    assert round(est.days, 2) == 71.99
    assert est.model_flops_per_sample == pytest.approx(est.model_flops_per_token * 8192)


def test_estimate_without_tokens_and_json() -> None:
    est = estimate(**RECIPE, step_time=11.24)
    assert est.days is None
    data = json.loads(json.dumps(estimate_to_dict(est)))
    for key in ("model_flops_per_sample", "tokens_per_s", "mfu", "days"):
        assert key in data
    assert 0 < data["mfu"] < 1


def test_dense_peaks() -> None:
    assert DEVICE_PEAKS["h200"] == DEVICE_PEAKS["h100"] == {"bf16": 989.4, "fp8": 1978.9}
    assert dense_peak_tflops("B200", "BF16") == 2250.0
    for device, peaks in DEVICE_PEAKS.items():
        assert peaks["fp8"] == pytest.approx(2 * peaks["bf16"], rel=1e-3), device


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"device": "a100"}, "known: h100, h200"),
        ({"dtype": "fp4"}, "known: bf16, fp8"),
        ({"model": "gpt3"}, "unknown model 'gpt3'; known: .*llama3.1-405b"),
        ({"gbs": 0}, "gbs must be a positive"),
    ],
)
def test_unknown_inputs_are_value_errors(override: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        estimate(**{**RECIPE, "step_time": 11.24, **override})


def test_rcp_means_exact_interpolated_and_out_of_range() -> None:
    mean, basis, ruleset = rcp_mean_samples("llama2_70b_lora", 8)
    assert mean == pytest.approx(3178.67, abs=0.01) and "batch size 8" in basis
    assert ruleset == "6.1.0"
    # BS 32 is pruned (mlperf_spec.md §2.5): 24 interpolates between 16 and 128.
    mean, basis, _ = rcp_mean_samples("llama2_70b_lora", 24)
    assert mean == pytest.approx(4032.0 + (11264.0 - 4032.0) * 8 / 112)
    assert "16 and 128" in basis
    mean, _, _ = rcp_mean_samples("llama31_8b", 48)
    assert mean == pytest.approx((178858.67 + 226645.33) / 2, abs=0.01)
    mean, _, ruleset = rcp_mean_samples("llama31_405b", 1152)
    assert (mean, ruleset) == (313344.0, "6.0.0")
    with pytest.raises(ValueError, match="above every"):
        rcp_mean_samples("llama2_70b_lora", 256)


def test_projection_lora_8_gpu_h200() -> None:
    # Lenovo v4.1 8xH200: 2.584 samples/s steady; RCP mean 3178.67 at GBS 8.
    proj = project_time_to_train(benchmark="llama2_70b_lora", gbs=8, samples_per_s=2.584)
    # evals at 1536 (first after skipping 3) ... 3456 (first boundary >= 3178.67): 6 evals.
    assert proj.evaluations == 6
    assert proj.train_minutes == pytest.approx(3178.6667 / 2.584 / 60, rel=1e-6)
    assert proj.eval_minutes == pytest.approx(6 * 173 / (3 * 2.584) / 60)
    assert proj.total_minutes == pytest.approx(proj.train_minutes + proj.eval_minutes)
    assert 20 < proj.total_minutes < 25  # published 23.062 min
    assert json.loads(json.dumps(projection_to_dict(proj)))["evaluations"] == 6


def test_projection_405b_eval_count_and_measured_eval_rate() -> None:
    # GBS 1152: first eval at 14 x 18432 = 258,048 samples; RCP mean 313,344 = 17 x 18432.
    proj = project_time_to_train(
        benchmark="llama31_405b", gbs=1152, samples_per_s=20.0, eval_samples_per_s=50.0
    )
    assert proj.evaluations == 4
    assert proj.eval_minutes == pytest.approx(4 * 5760 / 50.0 / 60)


def test_projection_rejects_unknown_benchmark() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'gpt3'; known: llama31_8b"):
        project_time_to_train(benchmark="gpt3", gbs=8, samples_per_s=1.0)


def test_eval_cadence_is_the_specs() -> None:
    cadence = get_benchmark("llama31_8b").eval
    assert (cadence.every_samples, cadence.eval_samples) == (12288, 1024)
    assert cadence.interval(40) == 12320  # ceil(12288 / 40) * 40
    lora = get_benchmark("llama2_70b_lora").eval
    assert (lora.evaluations_skipped(8), lora.first_eval_index(8)) == (3, 4)  # first at 1536
    big = get_benchmark("llama31_405b").eval
    assert (big.evaluations_skipped(1152), big.first_eval_index(1152)) == (14, 14)


@pytest.mark.parametrize(
    ("name", "key"),
    [("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA B200", "b200"),
     ("AMD Instinct MI300X", "mi300x"), ("AMD Instinct MI325X", "mi325x"),
     ("AMD Instinct MI355X", "mi355x"), ("cpu", None), ("NVIDIA A100-SXM4-80GB", None)],
)  # fmt: skip
def test_one_device_key_for_every_device_name(name: str, key: str | None) -> None:
    assert device_key(name) == key
