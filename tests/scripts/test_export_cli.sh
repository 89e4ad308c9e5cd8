#!/usr/bin/env bash
# `moba export` end to end: route a small synthetic dump (per-head and --gqa shared, a partial
# last block), export every format, and check each file with export_check.py, a json + numpy
# reader written from docs/export.md that rebuilds the dense per-query block mask and compares
# it with the route's `selected`. Bad input -> exit 2 with a message and no output file.
# usage: test_export_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

"$MOBA" synth --out s.h5 --tokens 300 --heads 4 --kv-heads 2 --head-dim 16 --seed 3 --min-distance 16 --quiet >/dev/null
"$MOBA" route s.h5 --layer 0 --block-size 32 --top-k 3 --out r_head.h5 --quiet >/dev/null
"$MOBA" route s.h5 --layer 0 --block-size 32 --top-k 4 --gqa shared --out r_shared.h5 --quiet >/dev/null
"$MOBA" route s.h5 --layer 0 --block-size 16 --top-k 40 --out r_dense.h5 --quiet >/dev/null  # k > blocks: -1 pads

ROUTES=(r_head r_shared r_dense)
# Adversarial shapes (STYLE.md 7): T = 1, B - 1, B + 1, 113; k = 1 and k = n_blocks; MQA.
for T in 1 31 33 113; do
  "$MOBA" synth --out t$T.h5 --tokens $T --heads 2 --kv-heads 1 --head-dim 8 --seed 1 --min-distance 16 --quiet >/dev/null
  nb=$(( (T + 31) / 32 ))
  for k in 1 $nb; do
    "$MOBA" route t$T.h5 --layer 0 --block-size 32 --top-k $k --out t${T}_k$k.h5 --quiet >/dev/null
    ROUTES+=(t${T}_k$k)
  done
  "$MOBA" route t$T.h5 --layer 0 --block-size 32 --top-k 2 --gqa shared --out t${T}_shared.h5 --quiet >/dev/null
  ROUTES+=(t${T}_shared)
done

for r in "${ROUTES[@]}"; do
  for f in flashinfer-bsr flex-blockmask flashmoba-csc nsa-indices; do
    "$MOBA" export $r.h5 --format $f --out $r.$f.safetensors >/dev/null
    "$PY" "$HERE/export_check.py" $r.h5 $r.$f.safetensors $f
  done
done
# NSA: one selection per KV group only for --gqa shared.
"$PY" - r_shared.nsa-indices.safetensors r_head.nsa-indices.safetensors <<'EOF'
import json, struct, sys
def meta(p):
    raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n])
a, b = meta(sys.argv[1]), meta(sys.argv[2])
assert a["__metadata__"]["heads"] == "kv" and a["block_indices"]["shape"][2] == 2, a
assert b["__metadata__"]["heads"] == "q" and b["block_indices"]["shape"][2] == 4, b
EOF

"$MOBA" export --help | grep "flashinfer-bsr" >/dev/null || fail "export --help does not list the formats"
"$MOBA" --help | grep -E '^ +export ' >/dev/null || fail "moba --help does not list export"

# Bad input: exit 2, a message, nothing written.
expect2() {  # what-the-message-names args...: exit 2, no bad.safetensors
  local want="$1"; shift
  expect_exit2 "$want" "$MOBA" export "$@"
  [ ! -e bad.safetensors ] || fail "moba export $* left bad.safetensors"
}
expect2 "missing.h5" missing.h5 --format nsa-indices --out bad.safetensors
expect2 "not a \`moba route\` output" s.h5 --format nsa-indices --out bad.safetensors
echo "not hdf5" >junk.h5
expect2 "junk.h5" junk.h5 --format nsa-indices --out bad.safetensors
expect2 "is not one of" r_head.h5 --format csr --out bad.safetensors
expect2 "--format" r_head.h5 --out bad.safetensors
expect2 "--out" r_head.h5 --format nsa-indices
# Hand-edited route files: a --gqa shared route whose group disagrees (nsa-indices), a
# non-causal block, a `selected` whose shape disagrees with the attributes.
cp r_shared.h5 bad_group.h5; cp r_head.h5 bad_causal.h5; cp r_head.h5 bad_shape.h5
cp r_head.h5 bad_version.h5; cp r_head.h5 bad_blocks.h5
"$PY" - <<'EOF2'
import h5py, numpy as np
with h5py.File("bad_version.h5", "r+") as f:
    f.attrs["moba_route_version"] = np.int64(2)
with h5py.File("bad_blocks.h5", "r+") as f:  # a block size that the block count contradicts
    f.attrs["block_size"] = np.int64(f.attrs["block_size"] // 2)
with h5py.File("bad_group.h5", "r+") as f:
    s = f["selected"][...]; s[1, 200] = [0, 1, 2, 6]; f["selected"][...] = s
with h5py.File("bad_causal.h5", "r+") as f:
    s = f["selected"][...]; s[0, 5, 0] = 3; f["selected"][...] = s
with h5py.File("bad_shape.h5", "r+") as f:
    f.attrs["top_k"] = np.int64(7)
EOF2
expect2 "heads 0 and 1 differ at token 200" bad_group.h5 --format nsa-indices --out bad.safetensors
"$MOBA" export bad_group.h5 --format flashmoba-csc --out group_ok.safetensors >/dev/null  # per-head formats need no agreement
expect2 "not -1 or a causal block" bad_causal.h5 --format flex-blockmask --out bad.safetensors
expect2 "disagrees" bad_shape.h5 --format flashinfer-bsr --out bad.safetensors
expect2 "moba_route_version: 2 is not a version" bad_version.h5 --format flashinfer-bsr --out bad.safetensors
expect2 "n_blocks: .* disagrees with n_tokens" bad_blocks.h5 --format flashmoba-csc --out bad.safetensors
echo "export: all checks passed"
