#!/usr/bin/env bash
# The shipped real dumps (experiments/data/, made by experiments/dump/regenerate.sh): schema-v1
# attributes, shapes and dtypes read with h5py, the sha256 of every tensor's bytes against
# MANIFEST.tsv (hashed here independently of the dump tools), and `moba info` / `moba info --check`
# on both files. Needs no model and no network.
# usage: test_real_data_shipped.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
DATA=$(cd "$HERE/../../experiments/data" && pwd)

# 1. Structure and checksums, independently of experiments/dump/schema.py.
"$PY" - "$DATA" <<'PYEOF'
import hashlib, os, sys
import h5py, numpy as np
data = sys.argv[1]
expect = {"stories15M_genesis_1024.h5": 1024, "stories15M_tinystory_256.h5": 256}
manifest = {}
with open(os.path.join(data, "MANIFEST.tsv")) as f:
    for line in f:
        if line.strip() and not line.startswith("#"):
            sha, key, dt, shape = line.rstrip("\n").split("\t")
            manifest[key] = (sha, dt, shape)
fails, seen = [], set()
def check(cond, msg):
    if not cond:
        fails.append(msg)
for name, n_tokens in expect.items():
    with h5py.File(os.path.join(data, name), "r") as f:
        a = f.attrs
        check(int(a["moba_dump_version"]) == 1, "%s: moba_dump_version %r" % (name, a.get("moba_dump_version")))
        check(int(a["rope_applied"]) == 1, "%s: rope_applied %r" % (name, a.get("rope_applied")))
        check(str(a["model"]) == "stories15M", "%s: model %r" % (name, a.get("model")))
        ids = f["token_ids"]
        check(ids.dtype == np.dtype("<i4") and ids.shape == (n_tokens,), "%s: token_ids %s %s" % (name, ids.dtype, ids.shape))
        check(ids[0] == 1 and 0 <= ids[()].min() and ids[()].max() < 32000, "%s: token_ids not BOS-led llama ids" % name)
        tensors = [("token_ids", ids)]
        check(sorted(f["layers"]) == [str(l) for l in range(6)], "%s: layers %s" % (name, list(f["layers"])))
        for l in range(6):
            for t in ("q", "k", "v"):
                ds = f["layers/%d/%s" % (l, t)]
                check(ds.shape == (6, n_tokens, 48), "%s: layers/%d/%s shape %s" % (name, l, t, ds.shape))
                check(ds.dtype == np.dtype("<u2") and ds.attrs.get("dtype") in ("bfloat16", b"bfloat16"),
                      "%s: layers/%d/%s not bf16-as-uint16" % (name, l, t))
                tensors.append(("layers/%d/%s" % (l, t), ds))
        for dsname, ds in tensors:
            key = "%s:%s" % (name, dsname)
            arr = np.ascontiguousarray(ds[()])
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            got = hashlib.sha256(arr.tobytes()).hexdigest()
            check(key in manifest, "%s: not in MANIFEST.tsv" % key)
            if key in manifest:
                check(got == manifest[key][0], "%s: sha256 %s, manifest %s" % (key, got, manifest[key][0]))
                check("x".join(map(str, arr.shape)) == manifest[key][2], "%s: shape differs from manifest" % key)
            seen.add(key)
        q = f["layers/0/q"][()].astype(np.uint32) << 16
        qf = q.view(np.float32)
        check(np.all(np.isfinite(qf)) and 0.1 < float(np.abs(qf).mean()) < 100, "%s: layer 0 q values implausible" % name)
check(seen == set(manifest), "MANIFEST.tsv lists tensors not shipped: %s" % sorted(set(manifest) - seen)[:3])
for m in fails:
    print("FAIL:", m)
print("shipped dumps: %d tensors checked against MANIFEST.tsv" % len(seen))
sys.exit(1 if fails else 0)
PYEOF

# 2. `moba info` reads both: 6 layers, 6 q heads, 6 kv heads, head dim 48, bf16, post-RoPE, token_ids.
for spec in stories15M_genesis_1024.h5:1024 stories15M_tinystory_256.h5:256; do
  file=$DATA/${spec%%:*}
  n_tokens=${spec##*:}
  "$MOBA" info --json "$file" > "$WORK/info.json"
  "$PY" - "$WORK/info.json" "$n_tokens" <<'PYEOF'
import json, sys
info = json.load(open(sys.argv[1]))
want = {"version": 1, "n_layers": 6, "n_q_heads": 6, "n_kv_heads": 6, "head_dim": 48, "dtype": "bfloat16",
        "rope_applied": True, "has_token_ids": True, "n_tokens": int(sys.argv[2]), "model": "stories15M"}
bad = {k: (info.get(k), v) for k, v in want.items() if info.get(k) != v}
if bad:
    sys.exit("FAIL: moba info %s: got/expected %s" % (info.get("file"), bad))
PYEOF
  "$MOBA" info --check "$file" > "$WORK/check.txt"
  grep -q "108 slice(s) read, all values finite" "$WORK/check.txt" || { echo "FAIL: moba info --check $file:"; cat "$WORK/check.txt"; exit 1; }
done
echo "PASS: shipped real dumps"
