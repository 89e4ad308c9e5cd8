#!/usr/bin/env bash
# The one script per device call (issue 4): configure + build with CUDA, run the CPU-vs-CUDA
# comparison tests (ctest label gpu), the route precision check (precision_check.sh), compute-sanitizer memcheck on the small case, then the
# benchmarks (moba bench B1-B3 and the torch SDPA baselines in the same call), table last.
# MOBA_SWEEP=0 skips the tuning variants (`moba bench --tuning`, kernels/cuda/tuning.h; 64K,
# B=128, k=8) that precede the table; MOBA_B3_SWEEP=1 adds the dense_pass ones (B3 at 64K).
# BASELINE_MOBA=PATH also times another moba binary (e.g. the previous commit's, carried in)
# on the same inputs in the same call; the table then shows its ms and the new/base ratio.
# Usage (repo root, on the GPU machine): tests/gpu/run.sh [TOKENS_LIST]
# Eigen / Catch2 headers: taken from .carry/ when the image lacks them (see NOTES.md).
set -uo pipefail
OUT=${OUT:-/tmp/moba-out}
mkdir -p "$OUT"
TOKENS=${1:-8192,16384,32768,65536,131072}
BUILD=build-gpu
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
set -e
cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOBA_CUDA=ON -DMOBA_WARN_SPILLS=ON \
  -DCMAKE_CUDA_ARCHITECTURES="90a-real;90-virtual" -DCMAKE_PREFIX_PATH="$PWD/.carry" >"$OUT/configure.log" 2>&1 \
  || { tail -30 "$OUT/configure.log"; exit 1; }
ninja -C $BUILD moba moba_gpu_tests moba_gpu_analysis_tests moba_route_diff >"$OUT/build.log" 2>&1 || { grep -B2 -A10 error "$OUT/build.log" | head -60; exit 1; }
set +e
echo "== ctest -L gpu"
timeout 240 ctest --test-dir $BUILD -L gpu --output-on-failure 2>&1 | tee "$OUT/ctest.log" | grep -v "^ *Start" | tail -40
echo "== precision check (route --with-output, cuda exact/fast vs cpu)"
timeout 300 tests/gpu/precision_check.sh $BUILD 2>&1 | tee "$OUT/precision.log"
echo "== analyze --device cuda (GPU-resident) vs --device cpu"
timeout 300 tests/gpu/analyze_check.sh $BUILD/moba 2>&1 | tee "$OUT/analyze_check.log" | sed -n '/== table/,$p'
echo "== compute-sanitizer memcheck [analyze --device cuda, shipped 256-token dump]"
rm -rf "$OUT/memcheck_analyze"
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 $BUILD/moba analyze \
  experiments/data/stories15M_tinystory_256.h5 --device cuda --block-sizes 16,32 --top-k 1,2,4 \
  --routers moba,oracle,moba-kconv,quest,minference-bs,sink-window,moba-threshold,oracle-topp --out "$OUT/memcheck_analyze" --quiet >"$OUT/memcheck_analyze.log" 2>&1
echo "memcheck analyze exit $?"; grep -E "ERROR SUMMARY" "$OUT/memcheck_analyze.log"
echo "== compute-sanitizer memcheck [small]"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 $BUILD/tests/gpu/moba_gpu_tests "[small]" >"$OUT/memcheck.log" 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|test cases|assertions" "$OUT/memcheck.log"
echo "== bench"
BASE_ARGS=()
if [ -n "${BASELINE_MOBA:-}" ]; then
  timeout 300 "$BASELINE_MOBA" bench --json --tokens "$TOKENS" >"$OUT/bench_base.json" 2>"$OUT/bench_base.err" \
    && BASE_ARGS=(--baseline "$OUT/bench_base.json") || tail "$OUT/bench_base.err"
fi
timeout 300 $BUILD/moba bench --json --tokens "$TOKENS" >"$OUT/bench.json" 2>"$OUT/bench.err" || { tail "$OUT/bench.err"; }
if [ "${MOBA_SWEEP:-1}" = 1 ]; then  # tuning variants at 64K B=128 k=8, same inputs
  echo "== variants, 64K B=128 k=8"
  for V in "" attn_rows=2048 attn_rows=8192; do
    printf "%-22s " "${V:-default}"
    timeout 60 $BUILD/moba bench --suite b1 --tokens 65536 --configs 128:8 --reps 5 --tuning "$V" 2>&1 | grep "^B1 T" || echo failed
  done
fi
if [ "${MOBA_B3_SWEEP:-0}" = 1 ]; then  # dense_pass tuning variants, B3 at 64K, same inputs
  echo "== B3 variants, 64K"
  for V in "" dense_all_pass2=1; do
    printf "%-22s " "${V:-default}"
    timeout 60 $BUILD/moba bench --suite b3 --tokens 65536 --tuning "$V" 2>&1 | grep "^B3 T" || echo failed
  done
fi
PYTHONUNBUFFERED=1 timeout 200 python3 experiments/bench/sdpa_baseline.py --moba "$OUT/bench.json" "${BASE_ARGS[@]}" --json-out "$OUT/sdpa.json" 2>"$OUT/sdpa.err" | tee "$OUT/table.txt"
tail -6 "$OUT/sdpa.err"
