#!/usr/bin/env bash
# One device call on nvidia-h200-x2: llama2_70b_lora step throughput of trainperf and of the peer
# (HF Transformers + PEFT + FSDP2, ../shared/tools/peer_bench.py carried as .peer/) on the same
# GPUs and shapes (random weights, seq 8192, micro-batch 1 per GPU, activation checkpointing),
# then the llama31_405b proxy (one 405B block, GBS 16) through trainperf perf.
# Usage (repo root; .whl/ with mlperf-logging, .peer/peer_bench.py): bash bench/gpu_speed_lora_405b.sh
source bench/device_env.sh
run peer_lora70b 200 torchrun --standalone --nproc-per-node 2 .peer/peer_bench.py hf-lora --size 70b --steps 6
run ours_lora70b_gbs2 200 python3 -m trainperf perf llama2_70b_lora --nproc 2 --gbs 2 --steps 4 --warmup 2 --json
run ours_405b_proxy 150 python3 -m trainperf perf llama31_405b --scale proxy --nproc 2 --steps 3 --warmup 1 --json
exit 0
