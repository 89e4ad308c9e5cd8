#!/usr/bin/env bash
# moba sweep (docs/sweep.md): a sweep over two synth dumps and the shipped real dump writes
# sweep.csv (fixed columns, then summary.csv's; every job's head and aggregate rows, in job
# order), provenance.json (dump SHA-256 equal to sha256sum's, sizes, seeds), the resolved
# config and budgets.csv; --sha256 agrees with sha256sum on block-boundary sizes; a
# non-empty --out is refused without --resume (exit 2).
# usage: test_sweep_basic.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"

"$MOBA" sweep sweep.toml --out R 2>err.txt || { cat err.txt; fail "sweep failed"; }
for f in sweep.csv provenance.json config.resolved.toml jobs.tsv budgets.csv; do [ -s R/$f ] || fail "R/$f missing"; done
n_jobs=$(($(wc -l < R/jobs.tsv) - 1))
# 3 dumps x (1 top-k + 3 matched) = 12, less the matched jobs whose k covers every block
# (full attention, nothing to route: analyze would refuse them), which the sweep leaves out
# and names: all three block sizes of the 128-token dump (80 keys is most of its context).
[ "$n_jobs" = 9 ] || fail "expected 9 jobs, got $n_jobs"
[ "$(grep -c "job left out" err.txt)" = 3 ] || { cat err.txt; fail "expected 3 'job left out' notes"; }
[ "$(count_done R)" = 9 ] || fail "not every job has its DONE marker"

# Header: the fixed columns, then exactly summary.csv's columns.
first=$(ls -d R/jobs/*/ | head -1)
want="job,dump,dump_sha256,budget_mode,budget_target,attended_keys_mean,$(head -1 "$first/summary.csv")"
[ "$(head -1 R/sweep.csv)" = "$want" ] || fail "sweep.csv header is not the fixed columns + summary.csv's"
# Rows: every job's summary.csv then aggregate.csv rows, in job order, with the job's columns prefixed.
$PY - R <<'PY' || fail "sweep.csv rows do not match the job tables"
import csv, sys, os
d = sys.argv[1]
jobs = [l.rstrip("\n").split("\t") for l in open(f"{d}/jobs.tsv")][1:]
rows = list(csv.reader(open(f"{d}/sweep.csv")))[1:]
want = []
for j in jobs:
    idx, jid, h, dump, sha, mode, target = j[:7]
    for t in ("summary.csv", "aggregate.csv"):
        r = list(csv.reader(open(f"{d}/jobs/{jid}/{t}")))
        hdr = r[0]
        for row in r[1:]:
            B, k, T = int(row[hdr.index("block_size")]), int(row[hdr.index("top_k")]), int(row[hdr.index("n_tokens")])
            # Independent count: the union of key indices attended, position by position.
            tot = 0
            for tt in range(T):
                c = tt // B
                keys = set(range(c * B, tt + 1))
                for b in range(c - min(k - 1, c), c):  # any min(k-1, c) routable blocks
                    keys |= set(range(b * B, (b + 1) * B))
                tot += len(keys)
            want.append([jid, dump, sha, mode, target if mode != "top_k" else str(k), "%.4f" % (tot / T)] + row)
assert len(rows) == len(want), (len(rows), len(want))
for a, b in zip(rows, want):
    assert a == b, (a[:8], b[:8])
scopes = {r[8] for r in rows}
assert {"head", "layer", "overall"} <= scopes, scopes
print("sweep.csv: %d rows match the job tables" % len(rows))
PY

# config.resolved.toml is itself a valid config with the same jobs (same ids and hashes).
"$MOBA" sweep R/config.resolved.toml --out R_again --dry-run 2>/dev/null > dry.txt || fail "config.resolved.toml does not parse"
[ "$(cut -f1 dry.txt | tail -n +2)" = "$(cut -f2 R/jobs.tsv | tail -n +2)" ] || fail "config.resolved.toml gives other jobs"
[ ! -e R_again ] || fail "--dry-run wrote R_again"
echo "config.resolved.toml reproduces the same $n_jobs job ids"

# Provenance: every dump's absolute path, size and SHA-256 (as sha256sum prints it).
for f in dumps/s1.h5 dumps/s2.h5 "$SHIPPED"; do
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  abs=$(realpath "$f")
  $PY - R/provenance.json "$abs" "$sum" "$(stat -c %s "$f")" <<'PY' || fail "provenance.json: wrong entry for $f"
import json, sys
p = json.load(open(sys.argv[1]))
d = [x for x in p["dumps"] if x["path"] == sys.argv[2]]
assert len(d) == 1 and d[0]["sha256"] == sys.argv[3] and d[0]["size"] == int(sys.argv[4]), d
assert p["status"] == "complete" and p["end_utc"] and p["start_utc"] and p["host"]
assert p["build"]["git_commit"] and "moba" in p["moba_version"] and p["device"]["hardware_threads"] >= 1
assert p["seeds"]["s1.h5"] == "11" and p["seeds"]["s2.h5"] == "12", p["seeds"]
PY
done
echo "provenance.json: SHA-256, sizes and seeds of all 3 dumps match"

# SHA-256 at the padding boundaries (55/56/63/64 bytes...) and a multi-buffer file.
mkdir -p sha
for n in 0 1 3 55 56 57 63 64 65 119 120 127 128 1000; do head -c $n /dev/urandom > sha/f$n; done
head -c 3000000 /dev/urandom > sha/big
(cd sha && "$MOBA" sweep --sha256 f* big > ../ours.txt && sha256sum f* big > ../theirs.txt)
cmp -s ours.txt theirs.txt || { diff ours.txt theirs.txt | head; fail "--sha256 differs from sha256sum"; }
echo "--sha256 equals sha256sum on $(wc -l < ours.txt) files"

# A non-empty DIR is refused without --resume, and left untouched.
cp R/sweep.csv before.csv
expect_exit2 "--resume" "$MOBA" sweep sweep.toml --out R
csv_equal before.csv R/sweep.csv
mkdir -p other && touch other/x
expect_exit2 "--out other exists and is not empty" "$MOBA" sweep sweep.toml --out other
expect_exit2 "not a \`moba sweep\` run directory" "$MOBA" sweep sweep.toml --out other --resume
echo "non-empty DIR refused (exit 2)"
echo "PASS"
