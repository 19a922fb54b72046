#!/usr/bin/env bash
# [speed] context parallel and compile scope, [observe] doctor: one call on nvidia-h200 (1 GPU).
# Usage (repo root; .whl/ with the mlperf-logging and torchao wheels):
#   bash bench/gpu_cp.sh cp        # CP attention GPU tests + kernel timings; LoRA 70B 20-layer
#                                  #   proxy, float8 base + compile + full AC, compile outside vs
#                                  #   inside the checkpoint; the whole 70B on one GPU, inside
#   bash bench/gpu_cp.sh after     # feature GPU tests, `systems` on the GPU, the 70B LoRA on one
#                                  #   GPU with parallel.compile_inside_checkpoint=true
# Every perf run uses train.seed=1234: the per-step losses of the rows can be compared.
source bench/device_env.sh
scope() {  # name, timeout, outside|inside, trainperf perf arguments...
  local name=$1 limit=$2 where=$3; shift 3
  run "$name" "$limit" python3 bench/compile_scope.py "$where" "$@" --json train.seed=1234
}
case "${1:?which group: cp or after}" in
cp)
  gpu_tests gpu_tests_cp tests/gpu/test_cp_gpu.py
  run cp_attention 200 python3 bench/cp_attention.py
  for where in outside inside; do
    scope "lora_l20_fp8_compile_$where" 200 "$where" llama2_70b_lora --preset 1gpu --gbs 1 \
      --steps 3 --warmup 1 parallel.float8=rowwise parallel.compile=true
  done
  scope lora_1gpu_fp8_compile_inside 280 inside llama2_70b_lora --gbs 1 --steps 2 --warmup 1 \
    parallel.float8=rowwise parallel.compile=true
  ;;
after)  # after the merge of [observe]: the feature GPU tests (compile inside the checkpoint
  # among them), the 70B LoRA on one GPU through the config option, the auto-detected preset
  gpu_tests gpu_tests_features tests/gpu/test_features_gpu.py
  run systems_auto 120 python3 -m trainperf systems llama2_70b_lora
  run lora_1gpu_fp8_compile_inside_cli 300 python3 -m trainperf perf llama2_70b_lora --gbs 1 \
    --steps 2 --warmup 1 parallel.float8=rowwise parallel.compile=true \
    parallel.compile_inside_checkpoint=true --json train.seed=1234
  ;;
*) echo "unknown group $1" >&2; exit 2 ;;
esac
finish
exit 0
