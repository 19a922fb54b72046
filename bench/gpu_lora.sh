#!/usr/bin/env bash
# One device call that proves the llama2_70b_lora paths on a 2-GPU machine (nvidia-h200-x2):
#   1. full scale: random Llama-2-70B + LoRA, FSDP2 over 2 GPUs, synthetic GovReport, 5 steps
#   2. tiny scale with --nproc 2 (FSDP over NCCL, sharded evaluation)
#   3. tiny scale on one GPU
# Usage (repo root, mlperf-logging wheel in .whl/): bash bench/gpu_lora.sh  (results under $OUT)
source bench/device_env.sh
[ -n "${SKIP_70B:-}" ] || timeout 330 python3 bench/lora_full_scale.py --nproc 2 --steps 5 --out "$OUT/lora70b.json" \
  2>&1 | tail -40 | tee "$OUT/lora70b.log"
timeout 150 python3 -m trainperf run llama2_70b_lora --nproc 2 --seed 1 --no-progress \
  --results /tmp/tiny2 2>&1 | grep -v '^W1' | tail -12 | tee "$OUT/tiny2.log"
cp /tmp/tiny2/result_0.txt "$OUT/tiny2_result_0.txt" 2>/dev/null
timeout 90 python3 -m trainperf run llama2_70b_lora --seed 1 --no-progress \
  --results /tmp/tiny1 2>&1 | tail -6 | tee "$OUT/tiny1.log"
cp /tmp/tiny1/result_0.txt "$OUT/tiny1_result_0.txt" 2>/dev/null
exit 0
