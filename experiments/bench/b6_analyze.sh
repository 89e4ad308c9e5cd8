#!/usr/bin/env bash
# PERF.md B6, model scale: `moba analyze` of one 8B-class layer at 128K — 32 query heads,
# 8 KV heads, head dim 128, bf16, 131072 tokens — at block sizes 16 .. 1024 (7) x 8 budgets
# (--sparsity: per B, k = max(1, round((1 - s) T / B)), the same k B for every B), routers
# moba + oracle: 56 configurations. Prints wall time, peak host RSS (/usr/bin/time), peak
# device memory (nvidia-smi memory.used every 0.5 s, the whole GPU's), GPU busy % and the
# output's size. Milestone <= 15 s per layer, goal <= 2 s.
# usage: experiments/bench/b6_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]
# ANALYZE_ARGS: extra analyze options (e.g. --profile; its per-stage table lands in analyze.err).
# Writes under ${OUT:-/tmp/moba-out}/b6. DUMP: analyse this dump instead of synthesising one. TOKENS, HEADS, KV_HEADS, HEAD_DIM override the
# shape (a small local smoke run), SPARSITY the budget list; CHUNK the query chunk (4096 on cuda, 256 on cpu).
set -uo pipefail
MOBA=${1:?usage: b6_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]}
DEVICE=${2:-cuda}
LIMIT=${3:-600}
TOKENS=${TOKENS:-131072} HEADS=${HEADS:-32} KV_HEADS=${KV_HEADS:-8} HEAD_DIM=${HEAD_DIM:-128}
BLOCK_SIZES=16,32,64,128,256,512,1024
SPARSITY=${SPARSITY:-0.5,0.75,0.875,0.9,0.9375,0.95,0.96875,0.98}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/gpu_sampler.sh"
trap sampler_stop EXIT
if [ -z "${CHUNK:-}" ]; then CHUNK=256; [ "$DEVICE" = cuda ] && CHUNK=4096; fi
W=${OUT:-/tmp/moba-out}/b6
rm -rf "$W"; mkdir -p "$W"
SHAPE="$HEADS heads x $TOKENS tokens x d$HEAD_DIM ($KV_HEADS KV heads, bf16)"
if [ -n "${DUMP:-}" ]; then  # an earlier run's layer.h5 (A/B runs of two binaries on one dump)
  ln -s "$(realpath "$DUMP")" "$W/layer.h5" && echo 0 >"$W/time_synth.txt"
else
  /usr/bin/time -f "%e" -o "$W/time_synth.txt" "$MOBA" synth --out "$W/layer.h5" --tokens "$TOKENS" --layers 1 \
    --heads "$HEADS" --kv-heads "$KV_HEADS" --head-dim "$HEAD_DIM" --dtype bf16 --min-distance 512 --seed 6 --quiet \
    >/dev/null || { echo "B6: synth failed"; exit 1; }
fi

sampler_start "$W/gpu.csv"
/usr/bin/time -f "%e %M" -o "$W/time.txt" timeout "$LIMIT" "$MOBA" analyze "$W/layer.h5" --device "$DEVICE" \
  --block-sizes "$BLOCK_SIZES" --sparsity "$SPARSITY" --routers moba,oracle --query-chunk "$CHUNK" --out "$W/out" ${ANALYZE_ARGS:-} \
  >"$W/analyze.log" 2>"$W/analyze.err"
rc=$?
sampler_stop
read -r wall rss < <(tail -1 "$W/time.txt")
if [ $rc -ne 0 ]; then
  echo "B6 $DEVICE: did not finish (exit $rc) within ${LIMIT}s; last progress: $(tr '\r' '\n' < "$W/analyze.err" | grep -v '^$' | tail -1)"
  exit 1
fi
rows=$(($(wc -l < "$W/out/summary.csv") - 1))
configs=$(cut -d, -f3-6 "$W/out/summary.csv" | awk -F, '$1 == "head" {print $3 "," $4}' | sort -u | wc -l)
out_kib=$(du -sk "$W/out" | cut -f1)
h5=$(du -k "$W/out/analysis.h5" 2>/dev/null | cut -f1)
dump=$(du -kL "$W/layer.h5" | cut -f1)
echo "B6 $DEVICE: moba analyze $SHAPE, B {$BLOCK_SIZES} x --sparsity {$SPARSITY}, moba+oracle, query chunk $CHUNK"
printf '  %-28s %s\n' "wall" "${wall} s (synth $(cat "$W/time_synth.txt") s, not counted)" \
  "peak host RSS" "$((rss / 1024)) MiB" \
  "peak GPU memory.used" "$(sampler_max "$W/gpu.csv" 2) MiB (whole GPU; dump $((dump / 1024)) MiB)" \
  "GPU busy (mean of samples)" "$(sampler_mean "$W/gpu.csv" 1) %" \
  "(B, k) configurations" "$configs distinct ((B, s) pairs that resolve to the same k are analysed once), $rows summary rows" \
  "output" "$((out_kib / 1024)) MiB in $W/out, analysis.h5 $((${h5:-0} / 1024)) MiB"
notes=$(grep -c "note:" "$W/analyze.err")
[ "$notes" -gt 0 ] && echo "  $notes resolution notes (see $W/analyze.err), e.g.: $(grep -m1 "note:" "$W/analyze.err")"
exit 0
