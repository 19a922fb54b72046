"""The kernel summary of `trainperf perf --profile`, on hand-made Chrome trace events."""

import gzip
import json

import pytest
import torch

from trainperf.perf.profile import kernel_category, summarize_trace, write_trace


def kernel(name: str, ts: float, dur: float, cat: str = "kernel") -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("nvjet_tst_192x192_64x4_1x2_h_bz_coopB_TNT", "gemm"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64", "gemm"),
        ("triton_tem_fused_mm_0", "gemm"),
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3", "attention"),
        ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "attention"),
        ("pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel", "attention"),
        ("ncclDevKernel_AllGather_RING_LL", "communication"),
        ("void at::native::(anonymous namespace)::fused_adamMathKernel", "optimizer"),
        ("triton_per_fused__to_copy_add_mean_mul_pow_rsqrt_0", "other"),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add>", "other"),
    ],
)
def test_kernel_categories(name: str, category: str) -> None:
    assert kernel_category(name) == category


def test_summary_busy_categories_and_exposed_communication() -> None:
    events = [
        kernel("nvjet_gemm_a", 0, 40),  # compute 0..40
        kernel("flash_fwd", 50, 20),  # compute 50..70
        kernel("ncclDevKernel_AllGather", 30, 30),  # 30..60: hidden 30..40 and 50..60
        kernel("elementwise", 80, 10),
        kernel("Memcpy HtoD", 95, 5, cat="gpu_memcpy"),
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 500},  # not a kernel
        {"ph": "i", "cat": "kernel", "name": "marker", "ts": 0},  # not a duration
    ]
    s = summarize_trace(events, steps=2, wall_s=200e-6)
    assert s.wall_ms_per_step == pytest.approx(0.1)
    # busy: 0..70 (gemm, comm, attention), 80..90, 95..100 -> 85 us over 2 steps
    assert s.gpu_busy_ms_per_step == pytest.approx(0.0425)
    assert s.category_ms_per_step == pytest.approx(
        {"gemm": 0.02, "attention": 0.01, "communication": 0.015, "other": 0.005,
         "memcpy/memset": 0.0025}
    )  # fmt: skip
    assert s.exposed_communication_ms_per_step == pytest.approx(0.005)  # 40..50
    assert s.top_kernels[0] == ("gemm", "nvjet_gemm_a", pytest.approx(0.02))
    assert s.gpu_busy_fraction == pytest.approx(0.425)
    text = "\n".join(s.lines())
    assert "exposed communication" in text and "gemm" in text


def test_kernels_queued_before_the_profiled_steps_do_not_count() -> None:
    def step(n: int, ts: float, dur: float) -> dict:
        return {"ph": "X", "cat": "gpu_user_annotation", "name": f"ProfilerStep#{n}", "ts": ts,
                "dur": dur}  # fmt: skip

    events = [
        kernel("nvjet_left_over_from_warmup", 0, 50),
        step(1, 100, 100),
        kernel("nvjet_a", 100, 60),
        step(2, 200, 100),
        kernel("nvjet_b", 210, 60),
        kernel("fused_adam_tail", 300, 10),  # after the GPU annotation of step 2: still counted
    ]
    s = summarize_trace(events, steps=2, wall_s=200e-6)
    assert s.category_ms_per_step == pytest.approx({"gemm": 0.06, "optimizer": 0.005})
    assert {k[1] for k in s.top_kernels} == {"nvjet_a", "nvjet_b", "fused_adam_tail"}


def test_cpu_only_trace_has_no_kernels(tmp_path) -> None:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        torch.ones(4) @ torch.ones(4)
    path = tmp_path / "trace_rank0.json.gz"
    events = write_trace(prof, path)
    with gzip.open(path, "rt") as fh:
        assert json.load(fh)["traceEvents"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace_rank0.json.gz"]  # no temp left
    s = summarize_trace(events, steps=1, wall_s=0.01)
    assert s.gpu_busy_ms_per_step == 0 and s.category_ms_per_step == {}
