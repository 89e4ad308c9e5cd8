#!/usr/bin/env bash
# `moba fit --routers moba-threshold` end to end on the shipped 1024-token dump (docs/fit.md#tau):
# the table, the per-head tau file, then `moba analyze` re-run per head at its tau (and at
# tau - resolution) through experiments/scripts/fit_tau_check.py: every head reaches the
# target at its tau and misses it one grid step below.
# usage: test_fit_tau_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
DUMP="$HERE/../../experiments/data/stories15M_genesis_1024.h5"
CHECK="$HERE/../../experiments/scripts/fit_tau_check.py"
cd "$WORK"

# Layers 0 and 5 (12 heads), coverage >= 0.95 at B = 64 (16 blocks), tau on a 0.005 grid.
"$MOBA" fit "$DUMP" --block-sizes 64 --target coverage=0.95 --routers moba-threshold --layers 0,5 \
    --tau-resolution 0.005 --out fit --quiet > fit.txt
cat fit.txt
for f in fit.csv fit.json fit.tau_B64_moba-threshold.json; do [ -s "$f" ] || fail "$f missing"; done
[ ! -e fit.k_B64.json ] && [ ! -e fit.density_B64.json ] || fail "top-k budget files written for a tau router"
grep -q "^moba-threshold B=64 (n_blocks 16): fitted tau per head" fit.txt || fail "no tau table on stdout"
"$PY" - <<'PYEOF' || fail "table / tau file"
import csv, json
rows = list(csv.DictReader(open("fit.csv")))
assert len(rows) == 2 * 6, len(rows)
tj = json.load(open("fit.tau_B64_moba-threshold.json"))
assert tj["kind"] == "tau" and tj["router"] == "moba-threshold" and tj["n_blocks"] == 16, tj
assert tj["tau_resolution"] == 0.005 and len(tj["tau"]) == 6, tj
assert tj["tau"][1] is None and tj["tau"][4] is None  # layers not fitted
for r in rows:
    L, h = int(r["layer"]), int(r["head"])
    assert r["status"] == "ok" and r["k"] == "" and int(r["max_k_tried"]) == 16, r
    tau = float(r["tau"])
    assert 0 < tau <= 1 and abs(tau / 0.005 - round(tau / 0.005)) < 1e-9, r
    assert tj["tau"][L][h] == tau, (L, h, tj["tau"][L][h], tau)
    assert abs(tj["selected_blocks_mean"][L][h] - float(r["selected_blocks_mean"])) < 1e-4, r
    assert float(r["achieved"]) >= 0.95, r
    if tau > 0.005: assert float(r["achieved_prev"]) < 0.95, r
assert len({r["tau"] for r in rows}) > 1  # per head
js = json.load(open("fit.json"))
assert js["rows"][0]["tau"] == float(rows[0]["tau"]) and "tau: bisection" in js["search"], js["search"]
PYEOF

# `moba analyze` per head at its tau and at tau - 0.005.
"$PY" "$CHECK" "$MOBA" "$DUMP" fit --prev | tee check.txt || fail "a head misses the target under moba analyze"
grep -q "^12 of 12 heads pass" check.txt || fail "not every head checked"
echo "PASS"
