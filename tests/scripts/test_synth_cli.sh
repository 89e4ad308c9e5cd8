#!/usr/bin/env bash
# `moba synth` end to end: the foundation issue's acceptance command, its shape through
# `moba info` (and h5py, independently), byte-identical tensors for the same seed, stored
# dtypes, and bad flags -> exit 2 with nothing left behind.
# usage: test_synth_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

# 1. The acceptance command, twice with the same seed, once with another.
ACCEPT=(--tokens 4096 --layers 2 --heads 4 --kv-heads 2 --head-dim 64)
"$MOBA" synth --out s.h5 "${ACCEPT[@]}" --seed 1 --quiet
"$MOBA" synth --out s_again.h5 "${ACCEPT[@]}" --seed 1 --quiet
"$MOBA" synth --out s_other.h5 "${ACCEPT[@]}" --seed 2 --quiet

# 2. The shape through `moba info` (text and --json). Skipped, loudly, only while the
#    binary has no `info` command at all.
if "$MOBA" --help | grep -E '^ +info ' >/dev/null; then
  info_text=$("$MOBA" info s.h5)
  echo "$info_text"
  for want in 4096 64; do
    grep -q "$want" <<<"$info_text" || fail "moba info does not show $want"
  done
  "$MOBA" info --json s.h5 >info.json
  "$PY" - info.json <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
pairs = []  # (lower-cased key path, value) of every number and list in the document
def walk(node, path):
    if isinstance(node, dict):
        for k, v in node.items(): walk(v, path + "." + k.lower())
    elif isinstance(node, list):
        pairs.append((path, len(node)))
        for v in node: walk(v, path)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        pairs.append((path, node))
walk(doc, "")
def has(pred, value):
    return any(pred(k) and v == value for k, v in pairs)
last = lambda k: k.rsplit(".", 1)[-1]
checks = {
    "2 layers": has(lambda k: "layer" in last(k), 2),
    "4 q heads": has(lambda k: "head" in last(k) and "kv" not in last(k) and "dim" not in last(k), 4),
    "2 kv heads": has(lambda k: "kv" in last(k), 2),
    "4096 tokens": has(lambda k: "token" in last(k), 4096),
    "head dim 64": has(lambda k: "dim" in last(k), 64),
}
bad = [name for name, ok in checks.items() if not ok]
if bad: sys.exit("moba info --json misses " + ", ".join(bad) + ": " + json.dumps(doc))
EOF
else
  echo "SKIP: this moba has no 'info' command yet; the shape is checked with h5py below"
fi

# 3. The same shape read independently with h5py; same seed -> byte-identical tensors,
#    another seed -> different ones; schema attributes and planted truth.
"$PY" - <<'EOF'
import h5py, numpy as np, sys
def fail(msg): sys.exit("FAIL: " + msg)
a, b, c = (h5py.File(n, "r") for n in ("s.h5", "s_again.h5", "s_other.h5"))
if sorted(a["layers"].keys()) != ["0", "1"]: fail("layers %s" % list(a["layers"].keys()))
if a.attrs["moba_dump_version"] != 1 or a.attrs["rope_applied"] != 0: fail("root attributes")
model = a.attrs["model"]
if (model.decode() if isinstance(model, bytes) else model) != "synthetic": fail("model %r" % model)
for name, want in (("synth_seed", 1), ("synth_delta_mu", 0.8), ("synth_cluster_size", 4),
                   ("synth_mu_cluster", 0.15), ("synth_min_distance", 256)):
    if float(a.attrs[name]) != want: fail("%s = %r, want %r" % (name, a.attrs[name], want))
shapes = {"q": (4, 4096, 64), "k": (2, 4096, 64), "v": (2, 4096, 64), "planted": (4, 4096)}
for layer in ("0", "1"):
    for name, shape in shapes.items():
        x, y, z = (f["layers"][layer][name] for f in (a, b, c))
        if x.shape != shape: fail("layer %s %s shape %s, want %s" % (layer, name, x.shape, shape))
        if x[()].tobytes() != y[()].tobytes(): fail("layer %s %s differs for the same seed" % (layer, name))
        if x[()].tobytes() == z[()].tobytes(): fail("layer %s %s equal for another seed" % (layer, name))
    planted = a["layers"][layer]["planted"][()]
    t = np.arange(4096)[None, :]
    if not np.all((planted == -1) | ((planted >= 0) & (planted <= t - 256))): fail("planted out of range")
    if not np.all(planted[:, 256:] >= 0): fail("eligible queries without a plant")
if np.array_equal(a["layers/0/k"][()], a["layers/1/k"][()]): fail("layers 0 and 1 have the same keys")
print("h5py: shapes, attributes, planted truth and same-seed bytes ok")
EOF

# 4. Stored dtypes: f16 as float16, bf16 as uint16 with dtype = "bfloat16".
"$MOBA" synth --out s16.h5 --tokens 300 --heads 2 --kv-heads 1 --head-dim 48 --dtype f16 --seed 3 --quiet
"$MOBA" synth --out sbf.h5 --tokens 300 --heads 2 --kv-heads 1 --head-dim 48 --dtype bf16 --seed 3 --quiet
"$PY" - <<'EOF'
import h5py, numpy as np, sys
f16 = h5py.File("s16.h5", "r")["layers/0/q"]
if f16.dtype != np.float16: sys.exit("FAIL: f16 stored as %s" % f16.dtype)
bf = h5py.File("sbf.h5", "r")["layers/0/q"]
tag = bf.attrs.get("dtype")
tag = tag.decode() if isinstance(tag, bytes) else tag
if bf.dtype.itemsize != 2 or tag != "bfloat16": sys.exit("FAIL: bf16 stored as %s, dtype=%r" % (bf.dtype, tag))
print("h5py: f16 and bf16 storage ok")
EOF

# 5. Bad flags: exit 2, a message, and no file (or temporary) left in the directory.
mkdir bad
expect_usage_error() {
  expect_exit2 "moba synth: usage error: " "$MOBA" synth --out bad/x.h5 "$@"
  [ -z "$(ls -A bad)" ] || fail "synth $* left $(ls -A bad)"
}
expect_usage_error --tokens 0 --seed 1
expect_usage_error --tokens 12x --seed 1
expect_usage_error --heads 3 --kv-heads 2 --seed 1
expect_usage_error --head-dim 4 --seed 1
expect_usage_error --delta-mu 0.95 --mu-cluster 0.3 --seed 1
expect_usage_error --delta-mu 1.5 --seed 1
expect_usage_error --cluster-size 17 --seed 1
expect_usage_error --min-distance 8 --seed 1
expect_usage_error --planted-fraction 2 --seed 1
expect_usage_error --dtype f64 --seed 1
expect_usage_error --window-bias 0.2 --window 64 --seed 1
expect_usage_error --seed -1
expect_usage_error --tokens 100
expect_usage_error --bogus 3 --seed 1
expect_usage_error --seed 1 extra
expect_exit2 "--out is required" "$MOBA" synth --tokens 100 --seed 1
rc=0
"$MOBA" synth --out no/such/dir/x.h5 --tokens 100 --seed 1 >/dev/null 2>bad.err || rc=$?
[ "$rc" != 0 ] || fail "synth into a missing directory succeeded"
[ ! -e no ] || fail "synth into a missing directory created it"

echo "test_synth_cli: ok"
