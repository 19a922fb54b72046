#!/usr/bin/env bash
# One device call on nvidia-h200-x2: llama2_70b_lora step throughput of trainperf and of the peer
# (HF Transformers + PEFT + FSDP2, ../shared/tools/peer_bench.py carried as .peer/) on the same
# GPUs and shapes (random weights, seq 8192, micro-batch 1 per GPU, activation checkpointing),
# then the llama31_405b proxy (one 405B block, GBS 16) through trainperf perf.
# Usage (repo root; .whl/ with mlperf-logging, .peer/peer_bench.py): bash bench/gpu_speed_lora_405b.sh
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 TRAINPERF_HOME=/tmp/tph OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpus.txt"
run() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$OUT/commands.txt"
  timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "exit $?" >> "$OUT/$name.err"; tail -3 "$OUT/$name.json"; tail -4 "$OUT/$name.err"
}
run peer_lora70b 200 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-lora --size 70b --steps 6
run ours_lora70b_gbs2 200 python3 -m trainperf perf llama2_70b_lora --nproc 2 --gbs 2 --steps 4 --warmup 2 --json
run ours_405b_proxy 150 python3 -m trainperf perf llama31_405b --scale proxy --nproc 2 --steps 3 --warmup 1 --json
exit 0
