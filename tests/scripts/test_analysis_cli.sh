#!/usr/bin/env bash
# `moba analyze`, `moba route` and `moba demo` end to end: the files analyze writes (the
# DESIGN §7 columns of summary.csv, one row per layer x head x router x B x k, JSON, the
# GUI's HDF5 layout, the run record), the fixed-sparsity rule k = round((1 - s) T / B),
# atomic replacement of DIR, route's attributes, and bad input -> exit 2 with nothing left.
# usage: test_analysis_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

"$MOBA" synth --out s.h5 --tokens 512 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --min-distance 64 --seed 4 --quiet

# 1. analyze: table, files, columns, row count, JSON, HDF5 layout.
"$MOBA" analyze s.h5 --block-sizes 16,32,64 --sparsity 0.75 --routers moba,oracle,moba-kconv --layers 0,1 \
  --heads 0,3 --out A --quiet > table.txt
cat table.txt
grep -q "oracle" table.txt || fail "no table printed"
for f in summary.csv aggregate.csv buckets.csv summary.json analysis.h5 run.json; do
  [ -s "A/$f" ] || fail "A/$f missing"
done
[ ! -e A.partial ] || fail "A.partial left behind"
"$PY" - <<'PYEOF' || fail "analyze outputs"
import csv, json, h5py, math
rows = list(csv.DictReader(open("A/summary.csv")))
need = ["layer", "head", "router", "block_size", "top_k", "sparsity_mean", "coverage_mean",
        "oracle_coverage_mean", "kl_mean", "block_recall_mean", "token_recall_mean",
        "output_rel_err_mean", "snr_emp", "snr_theory", "p_fail_emp"]
missing = [c for c in need if c not in rows[0]]
assert not missing, missing
assert len(rows) == 2 * 2 * 3 * 3, len(rows)  # layers x heads x routers x B
ks = {(int(r["block_size"]), int(r["top_k"])) for r in rows}
assert ks == {(16, 8), (32, 4), (64, 2)}, ks  # round(0.25 * 512 / B)
for r in rows:
    cov, ocov, kl = float(r["coverage_mean"]), float(r["oracle_coverage_mean"]), float(r["kl_mean"])
    assert 0 < cov <= ocov + 1e-6 <= 1 + 1e-5, r
    assert kl >= -math.log(cov) - 1e-6  # Jensen: mean(-ln R) >= -ln mean(R)
    if r["router"] == "oracle":
        assert float(r["block_recall_mean"]) == 1.0
        assert r["snr_emp"] == "nan"
    else:
        assert float(r["snr_emp"]) > 0 and float(r["snr_synth"]) > 0
agg = list(csv.DictReader(open("A/aggregate.csv")))
assert {r["scope"] for r in agg} == {"layer", "overall"}
js = json.load(open("A/summary.json"))
assert len(js) == len(rows) + len(agg)
run = json.load(open("A/run.json"))
assert run["command"] == "analyze" and run["device"].startswith("cpu") and run["git_commit"]
assert run["config"]["configs_B_k"] == [[16, 8], [32, 4], [64, 2]], run["config"]
assert run["config"]["block_sizes"] == [16, 32, 64] and run["config"]["top_n"] == 10, run["config"]
import hashlib, os
assert run["input"]["path"] == os.path.abspath("s.h5"), run["input"]
assert run["input"]["size"] == os.path.getsize("s.h5"), run["input"]
assert run["input"]["sha256"] == hashlib.sha256(open("s.h5", "rb").read()).hexdigest(), run["input"]
assert run["config"]["kept"]["positions"] == "selected" and run["config"]["kept"]["keep_heads"] == [0], run["config"]["kept"]
assert run["config"]["kept"]["n_with_selection"] == 2 * 3 * 3, run["config"]["kept"]  # head 0 of 2 layers x 3 B x 3 routers
with h5py.File("A/analysis.h5", "r") as f:
    # The default keep rule: per-position data for the first analysed head (0) of each layer,
    # compressed, selections at the smallest width (16 blocks: int8).
    g = f["/layers/1/heads/0/B32_k4/moba"]
    assert g["selected"].shape == (512, 4) and g["selected"].dtype == "int8"
    assert g["selected"].compression == "gzip" and g["coverage"].compression == "gzip"
    assert g["selected"][...].min() >= -1
    for name in ["coverage", "kl", "block_recall", "token_recall", "output_rel_err", "output_cosine",
                 "sparsity_token", "block_density"]:
        assert g[name].shape == (512,), name
    # Every head: its tables (one row per configuration and router; 3 B x 3 routers).
    h = f["/layers/1/heads/3"]
    assert f.attrs["layout"] == 2, dict(f.attrs)
    routers = h["configurations"].attrs["routers"]
    routers = (routers.decode() if isinstance(routers, bytes) else routers).split(",")
    cols = h["summary"].attrs["columns"]
    cols = (cols.decode() if isinstance(cols, bytes) else cols).split(",")
    assert h["configurations"].shape == (9, 3) and h["summary"].shape == (9, len(cols)), (h["summary"].shape, len(cols))
    assert h["summary"].dtype == "float64" and "snr_emp" in cols and "coverage_mean" in cols
    assert h["bucket_means"].shape == (9, 16, 5) and h["bucket_edges"].shape == (17,)
    assert h["bucket_n_choice"].shape == (9, 16)
    import csv
    want = {(int(r["block_size"]), int(r["top_k"]), r["router"]): float(r["coverage_mean"])
            for r in csv.DictReader(open("A/summary.csv")) if r["layer"] == "1" and r["head"] == "3"}
    got = {(int(b), int(k), routers[r]): h["summary"][i, cols.index("coverage_mean")]
           for i, (b, k, r) in enumerate(h["configurations"][...])}
    assert set(got) == set(want), (got, want)
    for key in want:
        assert abs(got[key] - want[key]) <= 1e-5 * abs(want[key]), (key, got[key], want[key])
    # Other heads keep no per-position data: no configuration groups.
    assert "B32_k4" not in h, list(h)
    assert f.attrs["n_with_selection"] == 18 and f.attrs["n_configurations"] == 36, dict(f.attrs)
    snr = f["/layers/0/heads/0/snr_configurations"][...]
    assert f["/layers/0/heads/0/signal_rank_hist"].shape == (len(snr), 65) and len(snr) == 6, snr  # 3 B x 2 gate routers
    assert f.attrs["device"].startswith(b"cpu") if isinstance(f.attrs["device"], bytes) else f.attrs["device"].startswith("cpu")
PYEOF

# 2. --json on stdout; re-running over an earlier output replaces it.
"$MOBA" analyze s.h5 --block-sizes 32 --top-k 2,3 --heads 1 --out A --json --quiet > rows.json
"$PY" -c "import json,sys; d=json.load(open('rows.json')); assert any(r['scope']=='overall' for r in d), d" \
  || fail "--json"
[ "$(tail -n +2 A/summary.csv | wc -l)" = 8 ] || fail "A was not replaced (2 layers x 1 head x 2 routers x 2 k)"

# 2a. --trace: the stages as a Chrome trace, one interval per group read and head summary.
"$MOBA" analyze s.h5 --block-sizes 16,32 --top-k 2 --layers 0 --out T --trace T.trace.json --quiet > /dev/null
"$PY" - <<'PYEOF' || fail "--trace output"
import json
ev = json.load(open("T.trace.json"))["traceEvents"]
spans = [e for e in ev if e["ph"] == "X"]
names = [e["name"] for e in spans]
assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans), spans
assert sum(n.startswith("host: read KV groups") for n in names) == 2, names  # layer 0's 2 KV groups
for h in range(4):
    assert any(n.startswith("host: summary rows") and n.endswith("(head %d)" % h) for n in names), (h, names)
wall = [e for e in spans if e["name"] == "moba analyze (wall)"]
assert len(wall) == 1 and all(e["ts"] + e["dur"] <= wall[0]["ts"] + wall[0]["dur"] + 1 for e in spans)
assert any(e["ph"] == "M" and e["name"] == "thread_name" for e in ev)
PYEOF
# With --profile too, each host stage is one interval (not one per timer), with its head.
"$MOBA" analyze s.h5 --block-sizes 16,32 --top-k 2 --layers 0 --out TP --trace TP.trace.json --profile --quiet \
  > /dev/null 2>&1 || fail "--trace with --profile"
"$PY" - <<'PYEOF' || fail "--trace with --profile: intervals recorded twice"
import json
names = [e["name"] for e in json.load(open("TP.trace.json"))["traceEvents"] if e["ph"] == "X"]
rows = [n for n in names if n.startswith("host: summary rows")]
assert sorted(rows) == ["host: summary rows (SNR model) (head %d)" % h for h in range(4)], rows
PYEOF
expect_exit2 "--trace: expected a file name" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --out T2 --trace '' --quiet
[ ! -e T2 ] || fail "--trace '' left T2"

# 2b. the block-score routers (docs/routing.md) on the GQA dump under both GQA modes: SNR NaN.
for gqa in per-head shared; do
  "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2,4 --routers quest,sink-window,minference-bs,oracle --gqa $gqa \
    --out R --quiet > out.txt 2>&1 || { cat out.txt; fail "block-score routers, gqa $gqa"; }
  [ "$(tail -n +2 R/summary.csv | wc -l)" = 64 ] || fail "R: 2 layers x 4 heads x 4 routers x 2 k rows"
  grep -q "^sink-window  *16  *2 .* nan  *nan  *nan  *nan$" out.txt || fail "sink-window row / NaN SNR: $(cat out.txt)"
done

# 2c. nsa-shared sums every head of the KV group, analysed or not: --heads 1 gives head 1 the
# rows of the whole-layer run.
"$MOBA" analyze s.h5 --layers 0 --block-sizes 16 --top-k 2,4 --routers nsa-shared --out N --quiet >/dev/null 2>&1 \
  || fail "nsa-shared, all heads"
"$MOBA" analyze s.h5 --layers 0 --heads 1 --block-sizes 16 --top-k 2,4 --routers nsa-shared --out N1 --quiet >/dev/null 2>&1 \
  || fail "nsa-shared, --heads 1"
[ "$(grep '^0,1,head,' N1/summary.csv)" = "$(grep '^0,1,head,' N/summary.csv)" ] && [ -n "$(grep '^0,1,head,' N1/summary.csv)" ] \
  || fail "nsa-shared head 1 differs under --heads 1: $(grep '^0,1,head,' N1/summary.csv N/summary.csv)"

# 3. bad input and usage: exit 2, no DIR and no DIR.partial left behind; a locked --out.
expect_exit2 "missing.h5: cannot open" "$MOBA" analyze missing.h5 --block-sizes 16 --top-k 2 --out B
expect_exit2 "exactly one of --top-k and --sparsity" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --sparsity 0.5 --out B
expect_exit2 "exactly one of --top-k and --sparsity" "$MOBA" analyze s.h5 --block-sizes 16 --out B
expect_exit2 "one of minference-bs, moba, moba-kconv, moba-threshold, nsa-shared, oracle, oracle-topp, quest, sink-window" \
  "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --routers moba,hyper --out B
expect_exit2 "query heads 0..3, not 9" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --heads 9 --out B
expect_exit2 "s.h5 has no layer 5" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --layers 5 --out B
expect_exit2 "at most 8 block sizes" "$MOBA" analyze s.h5 --block-sizes 1,2,3,4,5,6,7,8,9 --top-k 2 --out B
expect_exit2 "CUDA requested but this build has no CUDA backend\|no GPU found" \
  "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --device cuda --out B
printf '0.1 0.2\n' > w_bad.txt
expect_exit2 "w_bad.txt" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --routers moba-kconv --kconv-weights w_bad.txt --out B
[ ! -e B ] && [ ! -e B.partial ] || fail "bad input left B or B.partial"
expect_exit2 "keep-heads" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --positions all --keep-heads 1 --out B
expect_exit2 "B64_k2 is not analysed" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --keep-configs B64_k2 --out B
[ ! -e B ] && [ ! -e B.partial ] || fail "bad keep flags left B or B.partial"
# Another process writing the same --out (its DIR.partial locked; here flock(1) holds it while
# analyze runs): exit 2 naming it, the holder's files untouched; once free, a run clears them.
mkdir -p L.partial && touch L.partial/theirs
expect_exit2 "another moba process is writing it" flock L.partial "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --out L
[ -e L.partial/theirs ] && [ ! -e L ] || fail "a refused analyze touched the locked L.partial or wrote L"
"$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --out L --quiet > /dev/null
[ -e L/summary.csv ] && [ ! -e L/theirs ] && [ ! -e L.partial ] || fail "analyze after the lock: L incomplete or stale"
mkdir -p notours && touch notours/keep.txt
expect_exit2 "not an earlier \`moba analyze\` output" "$MOBA" analyze s.h5 --block-sizes 16 --top-k 2 --out notours
[ -e notours/keep.txt ] || fail "a foreign directory was touched"

# 4. kconv weights from a text file work; route records its configuration.
"$PY" -c "
import numpy as np
np.savetxt('w3.txt', np.full((3, 32), 0.2, dtype=np.float32))
np.save('w3.npy', np.full((3, 32), 0.2, dtype=np.float32))"
"$MOBA" analyze s.h5 --block-sizes 32 --top-k 2 --routers moba-kconv --kconv-weights w3.txt --layers 0 --heads 0 --out C --quiet > /dev/null
"$MOBA" route s.h5 --layer 1 --block-size 32 --top-k 3 --kconv 3 --kconv-weights w3.npy --out r.h5 --device auto --quiet > route.txt
grep -q "device: cpu" route.txt || fail "route does not say which device ran: $(cat route.txt)"
"$PY" - <<'PYEOF' || fail "route output"
import h5py
with h5py.File("r.h5", "r") as f:
    sel = f["selected"][...]
    assert sel.shape == (4, 512, 3) and sel.dtype == "int32"
    assert "output" not in f
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    assert a["router"] == "moba-kconv" and a["kconv_weights"] == "w3.npy" and a["block_size"] == 32
    assert a["device"].startswith("cpu") and a["git_commit"] and a["layer"] == 1
    for t in range(512):
        row = sel[0, t]
        valid = row[row >= 0]
        assert list(valid) == sorted(valid) and valid[-1] == t // 32, (t, row)
PYEOF

# 5. demo: no arguments, the ablation table. (Its speed is a benchmark's business, not a
# test's: under a sanitizer on a loaded machine it took 135 s; the time is printed only.)
start=$(date +%s)
"$MOBA" demo --quiet > demo.txt
elapsed=$(( $(date +%s) - start ))
cat demo.txt
for B in 16 32 64 128; do grep -qE "^moba +$B " demo.txt || fail "demo has no moba row for B=$B"; done
echo "demo: ${elapsed}s"
echo "PASS"
