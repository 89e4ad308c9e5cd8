#!/usr/bin/env bash
# Per-kernel device times of one B1 configuration (experiments; not part of the test run):
# builds `moba` like run.sh, then runs `moba bench` under nsys (kernel summary) or, where the
# image has no nsys, ncu (SpeedOfLight of the first launches).
# Usage (repo root, on the GPU machine): tests/gpu/profile.sh [TOKENS] [CONFIGS]
set -uo pipefail
OUT=${OUT:-/tmp/moba-out}
mkdir -p "$OUT"
TOKENS=${1:-65536}
CONFIGS=${2:-128:8,16:64}
BUILD=build-gpu
cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOBA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="90a-real;90-virtual" -DCMAKE_PREFIX_PATH="$PWD/.carry" >"$OUT/configure.log" 2>&1 \
  || { tail -30 "$OUT/configure.log"; exit 1; }
ninja -C $BUILD moba >"$OUT/build.log" 2>&1 || { grep -B2 -A10 error "$OUT/build.log" | head -60; exit 1; }
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}  ncu: ${NCU:-none}"
if [ -n "$NSYS" ]; then
  timeout 200 "$NSYS" profile -o /tmp/moba-prof -f true -t cuda "$BUILD/moba" bench --suite b1 --tokens "$TOKENS" \
    --configs "$CONFIGS" --reps 2 2>&1 | grep -E "^B1|rror" | head
  "$NSYS" stats -q -r cuda_gpu_kern_sum -f csv /tmp/moba-prof.nsys-rep 2>/dev/null |
    python3 -c "import csv,sys
r=list(csv.DictReader(l for l in sys.stdin if ',' in l))
for x in r: print('%10.3f ms total %6s calls %9.3f ms avg  %s'%(float(x['Total Time (ns)'])/1e6,x['Instances'],float(x['Avg (ns)'])/1e6,x['Name'][:110]))"
elif [ -n "$NCU" ]; then
  # NCU_KERNELS: kernel name regex; NCU_COUNT: launches profiled.
  timeout 300 "$NCU" --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    -k regex:"${NCU_KERNELS:-gate|attention}" --launch-count "${NCU_COUNT:-4}" \
    "$BUILD/moba" bench --suite b1 --tokens "$TOKENS" --configs "$CONFIGS" --reps 1 2>&1 |
    grep -E "^B1|::|Duration|SM\) Throughput|Memory Throughput|DRAM Th|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp|No Eligible|Stall|stall|cycles being stalled" |
    cut -c1-300 | head -120
fi
