#!/usr/bin/env bash
# The two open speed goals, each beside its peer in the same device call (one H200):
# [flux1] flux-proxy (6 double + 12 single blocks, 3.79 B, 256 x 256 images, batch 16) vs
# diffusers (../shared/tools/peer_bench.py hf-flux) and [round6] gpt_oss_20b with 4 of its 24
# layers (seq 8192, GBS = micro-batch = 1) vs HF GptOssForCausalLM + FSDP2 (bench/peer_moe.py).
# Usage (repo root; .whl/ with the mlperf-logging, torchao, diffusers wheels; .peer/peer_bench.py):
#   bash bench/gpu_goals.sh profile   # peers without AC (their faster figure), ours at its best
#                                     #   with a kernel table of one profiled run each
#   bash bench/gpu_goals.sh final     # peers without AC, ours (AdamW on 1 and 2 streams, event
#                                     #   timing and a sync per step): the figures for RESULTS
#   bash bench/gpu_goals.sh master    # float32 masters in AdamW against masters in the model
#   bash bench/gpu_goals.sh masterfinal  # with them: both goals beside their peers
#   bash bench/gpu_goals.sh adamw     # the AdamW kernel's launch shapes; gpt_oss with the best
#   bash bench/gpu_goals.sh runcheck  # `trainperf run` small scales to their targets with them
# Every trainperf run uses train.seed=1234 (same initial weights and batches across variants).
source bench/device_env.sh
flux_peer() {  # name, timeout, peer_bench.py hf-flux arguments...
  local name=$1 limit=$2; shift 2
  PEER_SDPA=flash run "$name" "$limit" torchrun --standalone --nproc-per-node 1 \
    .peer/peer_bench.py hf-flux --size flux-proxy --batch 16 --steps 14 "$@"
}
flux_ours() {  # name, timeout, overrides...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf flux1 --preset 1gpu --json --steps 20 \
    --warmup 3 train.seed=1234 parallel.compile=true "$@"
}
moe_peer() {
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" torchrun --standalone --nproc-per-node 1 bench/peer_moe.py hf-gpt-oss \
    --size gpt-oss-20b-mlperf --layers 4 --seq 8192 --batch 1 --steps 14 --warmup 3 "$@"
}
moe_ours() {
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf gpt_oss_20b --preset 1gpu --json --steps 20 \
    --warmup 3 train.seed=1234 train.global_batch_size=1 train.micro_batch_size=1 \
    parallel.compile=true "$@"
}
kernels() {  # name: the kernel table of $OUT/name/trace_rank0.json.gz, then drop the trace
  python3 bench/kernel_table.py "$OUT/$1/trace_rank0.json.gz" > "$OUT/$1_kernels.txt" 2>&1
  head -12 "$OUT/$1_kernels.txt"; rm -rf "${OUT:?}/$1"
}
case "${1:?which group: profile or final}" in
profile)
  gpu_tests gpu_tests_clip tests/unit/train/test_clip_fused.py
  flux_peer peer_flux_noac 150 --no-ac
  flux_ours ours_flux_fp8tw 260 parallel.float8=tensorwise --profile "$OUT/prof_flux_fp8tw"
  kernels prof_flux_fp8tw
  moe_peer peer_moe_noac 150 --no-ac
  moe_ours ours_moe 240 --profile "$OUT/prof_moe"
  kernels prof_moe
  ;;
final)  # after the fused clip, AdamW on 2 streams, the sync-free CE count and event timing:
  # the GPU tests of those, then each goal's peer (its faster figure: no AC) and ours
  gpu_tests gpu_tests_final tests/unit/train/test_clip_fused.py tests/unit/train/test_optim_streams.py
  flux_peer peer_flux_noac 75 --no-ac
  flux_ours ours_flux_bf16 80
  flux_ours ours_flux_fp8tw 80 parallel.float8=tensorwise
  flux_ours ours_flux_fp8tw_1stream 80 parallel.float8=tensorwise train.optimizer_streams=1
  flux_ours ours_flux_fp8tw_sync 80 parallel.float8=tensorwise --sync-each-step
  moe_peer peer_moe_noac 70 --no-ac
  moe_ours ours_moe 70
  moe_ours ours_moe_1stream 70 train.optimizer_streams=1
  ;;
pair)  # gpt_oss: the peer, ours, the peer again (bracketing ours), 30 timed steps for ours
  moe_peer peer_moe_noac 150 --no-ac
  moe_ours ours_moe 100 --steps 30
  moe_peer peer_moe_noac_again 100 --no-ac
  ;;
master)  # float32 masters in AdamW (train.master_weights auto = optimizer here) against the
  # masters as the model's parameters (model: autocast casts them), each goal in the same call
  gpu_tests gpu_tests_master tests/unit/train/test_master_weights.py \
    tests/unit/train/test_optim_streams.py tests/unit/train/test_clip_fused.py
  moe_peer peer_moe_noac 150 --no-ac
  moe_ours ours_moe 110 --steps 30
  moe_ours ours_moe_model 110 --steps 30 train.master_weights=model
  flux_ours ours_flux_bf16 110
  flux_ours ours_flux_bf16_model 110 train.master_weights=model
  ;;
masterfinal)  # the figures with masters in AdamW: gpt_oss bracketed by two peer runs (ours with
  # a kernel table), at the preset's GBS 4 (accumulated in float32) too; flux1 bf16 beside its peer
  moe_peer peer_moe_noac 150 --no-ac
  moe_ours ours_moe 120 --steps 30 --profile "$OUT/prof_moe"
  kernels prof_moe
  moe_peer peer_moe_noac_again 150 --no-ac
  moe_ours ours_moe_gbs4 110 train.global_batch_size=4
  flux_peer peer_flux_noac 150 --no-ac
  flux_ours ours_flux_bf16 110
  ;;
adamw)  # the AdamW kernel's launch shapes (bench/adamw_kernel.py), then gpt_oss with the fastest
  # shape and with the default one, beside the peer
  run adamw_kernel 150 python3 bench/adamw_kernel.py
  read -r block warps < <(tail -1 "$OUT/adamw_kernel.json" | python3 -c \
    "import json, sys; print(*json.load(sys.stdin)['best'])")
  moe_peer peer_moe_noac 150 --no-ac
  run ours_moe_block${block}_warps${warps} 120 python3 -c "import sys
import trainperf.train.master as M
M.BLOCK, M.WARPS = $block, $warps
from trainperf.cli import main
sys.exit(main(sys.argv[1:]))" perf gpt_oss_20b --preset 1gpu --json --steps 30 --warmup 3 \
    train.seed=1234 train.global_batch_size=1 train.micro_batch_size=1 parallel.compile=true
  moe_ours ours_moe 120 --steps 30
  ;;
runcheck)  # `trainperf run` with masters in AdamW (auto): the GPU tests, then gpt_oss_20b's small
  # scale to its target and its log through the official checker, then llama31_8b's small scale
  gpu_tests gpu_tests_master tests/unit/train/test_master_weights.py \
    tests/unit/train/test_optim_streams.py tests/unit/train/test_clip_fused.py
  run run_gpt_oss_small 330 python3 -m trainperf run gpt_oss_20b --scale small --no-progress \
    --results "$OUT/results_gpt_oss_small" train.seed=1234
  run check_gpt_oss_small 60 python3 -m trainperf check "$OUT/results_gpt_oss_small"
  run run_llama_small 150 python3 -m trainperf run llama31_8b --scale small --no-progress \
    --results "$OUT/results_llama_small" train.seed=1
  ;;
esac
finish
