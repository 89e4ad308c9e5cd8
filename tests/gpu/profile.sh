#!/usr/bin/env bash
# Per-kernel device times of one B1 configuration (experiments; not part of the test run):
# builds `moba` like run.sh, then runs `moba bench` under nsys (kernel summary) or, where the
# image has no nsys, ncu (SpeedOfLight of the first launches).
# NCU_SASS=1 instead profiles one B3 dense_pass launch (64K) with ncu's source counters and
# prints warp instructions and stall samples per SASS opcode and per hot straight-line run
# (how dense_pass v4 found its copy loop); the full per-instruction CSV goes to $OUT/sass.csv.
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
if [ "${NCU_SASS:-0}" = 1 ] && [ -n "$NCU" ]; then
  timeout 300 "$NCU" --section SourceCounters --section WarpStateStats -k regex:dense --launch-skip 20 \
    --launch-count 1 -o /tmp/moba-sass -f "$BUILD/moba" bench --suite b3 --tokens "$TOKENS" --reps 1 >"$OUT/ncu.log" 2>&1
  "$NCU" --import /tmp/moba-sass.ncu-rep --page source --csv --print-source sass >"$OUT/sass.csv" 2>/dev/null
  python3 - "$OUT/sass.csv" <<'PY'
import csv, sys
from collections import Counter
rows = list(csv.reader(open(sys.argv[1])))
hdr, data = rows[1], [r for r in rows[2:] if len(r) > 3]
i_s, i_e = hdr.index("Warp Stall Sampling (All Samples)"), hdr.index("Instructions Executed")
op = lambda t: (t.split()[1] if t.startswith("@") else t.split()[0]).split(".")[0]
samples, execd = Counter(), Counter()
for r in data:
    samples[op(r[1].strip())] += int(r[i_s] or 0); execd[op(r[1].strip())] += int(r[i_e] or 0)
tot = sum(samples.values())
print("opcode      stall-samples   warp-instructions")
for o, c in samples.most_common(15): print(f"{o:10s} {c:9d} {100 * c / tot:5.1f}%  {execd[o]:14d}")
runs = []  # straight-line runs: consecutive instructions executed equally often
for k, r in enumerate(data):
    e, s = int(r[i_e] or 0), int(r[i_s] or 0)
    if runs and runs[-1][1] == e: runs[-1][2] += 1; runs[-1][3] += s; runs[-1][4][op(r[1].strip())] += 1
    else: runs.append([k, e, 1, s, Counter({op(r[1].strip()): 1})])
print("hot runs: first instruction, executions, length, stall samples, top opcodes")
for k, e, n, s, c in sorted(runs, key=lambda x: -x[3])[:12]:
    print(f"{k:6d} {e:11d} x{n:4d} {s:8d}  {dict(c.most_common(5))}")
PY
elif [ -n "$NSYS" ]; then
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
