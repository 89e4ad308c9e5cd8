#!/usr/bin/env bash
# Usage mistakes a new user makes: a mistyped flag exits 2 and names the flag meant
# ("did you mean"), a far-off name gets no guess.
# `moba info` on the workbench's own outputs (route.h5, analysis.h5) says what they are.
# usage: test_cli_messages.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"
expect_exit2 "unknown option --block-size; did you mean --block-sizes?" "$MOBA" analyze d.h5 --block-size 64
expect_exit2 "unknown option --block-sizes; did you mean --block-size?" "$MOBA" route d.h5 --block-sizes 64
expect_exit2 "did you mean --top-k?" "$MOBA" analyze d.h5 --top_k 2
expect_exit2 "did you mean --sparsity?" "$MOBA" analyze d.h5 --sparsty 0.5
expect_exit2 "did you mean --with-output?" "$MOBA" route d.h5 --with-outputs
expect_exit2 "unknown option --colour" "$MOBA" analyze d.h5 --colour red
grep -q "did you mean" "$EXIT2" && fail "a guess for a far-off flag: $(cat "$EXIT2")"

"$MOBA" synth --out d.h5 --tokens 128 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --seed 1 --quiet
"$MOBA" route d.h5 --layer 0 --block-size 16 --top-k 2 --out r.h5 --quiet
"$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out A --quiet >/dev/null
"$MOBA" info r.h5 | grep 'kind *a `moba route` output' >/dev/null || fail "info route.h5"
"$MOBA" info r.h5 | grep '/selected \[2, 128, 2\] int32' >/dev/null || fail "info route.h5: datasets"
"$MOBA" info A/analysis.h5 | grep 'kind *a `moba analyze` output' >/dev/null || fail "info analysis.h5"
"$MOBA" info r.h5 --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert d["kind"] == "route" and d["attributes"]["top_k"] == "2", d'
# An output that is the input itself (by any name), a directory, or in a missing directory:
# exit 2 before any work, the input untouched and nothing left behind.
cp d.h5 in.h5
ln -sf in.h5 link.h5
cp r.h5 rin.h5
sum_in=$(sha256sum in.h5 rin.h5)
expect_exit2 "--out in.h5 is the input in.h5 itself" "$MOBA" route in.h5 --layer 0 --block-size 16 --top-k 2 --out in.h5
expect_exit2 "is the input in.h5 itself" "$MOBA" route in.h5 --layer 0 --block-size 16 --top-k 2 --out ./link.h5
expect_exit2 "is the input in.h5 itself" "$MOBA" convert in.h5 --out ./in.h5 --dtype bf16
expect_exit2 "is the input link.h5 itself" "$MOBA" convert link.h5 --out "$WORK/in.h5"
expect_exit2 "is the input rin.h5 itself" "$MOBA" export rin.h5 --format nsa-indices --out rin.h5
[ "$(sha256sum in.h5 rin.h5)" = "$sum_in" ] || fail "an input was overwritten"
expect_exit2 "--out nodir/r.h5: the directory nodir does not exist" "$MOBA" route d.h5 --layer 0 --block-size 16 --top-k 2 \
  --out nodir/r.h5
expect_exit2 "--trace nodir/t.json: the directory nodir does not exist" "$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 \
  --out T1 --trace nodir/t.json
[ -e T1 ] && fail "--trace into a missing directory left T1"
mkdir -p tdir
expect_exit2 "--trace tdir is a directory" "$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out T2 --trace tdir
[ -e T2 ] && fail "--trace naming a directory left T2"
mkdir -p F.json
expect_exit2 "--out F.json is a directory" "$MOBA" fit d.h5 --block-sizes 16 --target coverage=0.9 --out F
[ -e F.csv ] && fail "fit left F.csv"
expect_exit2 "--keep-heads: layer 0 has query heads 0..1, not 9" "$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out K \
  --keep-heads 9
[ -e K ] && fail "--keep-heads 9 left K"
expect_exit2 "--buckets and --bucket-width are alternatives" "$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out Bk \
  --buckets 4 --bucket-width 10
# Provenance: route.h5 and fit's tables record the dump's SHA-256 and size.
"$MOBA" fit d.h5 --block-sizes 16 --target coverage=0.5 --out fitted --quiet > /dev/null
"$PY" - d.h5 r.h5 fitted <<'PYEOF' || fail "provenance of route / fit"
import hashlib, json, os, sys
import h5py
dump, route, fit = sys.argv[1:4]
sha = hashlib.sha256(open(dump, "rb").read()).hexdigest()
a = h5py.File(route, "r").attrs
got = a["dump_sha256"]
assert (got.decode() if isinstance(got, bytes) else str(got)) == sha, got
assert int(a["dump_bytes"]) == os.path.getsize(dump)
t = json.load(open(fit + ".json"))
assert t["dump_sha256"] == sha and t["dump_bytes"] == os.path.getsize(dump), t
assert t["routing"]["tie"] == "recent" and "tau" not in t["routing"], t["routing"]
assert json.load(open(fit + ".k_B16.json"))["dump_sha256"] == sha
PYEOF
expect_exit2 "^moba analyze: error: /proc/moba-x: --out: cannot create" \
  "$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out /proc/moba-x
grep -q "partial" "$EXIT2" && fail "--out /proc/x exposes the internal .partial: $(cat "$EXIT2")"
"$PY" -c 'import h5py; h5py.File("other.h5", "w").attrs["x"] = 1'
expect_exit2 "moba_dump_version: required root attribute is missing" "$MOBA" info other.h5
echo "PASS"
