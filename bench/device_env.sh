# Sourced by the bench/gpu_*.sh device scripts (repo root, .whl/ holding the mlperf-logging wheel):
# the NVLink-multicast-off environment the lent machines need, mlperf-logging on PYTHONPATH, the
# GPU list in $OUT/gpus.txt, and `run NAME TIMEOUT CMD...` (stdout -> $OUT/NAME.json, stderr and
# exit code -> $OUT/NAME.err, the command line appended to $OUT/commands.txt), and
# `gpu_tests NAME PYTEST_ARGS...` (the marked GPU tests; output in $OUT/NAME.txt).
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 TRAINPERF_HOME=/tmp/tph OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpus.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
run() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$OUT/commands.txt"
  timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "exit $?" >> "$OUT/$name.err"; tail -3 "$OUT/$name.json"; tail -4 "$OUT/$name.err"
}
gpu_tests() {  # name, pytest arguments...: the marked GPU tests, full output in $OUT/NAME.txt
  local name=$1; shift
  python3 -m pytest -q -m gpu -o addopts="" -p no:cacheprovider "$@" > "$OUT/$name.txt" 2>&1
  tail -3 "$OUT/$name.txt"
}
# The device tool returns at most 8 files: `finish` packs everything under $OUT into one archive
# (results.tar.gz) and leaves commands.txt beside it.
finish() {
  (cd "$OUT" && tar czf /tmp/results.tar.gz --exclude=results.tar.gz . && mv /tmp/results.tar.gz . \
    && find . -type f ! -name results.tar.gz ! -name commands.txt -delete)
}
