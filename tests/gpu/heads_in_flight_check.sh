#!/usr/bin/env bash
# One device call for the GPU analysis' two heads in flight (kernels/cuda/NOTES.md, twentieth
# session): its tests, the same binary with one head at a time against two (byte-identical
# summary.csv and analysis.h5, walls alternated), the previous build against it, and the CPU
# comparison on the cases without a large CPU run. Table last.
# usage: tests/gpu/heads_in_flight_check.sh MOBA_BEFORE MOBA_AFTER GPU_ANALYSIS_TESTS
# OUT (/tmp/moba-out), PYTHON (python3 with h5py), ROUNDS (3), B6_HEADS (8; empty: no B6 heads).
set -uo pipefail
BEFORE=${1:?usage: heads_in_flight_check.sh MOBA_BEFORE MOBA_AFTER GPU_ANALYSIS_TESTS}
AFTER=${2:?usage}
TESTS=${3:?usage}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/moba-out}
mkdir -p "$OUT"
export PYTHON=${PYTHON:-python3} ROUNDS=${ROUNDS:-3}
declare -a TABLE
step() {  # NAME LOG COMMAND...: runs it, keeps its output, one table line
  local name=$1 log=$2; shift 2
  local t0=$(date +%s)
  "$@" >"$log" 2>&1
  local rc=$?
  TABLE+=("$(printf '%-44s exit %d  %4d s  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$log")")
  tail -25 "$log"
}
step "gpu analysis tests" "$OUT/hif_tests.log" "$TESTS" --durations yes
step "one head at a time vs two (same binary)" "$OUT/hif_ab_self.log" \
  env ARGS_A="--tuning heads_in_flight=1" B6_HEADS="${B6_HEADS-8}" OUT="$OUT/ab_self" "$HERE/ab_analyze.sh" "$AFTER" "$AFTER"
step "before vs after (B4)" "$OUT/hif_ab.log" env OUT="$OUT/ab" "$HERE/ab_analyze.sh" "$BEFORE" "$AFTER"
step "analyze --device cuda vs cpu" "$OUT/hif_check.log" \
  env ONLY="${ONLY:-genesis|f32_gqa_ragged|bf16_d128|f16_d48_kconv|f32_gqa_routers}" OUT="$OUT" "$HERE/analyze_check.sh" "$AFTER"
echo
echo "== table"
printf '%s\n' "${TABLE[@]}"
grep -h "^B4 \|^B6 \|identical\|DIFFERS\|h5_same" "$OUT/hif_ab_self.log" "$OUT/hif_ab.log" | sed 's/^/  /'
