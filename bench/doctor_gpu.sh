#!/usr/bin/env bash
# trainperf doctor on the GPU machine: the JSON report on one GPU and over all of them (NCCL
# all-reduce through torchrun), a full-scale config check, and the marked GPU tests.
# Usage (repo root; .whl/ with the mlperf-logging wheel, as for bench/gpu_*.sh):
#   bash bench/doctor_gpu.sh          # any of nvidia-h200, -x2, -x4, -x8
# Outputs under $OUT (default /tmp/out): doctor_1gpu.json, doctor_all.json (more than one GPU),
# doctor_8b_full.json (the 8B full-scale config on all GPUs; exit 1 expected: no C4 there),
# *.err (stderr and exit code), doctor_gpu_tests.txt; packed into results.tar.gz by `finish`.
mkdir -p "${OUT:=/tmp/out}"
source bench/device_env.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # as device_env.sh
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $GPUS" | tee -a "$OUT/commands.txt"
run doctor_1gpu 300 python3 -m trainperf doctor --json --nproc 1
if [ "$GPUS" -gt 1 ]; then
  # micro-batch 1: the tiny GBS 16 splits over 2, 4 or 8 ranks
  run doctor_all 300 python3 -m trainperf doctor --json --nproc "$GPUS" train.micro_batch_size=1
fi
run doctor_8b_full 300 python3 -m trainperf doctor llama31_8b --scale full --json --nproc "$GPUS"
python3 -m pytest -q -m gpu tests/gpu/test_doctor_gpu.py -o addopts="" -p no:cacheprovider \
  > "$OUT/doctor_gpu_tests.txt" 2>&1; echo "exit $?" >> "$OUT/doctor_gpu_tests.txt"
tail -3 "$OUT/doctor_gpu_tests.txt"
finish
