#!/usr/bin/env bash
# Issue 10 item 2 acceptance on the GPU machine: `moba route --with-output` with
# --device cuda (--precision exact, the default, and fast) against --device cpu, on synthetic
# dumps: f16 at head dim 8 (the case that lost 0.54 nats in fast mode), f16 and bf16 at head
# dim 64, f32 at head dims 64 and 128. Prints per dump and precision the rows whose
# selections differ (near-ties; left out of the output metrics), the max row-relative
# output error, the max abs output error and the max lse difference (tests/gpu/
# route_diff.cpp). Exact runs are held to the targets (16-bit: output row-rel <= 2e-3,
# lse <= 2e-3; f32: 1e-4 and 1e-4); fast runs are printed only. Exit 1 when an exact run
# misses its target.
# Usage (repo root, after tests/gpu/run.sh built build-gpu): tests/gpu/precision_check.sh [BUILD_DIR]
set -uo pipefail
BUILD=${1:-build-gpu}
MOBA=$BUILD/moba
DIFF=$BUILD/tests/gpu/moba_route_diff
[ -x "$DIFF" ] || ninja -C "$BUILD" moba_route_diff >/dev/null || { echo "cannot build moba_route_diff"; exit 2; }
W=${OUT:-/tmp/moba-out}/precision
rm -rf "$W"; mkdir -p "$W"
status=0
check() {  # name dtype head_dim max_rel max_lse
  local name=$1 dtype=$2 hd=$3 max_rel=$4 max_lse=$5
  "$MOBA" synth --out "$W/$name.h5" --tokens 8192 --layers 1 --heads 4 --kv-heads 2 --head-dim "$hd" \
    --dtype "$dtype" --seed 7 --quiet >/dev/null || { echo "FAIL: synth $name"; status=1; return; }
  local args=(--layer 0 --block-size 64 --top-k 8 --with-output --quiet)
  "$MOBA" route "$W/$name.h5" "${args[@]}" --device cpu --out "$W/$name.cpu.h5" >"$W/$name.cpu.log" 2>&1 \
    || { echo "FAIL: route $name cpu"; tail -3 "$W/$name.cpu.log"; status=1; return; }
  for prec in exact fast; do
    "$MOBA" route "$W/$name.h5" "${args[@]}" --device cuda --precision $prec --out "$W/$name.$prec.h5" \
      >"$W/$name.$prec.log" 2>&1 || { echo "FAIL: route $name cuda $prec"; tail -3 "$W/$name.$prec.log"; status=1; continue; }
    printf "%-10s %-5s " "$name" "$prec"
    if [ $prec = exact ]; then
      "$DIFF" "$W/$name.cpu.h5" "$W/$name.$prec.h5" "$max_rel" "$max_lse" || status=1
    else
      "$DIFF" "$W/$name.cpu.h5" "$W/$name.$prec.h5"
    fi
    grep -h "^note:" "$W/$name.$prec.log" || true
  done
}
check f16_d8 f16 8 2e-3 2e-3
check f16_d64 f16 64 2e-3 2e-3
check bf16_d64 bf16 64 2e-3 2e-3
check f32_d64 f32 64 1e-4 1e-4
check f32_d128 f32 128 1e-4 1e-4
exit $status
