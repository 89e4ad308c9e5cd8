#!/usr/bin/env bash
# The GPU-resident analysis (analysis/gpu/analyze_gpu.h) against the host path, on the GPU
# machine: `moba analyze --device cuda` vs `--device cpu` on awkward shapes (ragged last
# block, k = 1, GQA, head dims 48/64/128, kconv, fixed sparsity, f32/bf16/f16 dumps, a real
# dump; every router: moba, moba-kconv, oracle, quest, minference-bs, sink-window,
# moba-threshold, oracle-topp, nsa-shared), summary.csv compared with compare_summary.py's
# tolerance table. Table last.
# (The B4 / B6 timings: experiments/bench/b4_analyze.sh, b6_analyze.sh.)
# Usage: tests/gpu/analyze_check.sh [MOBA]   (default build-gpu/moba)
# ONLY=REGEX runs the cases whose names match it (e.g. ONLY='big_rows|genesis'); synth still writes every dump.
set -uo pipefail
MOBA=${1:-build-gpu/moba}
W=${OUT:-/tmp/moba-out}/agpu
rm -rf "$W"; mkdir -p "$W"
HERE=$(dirname "$0")
status=0
declare -a TABLE
run_pair() {  # name dump dtype analyze-args...
  local name=$1 dump=$2 dtype=$3; shift 3
  [[ -n "${ONLY:-}" && ! "$name" =~ ^(${ONLY})$ ]] && return
  local t_cpu t_gpu
  for dev in cpu cuda; do
    local t0=$(date +%s%N)
    "$MOBA" analyze "$dump" --device $dev --quiet --out "$W/$name.$dev" "$@" >"$W/$name.$dev.log" 2>&1 \
      || { echo "FAIL: analyze $name --device $dev"; tail -5 "$W/$name.$dev.log"; status=1; TABLE+=("$name FAIL"); return; }
    local t=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ $dev = cpu ] && t_cpu=$t || t_gpu=$t
  done
  grep -m1 "GPU-resident\|on the CPU (" "$W/$name.cuda.log" "$W/$name.cuda/run.json" 2>/dev/null | head -1
  local verdict=PASS
  python3 "$HERE/compare_summary.py" "$W/$name.cpu/summary.csv" "$W/$name.cuda/summary.csv" "$dtype" \
    >"$W/$name.cmp" 2>&1 || { verdict=FAIL; status=1; }
  tail -4 "$W/$name.cmp"
  TABLE+=("$(printf '%-22s %-9s cpu %6d ms  cuda %6d ms  %s' "$name" "$dtype" "$t_cpu" "$t_gpu" "$verdict")")
}
S() { "$MOBA" synth --out "$W/$1.h5" --quiet "${@:2}" >/dev/null || { echo "synth $1 failed"; status=1; }; }
# run_pair, and the cuda run must have been GPU-resident (a host fallback would compare the
# CPU with itself).
run_resident() {
  [[ -n "${ONLY:-}" && ! "$1" =~ ^(${ONLY})$ ]] && return
  run_pair "$@"
  grep -q "GPU-resident" "$W/$1.cuda/run.json" 2>/dev/null \
    || { echo "FAIL: $1 --device cuda did not run GPU-resident"; grep -h "device_split" "$W/$1.cuda/run.json"; status=1; TABLE+=("$1 NOT RESIDENT"); }
}

run_pair genesis experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,32,64,128 --sparsity 0.75 --routers moba,oracle,moba-kconv
S f32_gqa --tokens 3000 --layers 1 --heads 4 --kv-heads 2 --head-dim 64 --seed 3
run_pair f32_gqa_ragged "$W/f32_gqa.h5" float32 --block-sizes 16,48,100 --top-k 1,2,8 --routers moba,oracle
S bf16_d128 --tokens 4100 --layers 2 --heads 4 --kv-heads 1 --head-dim 128 --dtype bf16 --seed 5
run_pair bf16_d128 "$W/bf16_d128.h5" bfloat16 --block-sizes 32,64,256 --top-k 2,4,16 --routers oracle,moba \
  --tie older
S f16_d48 --tokens 2048 --layers 1 --heads 2 --kv-heads 2 --head-dim 48 --dtype f16 --seed 7
run_pair f16_d48_kconv "$W/f16_d48.h5" float16 --block-sizes 16,64 --top-k 2,3 \
  --routers moba-kconv,moba,oracle --kconv-apply both
run_pair f16_d48_oracle_only "$W/f16_d48.h5" float16 --block-sizes 8,16 --sparsity 0.5,0.9 --routers oracle

# The block-score and variable-budget routers on the device (issue 13): each router on the
# real dump and on a synthetic ragged GQA dump (T = 2500: B 48 and 100 leave partial last
# blocks; 6 query heads on 2 KV heads), k = 1 and k >= n_blocks included, both tie rules.
run_resident genesis_quest_minf experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,32,64 --top-k 1,2,4,8 --routers quest,minference-bs,oracle
run_resident genesis_sink experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,64 --sparsity 0.75 --routers sink-window,moba,oracle --tie older
run_resident genesis_budget experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,64 --top-k 2,4,16 --routers moba-threshold,oracle-topp,moba,oracle --tau 0.8
S gqa_ragged --tokens 2500 --layers 1 --heads 6 --kv-heads 2 --head-dim 64 --dtype bf16 --seed 13
run_resident gqa_ragged_routers "$W/gqa_ragged.h5" bfloat16 --block-sizes 16,48,100 --top-k 1,2,8,30 \
  --routers quest,minference-bs,sink-window,moba-threshold,oracle-topp,nsa-shared,moba,oracle
run_resident gqa_ragged_older "$W/gqa_ragged.h5" bfloat16 --block-sizes 48,100 --top-k 1,3,26 \
  --routers quest,minference-bs,sink-window,moba-threshold,oracle-topp --tie older --tau 0.95 --pool-precision fp32
run_resident f32_gqa_routers "$W/f32_gqa.h5" float32 --block-sizes 16,48,100 --top-k 2,8 \
  --routers quest,minference-bs,sink-window,moba-threshold,oracle-topp,nsa-shared,moba-kconv,oracle
run_resident f16_d48_routers "$W/f16_d48.h5" float16 --block-sizes 16,64 --top-k 1,3 \
  --routers quest,minference-bs,sink-window,moba-threshold,oracle-topp,oracle --tau 0.5
S bf16_d128_gqa --tokens 1100 --layers 1 --heads 4 --kv-heads 2 --head-dim 128 --dtype bf16 --seed 17
run_resident bf16_d128_routers "$W/bf16_d128_gqa.h5" bfloat16 --block-sizes 32,100 --top-k 2,12 \
  --routers quest,minference-bs,sink-window,moba-threshold,oracle-topp,nsa-shared,moba,oracle

# nsa-shared on the device (its row sums every head of the KV group): groups of 3 (ragged, bf16)
# and 2 (f32), one head analysed of a group (the others still vote), k = 1 and k >= n_blocks,
# both tie rules.
run_resident gqa_ragged_nsa "$W/gqa_ragged.h5" bfloat16 --block-sizes 16,48,100 --top-k 1,3,26,64 \
  --routers nsa-shared,moba,oracle
run_resident gqa_ragged_nsa_older "$W/gqa_ragged.h5" bfloat16 --block-sizes 48,100 --top-k 1,2,30 \
  --routers nsa-shared,oracle --heads 1,4 --tie older --pool-precision fp32
run_resident f32_gqa_nsa "$W/f32_gqa.h5" float32 --block-sizes 16,48,100 --top-k 1,4,64 \
  --routers nsa-shared,moba-threshold,oracle --tie older
run_resident genesis_nsa experiments/data/stories15M_genesis_1024.h5 bfloat16 \
  --block-sizes 16,64 --sparsity 0.75 --routers nsa-shared,moba,oracle

# The largest row tier (1024 threads x 16, rows of 8193..16384 blocks): 140,000 tokens at B = 16
# give 8750 blocks; every query past 8192 blocks takes that tier.
S big_rows --tokens 140000 --layers 1 --heads 1 --kv-heads 1 --head-dim 16 --dtype bf16 --seed 19
run_resident big_rows "$W/big_rows.h5" bfloat16 --block-sizes 16,128 --top-k 2,64 \
  --routers moba,oracle,quest,oracle-topp --tau 0.9

# Attention windows: the smallest window budget (one query chunk per window, ~9 windows here)
# gives the whole-sequence run's table byte for byte.
if [[ -z "${ONLY:-}" || "big_rows" =~ ^(${ONLY})$ ]]; then
  "$MOBA" analyze "$W/big_rows.h5" --device cuda --quiet --block-sizes 16,128 --top-k 2,64 \
    --routers moba,oracle,quest,oracle-topp --tau 0.9 --attn-window-bytes 1 --out "$W/big_rows.window" \
    >"$W/big_rows.window.log" 2>&1 || { echo "FAIL: --attn-window-bytes 1"; status=1; }
  if cmp -s "$W/big_rows.cuda/summary.csv" "$W/big_rows.window/summary.csv"; then
    TABLE+=("attention windows of one chunk vs the whole sequence: summary.csv byte-identical")
  else
    TABLE+=("attention windows of one chunk vs the whole sequence: summary.csv DIFFERS"); status=1
  fi
fi

# Routing rows: one warp per row (radix select; every router here picks a fixed budget) against
# the per-row CTA sort (--tuning row_warp=0) on rows of up to 8750 blocks, both tie rules: the
# same selections, so the same table byte for byte.
if [[ -z "${ONLY:-}" || "big_rows" =~ ^(${ONLY})$ ]]; then
  for tie in recent older; do
    for rw in 0 1; do
      "$MOBA" analyze "$W/big_rows.h5" --device cuda --quiet --block-sizes 16,128 --top-k 2,3,64,300,1000 \
        --routers moba,oracle --tie $tie --tuning row_warp=$rw --out "$W/rows_$tie$rw" >"$W/rows_$tie$rw.log" 2>&1 \
        || { echo "FAIL: row_warp=$rw --tie $tie"; tail -3 "$W/rows_$tie$rw.log"; status=1; }
    done
    # (Coverage is a double sum in another order: byte identity is expected, not promised.)
    if cmp -s "$W/rows_${tie}0/summary.csv" "$W/rows_${tie}1/summary.csv"; then
      TABLE+=("warp rows vs CTA-sorted rows (--tie $tie, rows of <= 8750 blocks): summary.csv byte-identical")
    elif python3 "$HERE/compare_summary.py" "$W/rows_${tie}0/summary.csv" "$W/rows_${tie}1/summary.csv" bfloat16 \
      >"$W/rows_$tie.cmp" 2>&1; then
      TABLE+=("warp rows vs CTA-sorted rows (--tie $tie): summary.csv within the bf16 table, not byte-identical")
    else
      TABLE+=("warp rows vs CTA-sorted rows (--tie $tie): summary.csv DIFFERS"); status=1
    fi
  done
fi

# Workers: the heads of each group split over 3 workers (sharing this GPU when it is the only
# one) give byte-identical tables to one worker.
for n in 1 3; do
  "$MOBA" analyze "$W/bf16_d128.h5" --device cuda --gpus $n --quiet --block-sizes 32,64 --top-k 2,4 \
    --routers moba,oracle --out "$W/workers$n" >"$W/workers$n.log" 2>&1 || { echo "FAIL: --gpus $n"; status=1; }
done
if cmp -s "$W/workers1/summary.csv" "$W/workers3/summary.csv"; then
  TABLE+=("--gpus 3 vs --gpus 1: summary.csv byte-identical")
else
  TABLE+=("--gpus 3 vs --gpus 1: summary.csv DIFFERS"); status=1
fi

echo "== table"
for r in "${TABLE[@]}"; do echo "$r"; done
exit $status
