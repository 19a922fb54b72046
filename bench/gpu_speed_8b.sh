#!/usr/bin/env bash
# One device call on nvidia-h200-x2: llama31_8b training-step throughput of trainperf and of the
# peer (HF Transformers + FSDP2, ../shared/tools/peer_bench.py, carried as .peer/) on the same
# GPUs, same shapes: Llama 3.1 8B, random init, seq 8192, micro-batch 1 per GPU.
#   peer:      torchrun --nproc-per-node 2 peer_bench.py hf-pretrain --size 8b (AC on, fused AdamW)
#   trainperf: trainperf perf llama31_8b --nproc 2 --gbs 2 (one micro-batch per GPU, as the peer),
#              with full activation checkpointing (as the peer) and without; then the benchmark's GBS 32
# Usage (repo root; .whl/ with mlperf-logging, .peer/peer_bench.py): bash bench/gpu_speed_8b.sh
source bench/device_env.sh
run peer_8b 240 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-pretrain --size 8b --steps 8
run ours_8b_gbs2_ac 200 python3 -m trainperf perf llama31_8b --nproc 2 --gbs 2 --steps 6 --warmup 2 \
  --json parallel.activation_checkpointing=full
run ours_8b_gbs2 200 python3 -m trainperf perf llama31_8b --nproc 2 --gbs 2 --steps 6 --warmup 2 --json
run ours_8b_gbs32 200 python3 -m trainperf perf llama31_8b --nproc 2 --steps 3 --warmup 1 --json
exit 0
