#!/usr/bin/env bash
# [round6] gpt_oss_20b speed: trainperf and the peer (HF Transformers GptOssForCausalLM + FSDP2,
# bench/peer_moe.py) in the same device call, one H200, gpt-oss-20b's layer shapes with 4 of its
# 24 layers (4.0 B parameters, 0.87 B active per token), 8192-token sequences, one sequence per
# optimizer step on both sides (GBS = micro-batch = 1), bf16 compute over fp32 master weights.
# Usage (repo root; .whl/ with the mlperf-logging and torchao wheels):
#   bash bench/gpu_moe.sh proxy-a   # nvidia-h200: GPU kernel tests, the peer without AC (HF
#                                   #   grouped_mm experts, flex attention with sinks), ours
#                                   #   compiled: the reference's and NVIDIA's variants
#   bash bench/gpu_moe.sh proxy-b   # the same call's machine: the peer with AC, ours eager, with AC
# Every trainperf run uses train.seed=1234 (same initial weights and batches across variants).
source bench/device_env.sh
peer() {  # name, timeout, peer_moe.py arguments...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" torchrun --standalone --nproc-per-node 1 bench/peer_moe.py hf-gpt-oss \
    --size gpt-oss-20b-mlperf --layers 4 --seq 8192 --batch 1 --steps 8 --warmup 3 "$@"
}
ours() {  # name, timeout, overrides...
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m trainperf perf gpt_oss_20b --preset 1gpu --json --steps 8 \
    --warmup 3 train.seed=1234 train.global_batch_size=1 train.micro_batch_size=1 "$@"
}
case "${1:?which group: proxy-a or proxy-b}" in
proxy-a)  # the kernel tests, the peer without AC (its fastest when it fits), ours compiled
  gpu_tests gpu_tests_moe tests/gpu/test_gpt_oss_gpu.py
  peer peer_moe_noac 200 --no-ac
  ours ours_moe_compile 240 parallel.compile=true
  ours ours_moe_nvidia_compile 240 parallel.compile=true model.flavor=gpt-oss-20b-nvidia
  ;;
proxy-b)  # the peer with AC; ours compiled (both variants) and compiled with AC
  peer peer_moe_ac 200
  ours ours_moe_compile 200 parallel.compile=true
  ours ours_moe_nvidia_compile 200 parallel.compile=true model.flavor=gpt-oss-20b-nvidia
  ours ours_moe_compile_ac 200 parallel.compile=true parallel.activation_checkpointing=full
  ;;
proxy-c)  # after SDPA (cuDNN) for the full-attention layers: ours compiled, plain CE, with AC,
  # and the preset's GBS 4 (the optimizer step amortized over 4 sequences)
  gpu_tests gpu_tests_moe tests/gpu/test_gpt_oss_gpu.py
  ours ours_moe_compile 200 parallel.compile=true
  ours ours_moe_compile_plain_ce 200 parallel.compile=true train.cross_entropy=plain
  ours ours_moe_compile_ac 200 parallel.compile=true parallel.activation_checkpointing=full
  run ours_moe_compile_gbs4 200 python3 -m trainperf perf gpt_oss_20b --preset 1gpu --json \
    --steps 4 --warmup 2 train.seed=1234 parallel.compile=true
  ours ours_moe_compile_profile 200 parallel.compile=true --profile "$OUT/profile"
  ;;
esac
finish
