#!/usr/bin/env bash
# One device call for issue 10's timings with an already built `moba` (e.g. carried in
# .carry/new): B4 against the PyTorch baseline (b4_analyze.sh) with the per-stage GPU profile,
# then B6 (b6_analyze.sh) with its profile; each table as soon as it is measured.
# Usage (repo root, on the GPU machine): tests/gpu/analyze_perf.sh MOBA [B6_LIMIT_S]
set -uo pipefail
MOBA=${1:?usage: analyze_perf.sh MOBA [B6_LIMIT_S]}
OUT=${OUT:-/tmp/moba-out}; export OUT
HERE=$(cd "$(dirname "$0")" && pwd)
B=$HERE/../../experiments/bench
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
ANALYZE_ARGS=--profile "$B/b4_analyze.sh" "$MOBA" cuda 300 >"$OUT/b4.txt" 2>&1
echo "== B4 profile (analyze --profile)"; grep -A40 -i "profile" "$OUT/b4/analyze.err" | head -40
echo "== B4"; cat "$OUT/b4.txt"
if [ "${B6_LIMIT:-${2:-300}}" != 0 ]; then
  ANALYZE_ARGS=--profile "$B/b6_analyze.sh" "$MOBA" cuda "${B6_LIMIT:-${2:-300}}" >"$OUT/b6.txt" 2>&1
  echo "== B6 profile"; grep -A40 -i "profile" "$OUT/b6/analyze.err" | head -40
  echo "== B6"; cat "$OUT/b6.txt"
fi
