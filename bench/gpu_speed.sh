#!/usr/bin/env bash
# [speed] measurements: trainperf and the peer in the same device call, same GPUs, same shapes.
# Usage (repo root; .whl/ with the mlperf-logging, torchao and pytest wheels; .peer/peer_bench.py):
#   bash bench/gpu_speed.sh 8b     # nvidia-h200-x2: GPU tests; peer HF+FSDP2 8B; ours compile,
#                                  #   compile + plain CE, compile + float8 (profiled)
#   bash bench/gpu_speed.sh lora   # nvidia-h200-x2: 8B float8 without reshard; peer HF+PEFT+FSDP2
#                                  #   70B LoRA; ours bf16 and float8 frozen base; then 70B LoRA on
#                                  #   ONE of the H200s
#   bash bench/gpu_speed.sh lora-1gpu  # nvidia-h200: 70B LoRA 20-layer proxy, peer on the same shapes;
#                                  #   FULL=1: also the whole 70B on the one GPU (float8 base)
#   bash bench/gpu_speed.sh h100   # nvidia-h100-x1: llama31_8b 4-layer proxy, peer on the same
#                                  #   shapes; both profiled (GPU time by kernel category)
# Every trainperf run uses train.seed=1234: same initial weights and batches, so the per-step
# losses in the JSON files can be compared across feature combinations. Profiles (Chrome traces
# and a summary on stderr) land in $OUT/prof_NAME/.
source bench/device_env.sh
perf() {  # name, timeout, trainperf perf arguments...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf "$@" --json train.seed=1234
}
case "${1:?which group: 8b, lora, lora-fp8, lora-1gpu, lora-1gpu-fp8 or h100}" in
8b)
  gpu_tests gpu_tests tests/gpu
  run peer_8b 240 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-pretrain --size 8b --steps 8
  perf ours_8b_compile 240 llama31_8b --nproc 2 --preset 2gpu --steps 5 --warmup 2 parallel.compile=true
  perf ours_8b_compile_plain_ce 240 llama31_8b --nproc 2 --preset 2gpu --steps 5 --warmup 2 \
    parallel.compile=true train.cross_entropy=plain
  perf ours_8b_compile_fp8tw 240 llama31_8b --nproc 2 --preset 2gpu --steps 5 --warmup 2 \
    parallel.compile=true parallel.float8=tensorwise --profile "$OUT/prof_8b_fp8"
  ;;
lora)
  gpu_tests gpu_tests_lora tests/gpu -k lora
  perf ours_8b_compile_fp8tw_keep 240 llama31_8b --nproc 2 --preset 2gpu --steps 5 --warmup 2 \
    parallel.compile=true parallel.float8=tensorwise parallel.reshard_after_forward=false \
    --profile "$OUT/prof_8b_fp8_keep"
  run peer_lora 300 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-lora --size 70b --steps 4
  perf ours_lora_compile 240 llama2_70b_lora --nproc 2 --gbs 2 --steps 3 --warmup 1 parallel.compile=true
  perf ours_lora_compile_fp8 240 llama2_70b_lora --nproc 2 --gbs 2 --steps 3 --warmup 1 \
    parallel.compile=true parallel.float8=rowwise --profile "$OUT/prof_lora_fp8" --profile-steps 1
  CUDA_VISIBLE_DEVICES=0 perf ours_lora_1gpu_fp8 240 llama2_70b_lora --gbs 1 --steps 3 --warmup 1 \
    parallel.compile=true parallel.float8=rowwise
  ;;
lora-fp8)  # the float8 frozen base again, after its input gradient became a custom op
  gpu_tests gpu_tests_lora tests/gpu -k lora
  run peer_lora 300 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-lora --size 70b --steps 4
  perf ours_lora_compile_fp8 240 llama2_70b_lora --nproc 2 --gbs 2 --steps 3 --warmup 1 \
    parallel.compile=true parallel.float8=rowwise --profile "$OUT/prof_lora_fp8" --profile-steps 1
  CUDA_VISIBLE_DEVICES=0 perf ours_lora_1gpu_fp8 240 llama2_70b_lora --gbs 1 --steps 3 --warmup 1 \
    parallel.compile=true parallel.float8=rowwise
  ;;
lora-1gpu)  # nvidia-h200: 20 of the 80 layers on one GPU, peer (HF + PEFT) on the same shapes;
  # then the whole 70B with the float8 frozen base, which the peer cannot fit on one GPU
  run peer_lora_l20 200 torchrun --standalone --nproc-per-node 1 bench/peer_proxy.py hf-lora --size 70b --layers 20 --steps 5
  perf ours_lora_l20_compile 200 llama2_70b_lora --preset 1gpu --gbs 1 --steps 3 --warmup 1 parallel.compile=true
  perf ours_lora_l20_fp8 200 llama2_70b_lora --preset 1gpu --gbs 1 --steps 3 --warmup 1 parallel.float8=rowwise
  perf ours_lora_l20_fp8_compile 200 llama2_70b_lora --preset 1gpu --gbs 1 --steps 3 --warmup 1 \
    parallel.float8=rowwise parallel.compile=true --profile "$OUT/prof_lora_l20_fp8_compile" --profile-steps 1
  [ "${FULL:-0}" = 1 ] && perf ours_lora_1gpu_fp8_eager 240 llama2_70b_lora --gbs 1 --steps 3 --warmup 1 \
    parallel.float8=rowwise
  ;;
lora-1gpu-fp8)  # nvidia-h200: the float8 base after its quantization and transposes went
  # through torch.compile'd helpers (compare with lora-1gpu's rows)
  perf ours_lora_l20_fp8 200 llama2_70b_lora --preset 1gpu --gbs 1 --steps 3 --warmup 1 parallel.float8=rowwise
  perf ours_lora_l20_fp8_compile 200 llama2_70b_lora --preset 1gpu --gbs 1 --steps 3 --warmup 1 \
    parallel.float8=rowwise parallel.compile=true --profile "$OUT/prof_lora_l20_fp8_compile" --profile-steps 1
  perf ours_lora_1gpu_fp8_eager 200 llama2_70b_lora --gbs 1 --steps 2 --warmup 1 parallel.float8=rowwise
  ;;
h100)
  run peer_8b_l4 200 torchrun --standalone --nproc-per-node 1 bench/peer_proxy.py hf-pretrain --size 8b --layers 4 --steps 8
  run peer_8b_l4_profiled 200 torchrun --standalone --nproc-per-node 1 bench/peer_proxy.py hf-pretrain \
    --size 8b --layers 4 --steps 8 --profile "$OUT/prof_peer_8b_l4"
  perf ours_8b_l4_noac 200 llama31_8b --preset 1gpu --gbs 1 --steps 6 --warmup 2 --profile "$OUT/prof_8b_l4"
  perf ours_8b_l4_compile 240 llama31_8b --preset 1gpu --gbs 1 --steps 6 --warmup 2 parallel.compile=true \
    --profile "$OUT/prof_8b_l4_compile"
  perf ours_8b_l4_compile_fp8 240 llama31_8b --preset 1gpu --gbs 1 --steps 6 --warmup 2 \
    parallel.compile=true parallel.float8=tensorwise
  ;;
*) echo "unknown group $1" >&2; exit 2 ;;
esac
finish
exit 0
