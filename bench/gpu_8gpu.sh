#!/usr/bin/env bash
# [8gpu] The published submissions' layouts on 8x H200 (nvidia-h200-x8), trainperf and the peer in
# the same call. Usage (repo root; .whl/ with the mlperf-logging and torchao wheels; .peer/ holding
# a copy of ../shared/tools/peer_bench.py; carry both):
#   bash bench/gpu_8gpu.sh lora    # llama2_70b_lora GBS 8: TP 4 + SP x 2 DP, CP 2 x 4 DP, FSDP 8,
#                                  #   bf16 and the float8 base; peer HF + PEFT + FSDP2 on 8 GPUs
#   bash bench/gpu_8gpu.sh 8b      # llama31_8b GBS 32 on 8 GPUs, bf16 and float8; peer HF + FSDP2
#   bash bench/gpu_8gpu.sh doctor  # trainperf doctor --nproc 8: NCCL all-reduce bus bandwidth
# Every trainperf run uses train.seed=1234; figures go to bench/RESULTS.md beside NVIDIA's 8x H200
# MLPerf rate (about 2,646 tokens/s/GPU for llama2_70b_lora) and the published scores.
source bench/device_env.sh
perf() {  # name, timeout, trainperf perf arguments...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf "$@" --json train.seed=1234
}
lora() {  # name, extra overrides...
  local name=$1; shift
  perf "$name" 300 llama2_70b_lora --nproc 8 --gbs 8 --steps 3 --warmup 1 "$@"
}
case "${1:?which group: lora, 8b or doctor}" in
lora)
  run peer_lora_8 300 torchrun --standalone --nproc-per-node 8 .peer/peer_bench.py hf-lora --size 70b --steps 4
  lora lora_tp4 parallel.tp=4
  lora lora_cp2_compile parallel.cp=2 parallel.compile=true
  lora lora_fsdp8_compile parallel.compile=true
  lora lora_fsdp8_fp8 parallel.float8=rowwise parallel.compile=true parallel.compile_inside_checkpoint=true
  lora lora_cp2_fp8 parallel.cp=2 parallel.float8=rowwise parallel.compile=true \
    parallel.compile_inside_checkpoint=true
  ;;
8b)
  run peer_8b_8 300 torchrun --standalone --nproc-per-node 8 .peer/peer_bench.py hf-pretrain --size 8b --steps 8
  perf ours_8b_compile 300 llama31_8b --nproc 8 --steps 5 --warmup 2 parallel.compile=true
  perf ours_8b_compile_fp8 300 llama31_8b --nproc 8 --steps 5 --warmup 2 parallel.compile=true \
    parallel.float8=tensorwise
  ;;
doctor)
  run doctor_8 300 python3 -m trainperf doctor --json --nproc 8 train.micro_batch_size=1
  ;;
*) echo "unknown group $1" >&2; exit 2 ;;
esac
finish
exit 0
