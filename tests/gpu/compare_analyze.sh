#!/usr/bin/env bash
# Issue 4 acceptance: `moba analyze --device cuda` and `--device cpu` on the same dump give
# the same summary.csv within the tolerance table of compare_summary.py. Runs on the GPU
# machine after tests/gpu/run.sh has built build-gpu/moba.
# Usage: tests/gpu/compare_analyze.sh [MOBA]   (default build-gpu/moba)
set -uo pipefail
MOBA=${1:-build-gpu/moba}
W=${OUT:-/tmp/moba-out}/cmp
rm -rf "$W"; mkdir -p "$W"
HERE=$(dirname "$0")
status=0
run_pair() {  # name dump dtype analyze-args...
  local name=$1 dump=$2 dtype=$3; shift 3
  for dev in cpu cuda; do
    /usr/bin/time -f "$name $dev: %e s wall, %M KiB peak RSS" \
      "$MOBA" analyze "$dump" --device $dev --quiet --out "$W/$name.$dev" "$@" >"$W/$name.$dev.log" 2>&1 \
      || { echo "FAIL: analyze $name --device $dev"; tail -5 "$W/$name.$dev.log"; status=1; return; }
    tail -1 "$W/$name.$dev.log"
  done
  grep -m1 -i "device" "$W/$name.cuda.log" || true
  python3 "$HERE/compare_summary.py" "$W/$name.cpu/summary.csv" "$W/$name.cuda/summary.csv" "$dtype" || status=1
}
run_pair genesis experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,32,64,128 --sparsity 0.75 --routers moba,oracle,moba-kconv
"$MOBA" synth --out "$W/synth.h5" --tokens 8192 --layers 1 --heads 4 --kv-heads 2 --head-dim 64 --seed 3 --quiet >/dev/null
run_pair synth "$W/synth.h5" float32 --block-sizes 16,64,256 --top-k 2,8 --routers moba,oracle
exit $status
