#!/usr/bin/env bash
# One device call for the llama31_8b data path on a 2-GPU machine (nvidia-h200-x2): C4-shaped
# Megatron files on disk -> prepare --verify -> trainperf run --scale full --nproc 2, a few steps;
# then, if that ran out of memory, the same with full activation checkpointing.
# Usage (repo root, mlperf-logging wheel in .whl/): bash bench/gpu_c4.sh  (results under $OUT)
source bench/device_env.sh
timeout 330 python3 bench/c4_full_scale.py --nproc 2 --steps 8 --out "$OUT/c4_8b.json" \
  2>&1 | grep -v '^W1' | tail -60 | tee "$OUT/c4_8b.log"
if grep -qi "out of memory" "$OUT/c4_8b.log"; then
  timeout 240 python3 bench/c4_full_scale.py --nproc 2 --steps 8 --out "$OUT/c4_8b_ac.json" \
    parallel.activation_checkpointing=full 2>&1 | grep -v '^W1' | tail -40 | tee "$OUT/c4_8b_ac.log"
fi
exit 0
