#!/usr/bin/env bash
# `moba route --device cuda` against `--device cpu` for every router (analysis/gpu/route_gpu.h),
# on the GPU machine: synthetic dumps with a ragged last block, GQA groups of 3 and 2, both
# --gqa, both tie rules, k = 1 and k >= n_blocks, bf16 / f16 / f32, and the real dump. /selected
# must be byte-identical for quest, minference-bs, sink-window, moba-threshold and nsa-shared (the
# CPU's score rows on the device); moba, moba-kconv (gate_topk's tie contract) and oracle,
# oracle-topp (two dense passes' masses) may differ in at most 1% of rows. The cuda run must not
# have fallen back to the host ("note: ... routes on the CPU"). Table last.
# Usage: tests/gpu/route_check.sh [MOBA]   (default build-gpu/moba; python3 with h5py, numpy)
set -uo pipefail
MOBA=${1:-build-gpu/moba}
W=${OUT:-/tmp/moba-out}/route_gpu
rm -rf "$W"; mkdir -p "$W"
status=0
declare -a TABLE
ROUTERS="quest minference-bs sink-window moba-threshold nsa-shared moba moba-kconv oracle oracle-topp"
S() { "$MOBA" synth --out "$W/$1.h5" --quiet "${@:2}" >/dev/null || { echo "synth $1 failed"; status=1; }; }
compare() {  # router cpu.h5 cuda.h5 -> prints "rows differ/total", exit 1 on a contract breach
  python3 - "$@" <<'PY'
import sys, h5py, numpy as np
router, a, b = sys.argv[1:4]
x = h5py.File(a, "r")["/selected"][...]; y = h5py.File(b, "r")["/selected"][...]
assert x.shape == y.shape, (x.shape, y.shape)
rows = x.reshape(-1, x.shape[-1]); other = y.reshape(-1, y.shape[-1])
differ = int((rows != other).any(axis=1).sum())
exact = router not in ("moba", "moba-kconv", "oracle", "oracle-topp")
print(f"{differ}/{rows.shape[0]} rows differ" + (" (must be 0)" if exact else " (at most 1%)"))
sys.exit(1 if (differ > 0 if exact else differ > rows.shape[0] // 100) else 0)
PY
}
run_case() {  # name dump layer route-args...
  local name=$1 dump=$2 layer=$3; shift 3
  for r in $ROUTERS; do
    local extra=()
    case $r in moba-threshold|oracle-topp) extra=(--tau 0.8) ;; esac
    for dev in cpu cuda; do
      "$MOBA" route "$dump" --layer "$layer" --router "$r" "${extra[@]}" --device $dev --quiet \
        --out "$W/$name.$r.$dev.h5" "$@" >"$W/$name.$r.$dev.log" 2>&1 \
        || { echo "FAIL: route $name $r --device $dev"; tail -3 "$W/$name.$r.$dev.log"; status=1; TABLE+=("$name $r FAIL"); continue 2; }
    done
    if grep -q "routes on the CPU" "$W/$name.$r.cuda.log"; then
      echo "FAIL: $name $r --device cuda routed on the host"; grep "note:" "$W/$name.$r.cuda.log"; status=1
      TABLE+=("$(printf '%-16s %-15s HOST FALLBACK' "$name" "$r")"); continue
    fi
    local verdict=PASS msg
    msg=$(compare "$r" "$W/$name.$r.cpu.h5" "$W/$name.$r.cuda.h5" 2>&1) || { verdict=FAIL; status=1; }
    TABLE+=("$(printf '%-16s %-15s %-40s %s' "$name" "$r" "$msg" "$verdict")")
  done
}

S gqa3 --tokens 2500 --layers 1 --heads 6 --kv-heads 2 --head-dim 64 --dtype bf16 --seed 13
run_case gqa3_B48_k1 "$W/gqa3.h5" 0 --block-size 48 --top-k 1
run_case gqa3_B100_k30 "$W/gqa3.h5" 0 --block-size 100 --top-k 30 --tie older
run_case gqa3_shared "$W/gqa3.h5" 0 --block-size 48 --top-k 6 --gqa shared
S f32_gqa2 --tokens 3000 --layers 1 --heads 4 --kv-heads 2 --head-dim 64 --seed 3
run_case f32_B16 "$W/f32_gqa2.h5" 0 --block-size 16 --top-k 8 --pool-precision fp32
run_case f32_shared "$W/f32_gqa2.h5" 0 --block-size 100 --top-k 4 --gqa shared --tie older
S f16_d48 --tokens 2048 --layers 1 --heads 2 --kv-heads 2 --head-dim 48 --dtype f16 --seed 7
run_case f16_d48_B1 "$W/f16_d48.h5" 0 --block-size 1 --top-k 16
run_case genesis experiments/data/stories15M_genesis_1024.h5 1 --block-size 64 --top-k 4

echo "== table"
for r in "${TABLE[@]}"; do echo "$r"; done
exit $status
