#!/usr/bin/env bash
# Regenerates the shipped example dumps from their sources, with the numpy reference path:
#   stories15M_genesis_1024.h5    stories15M, all 6 layers, the first 1024 tokens (BOS included)
#                                 of Genesis, KJV (Debian's bible-kjv), with token_ids
#   stories15M_tinystory_256.h5   the same model on the first 256 tokens of tinystory.txt, an
#                                 original TinyStories-style story (in-distribution)
# plus MANIFEST.tsv (sha256 of every tensor's bytes). The model comes from the npm package
# (fetch_stories15m.sh, sha256-checked). The numpy forward runs in float64, so the bf16 tensors do
# not depend on BLAS or CPU; with one HDF5 library the files are byte-identical run to run.
#
# usage: regenerate.sh [--out DIR] [--only genesis|tinystory]    (default DIR: experiments/data)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data=$(cd "$here/../data" && pwd)
out=$data
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --only) only=${2:?--only needs genesis or tinystory}; shift 2 ;;
    *) echo "regenerate: unknown argument '$1' (usage: regenerate.sh [--out DIR] [--only genesis|tinystory])" >&2; exit 2 ;;
  esac
done
case "$only" in ""|genesis|tinystory) ;; *) echo "regenerate: --only genesis or tinystory" >&2; exit 2 ;; esac
mkdir -p "$out"

# Debian's python3-numpy/h5py live under /usr/bin/python3; a python3 earlier on PATH may lack them.
PY=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import h5py, numpy' 2>/dev/null; then PY=$candidate; break; fi
done
[ -n "$PY" ] || { echo "regenerate: no python3 with numpy and h5py (apt-get install python3-numpy python3-h5py)" >&2; exit 2; }

cache=$("$here/fetch_stories15m.sh")
model=$cache/stories15M.bin
tokenizer=$cache/tokenizer.bin
made=()

if [ -z "$only" ] || [ "$only" = genesis ]; then
  command -v bible >/dev/null || { echo "regenerate: 'bible' not found (apt-get install bible-kjv)" >&2; exit 2; }
  genesis=$cache/genesis_kjv.txt
  # one verse per line, the "Ge1:1 " references removed
  bible -f Genesis1:1-Genesis50:26 </dev/null | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' > "$genesis.tmp"
  mv "$genesis.tmp" "$genesis"
  "$PY" "$here/llama2c.py" dump --model "$model" --tokenizer "$tokenizer" --text "$genesis" \
    --max-tokens 1024 --model-name stories15M \
    --source "KJV Genesis 1:1 onwards (Debian bible-kjv), llama2.c tokenizer, BOS=1" \
    --out "$out/stories15M_genesis_1024.h5"
  made+=("$out/stories15M_genesis_1024.h5")
fi
if [ -z "$only" ] || [ "$only" = tinystory ]; then
  "$PY" "$here/llama2c.py" dump --model "$model" --tokenizer "$tokenizer" --text "$data/tinystory.txt" \
    --max-tokens 256 --model-name stories15M \
    --source "experiments/data/tinystory.txt (original TinyStories-style story), llama2.c tokenizer, BOS=1" \
    --out "$out/stories15M_tinystory_256.h5"
  made+=("$out/stories15M_tinystory_256.h5")
fi
if [ -z "$only" ]; then
  "$PY" "$here/manifest.py" write "$out/MANIFEST.tsv" "${made[@]}"
  echo "wrote $out/MANIFEST.tsv"
fi
