#!/usr/bin/env bash
# Build provenance: `moba --version` names the version, the git commit read at build time (with
# "-dirty" when tracked files differed), the compiler, the build type and the backends; the
# git_commit that analyze and route record is that same commit.
# usage: test_provenance_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

line=$("$MOBA" --version) || fail "moba --version exited $?"
echo "$line"
[[ "$line" =~ ^moba\ [0-9]+\.[0-9]+\ \(git\ ([0-9a-f]{12}|unknown)(-dirty)?,\ .+,\ .+,\ (CUDA|CPU\ only)\)$ ]] \
  || fail "unexpected --version line: $line"
short=$(sed -E 's/^moba [^ ]+ \(git ([^,]+),.*/\1/' <<<"$line")
"$MOBA" version | grep -F "$line" >/dev/null || fail "'moba version' differs from 'moba --version'"

"$MOBA" synth --out s.h5 --tokens 128 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --seed 2 --quiet
"$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --out A --quiet >/dev/null || fail "analyze"
"$MOBA" route s.h5 --layer 0 --block-size 16 --top-k 2 --out r.h5 --quiet || fail "route"
"$PY" - "$short" <<'PYEOF' || fail "recorded git_commit"
import json, sys, h5py
short = sys.argv[1]                      # 12 hex digits (+ -dirty), or "unknown"
def same(full):
    if short.startswith("unknown"):
        return full == "unknown"
    head, _, dirty = short.partition("-")
    return full.startswith(head) and full.endswith("-dirty") == (dirty == "dirty")
run = json.load(open("A/run.json"))
assert same(run["git_commit"]), run["git_commit"]
for f in ("A/analysis.h5", "r.h5"):
    with h5py.File(f) as h:
        c = h.attrs["git_commit"]
        c = c.decode() if isinstance(c, bytes) else c
        assert same(c), (f, c)
print("git_commit recorded:", run["git_commit"])
PYEOF
echo "PASS"
