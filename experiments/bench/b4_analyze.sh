#!/usr/bin/env bash
# PERF.md B4, end to end: `moba analyze` of one 32-head x 32K-token layer (8 KV heads,
# head dim 128, bf16), 4 block sizes x 3 top-k, routers moba + oracle, on the chosen device.
# Prints wall time and peak host RSS; the dump is synthetic (same shape as the B1 family).
# usage: experiments/bench/b4_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]
set -uo pipefail
MOBA=${1:?usage: b4_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]}
DEVICE=${2:-cuda}
LIMIT=${3:-300}
# On the GPU, larger query chunks amortise the host<->device copies of the analysis seam
# (analysis/backend.cpp copies a KV head per call); block masses per chunk stay < 64 MB.
CHUNK=256
[ "$DEVICE" = cuda ] && CHUNK=4096
W=${OUT:-/tmp/moba-out}/b4
rm -rf "$W"; mkdir -p "$W"
"$MOBA" synth --out "$W/layer.h5" --tokens 32768 --layers 1 --heads 32 --kv-heads 8 --head-dim 128 \
  --dtype bf16 --min-distance 512 --seed 4 --quiet >/dev/null || { echo "B4: synth failed"; exit 1; }
/usr/bin/time -f "%e %M" -o "$W/time.txt" timeout "$LIMIT" "$MOBA" analyze "$W/layer.h5" --device "$DEVICE" \
  --block-sizes 16,32,64,128 --top-k 2,4,8 --routers moba,oracle --query-chunk $CHUNK --out "$W/out" >"$W/analyze.log" 2>"$W/analyze.err"
rc=$?
read -r wall rss < <(tail -1 "$W/time.txt")
if [ $rc -ne 0 ]; then
  echo "B4 $DEVICE: did not finish (exit $rc) within ${LIMIT}s; last progress: $(tr '\r' '\n' < "$W/analyze.err" | grep -v '^$' | tail -1)"
  exit 1
fi
rows=$(($(wc -l < "$W/out/summary.csv") - 1))
echo "B4 $DEVICE: moba analyze 32 heads x 32768 tokens x d128, B {16,32,64,128} x k {2,4,8}, moba+oracle, query chunk $CHUNK: ${wall} s wall, peak RSS $((rss / 1024)) MiB, ${rows} summary rows"
grep -m1 -i "device" "$W/analyze.log" "$W/analyze.err" | head -1
