#!/usr/bin/env bash
# Same-call A/B of two `moba` builds on B4 (kernels/cuda/NOTES.md's method): one dump, `moba
# analyze` alternated A, B, A, B, ... ROUNDS times, then summary.csv compared byte for byte and
# analysis.h5 dataset by dataset and attribute by attribute (tests/gpu/h5_same.py). With
# B6_HEADS=N, also N query heads of B6 (B6_TOKENS, 131072, tokens; 7 block sizes x 8
# sparsities), once each.
# usage: tests/gpu/ab_analyze.sh MOBA_A MOBA_B
# DEVICE (cuda), ROUNDS (3), OUT (/tmp/moba-ab), PYTHON (python3 with h5py), ANALYZE_ARGS (extra
# options for both), ARGS_A / ARGS_B (for one side only: one binary against itself, e.g.
# ARGS_A="--tuning heads_in_flight=1"), TOKENS / HEADS / KV_HEADS / HEAD_DIM / DTYPE (B4's shape, bf16; small
# for a local smoke run).
# Prints one line per run (wall s, peak RSS MiB), then the identity checks; exit 1 when A and B
# differ.
set -uo pipefail
A=${1:?usage: ab_analyze.sh MOBA_A MOBA_B}
B=${2:?usage: ab_analyze.sh MOBA_A MOBA_B}
DEVICE=${DEVICE:-cuda} ROUNDS=${ROUNDS:-3} PYTHON=${PYTHON:-python3}
TOKENS=${TOKENS:-32768} HEADS=${HEADS:-32} KV_HEADS=${KV_HEADS:-8} HEAD_DIM=${HEAD_DIM:-128}
HERE=$(cd "$(dirname "$0")" && pwd)
W=${OUT:-/tmp/moba-ab}
rm -rf "$W"; mkdir -p "$W"
CHUNK=256
[ "$DEVICE" = cuda ] && CHUNK=4096
"$A" synth --out "$W/b4.h5" --tokens "$TOKENS" --layers 1 --heads "$HEADS" --kv-heads "$KV_HEADS" \
  --head-dim "$HEAD_DIM" --dtype "${DTYPE:-bf16}" --min-distance 512 --seed 4 --quiet >/dev/null || { echo "synth failed"; exit 1; }
status=0
run() {  # NAME BINARY DUMP OUTDIR ARGS...
  local name=$1 bin=$2 dump=$3 out=$4
  shift 4
  /usr/bin/time -f "%e %M" -o "$W/time.txt" "$bin" analyze "$dump" --device "$DEVICE" --query-chunk $CHUNK \
    --out "$out" --quiet "$@" ${ANALYZE_ARGS:-} >/dev/null 2>"$out.err"
  local rc=$?
  read -r wall rss < <(tail -1 "$W/time.txt")
  printf '%-6s %8s s %8s MiB  exit %d\n' "$name" "$wall" "$((rss / 1024))" "$rc"
  [ $rc -eq 0 ] || { tail -3 "$out.err"; status=1; }
}
same() {  # LABEL DIR_A DIR_B
  if cmp -s "$2/summary.csv" "$3/summary.csv"; then echo "$1: summary.csv identical"
  else echo "$1: summary.csv DIFFERS"; status=1; fi
  "$PYTHON" "$HERE/h5_same.py" "$2/analysis.h5" "$3/analysis.h5" || status=1
}
B4="--block-sizes 16,32,64,128 --top-k 2,4,8 --routers moba,oracle"
for r in $(seq 1 "$ROUNDS"); do
  for v in A B; do args=ARGS_$v; run "B4 $v" "${!v}" "$W/b4.h5" "$W/b4_$v" $B4 ${!args:-}; done
done
same B4 "$W/b4_A" "$W/b4_B"
if [ -n "${B6_HEADS:-}" ]; then
  "$A" synth --out "$W/b6.h5" --tokens "${B6_TOKENS:-131072}" --layers 1 --heads "$B6_HEADS" --kv-heads $(((B6_HEADS + 3) / 4)) \
    --head-dim 128 --dtype bf16 --min-distance 512 --seed 6 --quiet >/dev/null || { echo "B6 synth failed"; exit 1; }
  B6="--routers moba,oracle --block-sizes 16,32,64,128,256,512,1024 --sparsity 0.5,0.75,0.875,0.9,0.9375,0.95,0.96875,0.98"
  for v in A B; do args=ARGS_$v; run "B6 $v" "${!v}" "$W/b6.h5" "$W/b6_$v" $B6 ${!args:-}; done
  same "B6 ($B6_HEADS heads)" "$W/b6_A" "$W/b6_B"
fi
exit $status
