#!/usr/bin/env bash
# [flux1] speed: trainperf and the peer (diffusers FluxTransformer2DModel) in the same device
# call, one H200, the peer's flux-proxy shapes (6 double + 12 single blocks, 3.79 B parameters,
# 256 x 256 images = 256 image + 256 text tokens, batch 16, fp32 weights + bf16 compute).
# Usage (repo root; .whl/ with the mlperf-logging, torchao, diffusers and pytest wheels;
# .peer/peer_bench.py = ../shared/tools/peer_bench.py):
#   bash bench/gpu_flux.sh proxy    # nvidia-h200: peer with and without AC, ours eager, compiled,
#                                   #   compiled + float8 (tensorwise, rowwise)
#   bash bench/gpu_flux.sh small    # nvidia-h200: `trainperf run flux1 --scale small` to its target
#   bash bench/gpu_flux.sh full     # nvidia-h200: the full 11.9 B model, bf16 weights + AdamW states
# Every trainperf run uses train.seed=1234 (same initial weights and batches across variants).
source bench/device_env.sh
perf() {  # name, timeout, trainperf perf arguments...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf flux1 --preset 1gpu --json "$@" train.seed=1234
}
case "${1:?which group: proxy or small}" in
proxy)
  # the peer: PEER_SDPA=flash, as its baseline was measured (cuDNN SDPA's backward fails there)
  PEER_SDPA=flash run peer_flux_noac 240 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-proxy --batch 16 --no-ac
  PEER_SDPA=flash run peer_flux_ac 240 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-proxy --batch 16
  perf ours_flux_eager 200 --steps 6 --warmup 2
  perf ours_flux_compile 300 --steps 6 --warmup 3 parallel.compile=true
  perf ours_flux_compile_fp8tw 300 --steps 6 --warmup 3 parallel.compile=true parallel.float8=tensorwise
  perf ours_flux_compile_fp8rw 300 --steps 6 --warmup 3 parallel.compile=true parallel.float8=rowwise
  ;;
proxy-small)  # the proxy group's peer and best variants, then the small scale's curve (no target)
  PEER_SDPA=flash run peer_flux_noac 240 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-proxy --batch 16 --no-ac
  PEER_SDPA=flash run peer_flux_ac 240 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-proxy --batch 16
  perf ours_flux_eager 200 --steps 6 --warmup 2
  perf ours_flux_compile 300 --steps 6 --warmup 3 parallel.compile=true
  perf ours_flux_compile_fp8tw 300 --steps 6 --warmup 3 parallel.compile=true parallel.float8=tensorwise
  run ours_flux_small_curve 300 python3 -m trainperf run flux1 --scale small --no-progress \
    train.seed=1234 train.target=0.05 train.max_steps=480
  cp -r results "$OUT/results_small" 2>/dev/null
  ;;
full)  # the full FLUX.1-schnell shapes (11.9 B) on ONE H200: fp32 AdamW states (~190 GB) cannot
  # fit, bf16 weights + gradients + AdamW states (~95 GB) do. GBS 64 (not 512) keeps a step short.
  full() {  # name, timeout, overrides...
    local name=$1 limit=$2; shift 2
    run "$name" "$limit" python3 -m trainperf perf flux1 --scale full --json --steps 5 --warmup 2 \
      train.seed=1234 train.global_batch_size=64 train.master_dtype=bfloat16 parallel.compile=true "$@"
  }
  full ours_flux_full_ac_mb16 230 parallel.activation_checkpointing=full train.micro_batch_size=16
  full ours_flux_full_noac_mb8 170 parallel.activation_checkpointing=none train.micro_batch_size=8
  full ours_flux_full_ac_fp8 150 parallel.activation_checkpointing=full train.micro_batch_size=16 \
    parallel.float8=tensorwise
  ;;
full-peer)  # the full 11.9 B beside the peer with the same bf16-weights layout, one optimizer step
  # per batch on both sides (GBS = micro-batch); each side with and without AC at what fits
  PEER_SDPA=flash run peer_full_bf16_ac_b16 150 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-schnell --batch 16 --bf16-weights
  PEER_SDPA=flash run peer_full_bf16_noac_b8 150 torchrun --standalone --nproc-per-node 1 .peer/peer_bench.py hf-flux --size flux-schnell --batch 8 --bf16-weights --no-ac
  full() {
    local name=$1 limit=$2; shift 2
    run "$name" "$limit" python3 -m trainperf perf flux1 --scale full --json --steps 6 --warmup 2 \
      train.seed=1234 train.master_dtype=bfloat16 parallel.compile=true "$@"
  }
  full ours_full_bf16_ac_b16 170 parallel.activation_checkpointing=full train.global_batch_size=16 train.micro_batch_size=16
  full ours_full_bf16_noac_b8 150 parallel.activation_checkpointing=none train.global_batch_size=8 train.micro_batch_size=8
  ;;
small)
  run ours_flux_small_run 540 python3 -m trainperf run flux1 --scale small train.seed=1234
  cp -r results "$OUT/results_small" 2>/dev/null
  ;;
esac
finish
