#!/usr/bin/env bash
# `moba export` against the engines on the GPU machine (issue 13): a synthetic dump routed with
# --with-output (B 128, k 3, GQA 2:1), exported in every format, then
# tests/gpu/export_flex_check.py (FlexAttention with the flex-blockmask export; the other
# layouts decoded as docs/export.md says and run through dense SDPA). PASS/FAIL lines last.
# usage: tests/gpu/export_check.sh MOBA
set -euo pipefail
MOBA=${1:?usage: export_check.sh MOBA}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
"$MOBA" synth --out "$D/s.h5" --tokens 1024 --heads 4 --kv-heads 2 --head-dim 64 --seed 5 --quiet >/dev/null
"$MOBA" route "$D/s.h5" --layer 0 --block-size 128 --top-k 3 --with-output --out "$D/r.h5" --quiet >/dev/null
for f in flashinfer-bsr flex-blockmask flashmoba-csc nsa-indices; do
  "$MOBA" export "$D/r.h5" --format "$f" --out "$D/r.$f.safetensors" >/dev/null
done
python3 - "$D" <<'PY'
import sys, h5py, numpy as np
D = sys.argv[1]; s = h5py.File(f"{D}/s.h5", "r"); r = h5py.File(f"{D}/r.h5", "r")
for n in "qkv": np.save(f"{D}/{n}.npy", s["layers/0/" + n][...].astype(np.float32))
np.save(f"{D}/out.npy", r["output"][...])
PY
python3 "$HERE/export_flex_check.py" "$D" 2>&1 | grep -v "^BlockMask\|^ *(\|^ *█\|^ *░" | tail -20
