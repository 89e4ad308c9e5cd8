#!/usr/bin/env bash
# Usage mistakes a new user makes: a mistyped flag exits 2 and names the flag meant
# ("did you mean"), a far-off name gets no guess.
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
echo "PASS"
