#!/usr/bin/env bash
# Issue 12's viewer data: a synthetic dump of 1,048,576 tokens (4 query heads on 2 KV heads,
# d 64, bf16) analysed on the GPU at B = 64, k = 8, moba + oracle; head 0 keeps its
# per-position arrays and selections (the default kept set). Prints the synth and analyze
# times, peak host RSS and analysis.h5's size; with PARTS_TO=DIR, also splits the analysis
# directory into DIR/million.tar.partNN pieces of 15 MiB (the device tool returns files of
# at most 16 MiB; `cat million.tar.part* | tar x` rebuilds it).
# usage: experiments/bench/million.sh MOBA [TOKENS]
set -uo pipefail
MOBA=${1:?usage: million.sh MOBA [TOKENS]}
TOKENS=${2:-1048576}
W=${OUT:-/tmp/moba-out}/million
rm -rf "$W"; mkdir -p "$W"
/usr/bin/time -f "%e %M" -o "$W/time_synth.txt" "$MOBA" synth --out "$W/million.h5" --tokens "$TOKENS" --layers 1 \
  --heads 4 --kv-heads 2 --head-dim 64 --dtype bf16 --min-distance 1024 --seed 12 --quiet >/dev/null \
  || { echo "million: synth failed"; exit 1; }
/usr/bin/time -f "%e %M" -o "$W/time.txt" "$MOBA" analyze "$W/million.h5" --device cuda --block-sizes 64 --top-k 8 \
  --routers moba,oracle --profile --out "$W/million.analysis" >"$W/analyze.log" 2>"$W/analyze.err" \
  || { echo "million: analyze failed"; tail -5 "$W/analyze.err"; exit 1; }
read -r wall rss < <(tail -1 "$W/time.txt")
echo "million: $TOKENS tokens x 4 heads (2 KV) x d64 bf16, B 64 k 8, moba+oracle"
printf '  %-16s %s\n' "synth" "$(cut -d' ' -f1 "$W/time_synth.txt") s" "analyze wall" "$wall s" \
  "peak host RSS" "$((rss / 1024)) MiB" "analysis.h5" "$(($(du -k "$W/million.analysis/analysis.h5" | cut -f1) / 1024)) MiB"
grep -A30 "stage" "$W/analyze.err" | head -30
if [ -n "${PARTS_TO:-}" ]; then
  mkdir -p "$PARTS_TO"
  tar -C "$W" -cf - million.analysis | split -b 15M -d - "$PARTS_TO/million.tar.part"
  ls -la "$PARTS_TO"
fi
