#!/usr/bin/env bash
# Usage mistakes a new user makes: a mistyped flag exits 2 and names the flag meant
# ("did you mean"), a far-off name gets no guess.
# `moba info` on the workbench's own outputs (route.h5, analysis.h5) says what they are.
# usage: test_cli_messages.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"
expect() {  # expected-substring command...
  local want=$1; shift
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ $rc = 2 ] || fail "exit $rc (want 2): $*"
  grep -qF -- "$want" <<<"$out" || fail "message of '$*' lacks '$want': $out"
  echo "ok: $* -> $out"
}
expect "unknown option --block-size; did you mean --block-sizes?" "$MOBA" analyze d.h5 --block-size 64
expect "unknown option --block-sizes; did you mean --block-size?" "$MOBA" route d.h5 --block-sizes 64
expect "did you mean --top-k?" "$MOBA" analyze d.h5 --top_k 2
expect "did you mean --sparsity?" "$MOBA" analyze d.h5 --sparsty 0.5
expect "did you mean --with-output?" "$MOBA" route d.h5 --with-outputs
set +e; out=$("$MOBA" analyze d.h5 --colour red 2>&1); rc=$?; set -e
[ $rc = 2 ] || fail "exit $rc for --colour"
grep -q "did you mean" <<<"$out" && fail "a guess for a far-off flag: $out"

"$MOBA" synth --out d.h5 --tokens 128 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --seed 1 --quiet
"$MOBA" route d.h5 --layer 0 --block-size 16 --top-k 2 --out r.h5 --quiet
"$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out A --quiet >/dev/null
"$MOBA" info r.h5 | grep -q 'kind *a `moba route` output' || fail "info route.h5"
"$MOBA" info r.h5 | grep -q '/selected \[2, 128, 2\] int32' || fail "info route.h5: datasets"
"$MOBA" info A/analysis.h5 | grep -q 'kind *a `moba analyze` output' || fail "info analysis.h5"
"$MOBA" info r.h5 --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert d["kind"] == "route" and d["attributes"]["top_k"] == "2", d'
set +e; out=$("$MOBA" analyze d.h5 --block-sizes 16 --top-k 2 --out /proc/moba-x 2>&1); rc=$?; set -e
[ $rc = 2 ] && grep -q "^moba analyze: error: /proc/moba-x: --out: cannot create" <<<"$out" || fail "--out /proc/x: $rc $out"
grep -q "partial" <<<"$out" && fail "--out /proc/x exposes the internal .partial: $out"
"$PY" -c 'import h5py; h5py.File("other.h5", "w").attrs["x"] = 1'
set +e; out=$("$MOBA" info other.h5 2>&1); rc=$?; set -e
[ $rc = 2 ] && grep -q "moba_dump_version: required root attribute is missing" <<<"$out" || fail "info other.h5: $rc $out"
echo "PASS"
