#!/usr/bin/env bash
# moba sweep configs: unknown keys, bad types and values, missing dumps and globs that match
# nothing exit 2 with "FILE: KEY: problem"; nothing is written. Matched attended keys on the
# shipped 256-token dump: at a target this T allows (112 keys, B = 16, 32, 64) the achieved
# means are within 5% of each other (budgets.csv, sweep.csv); where T is too short for the
# largest B (48 keys) the sweep says so.
# usage: test_sweep_config.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"

bad() {  # name expected-key toml-lines...
  local name=$1 key=$2; shift 2
  printf '%s\n' "$@" > $name.toml
  expect_exit2 "$name.toml: $key" "$MOBA" sweep $name.toml --out out_$name
  [ ! -e out_$name ] || fail "$name: out_$name was created for a bad config"
  echo "$name -> exit 2: $(grep error "$EXIT2")"
}
ok_budget='[budget]
top_k = [2]'
bad unknown_key  "colour"            'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' 'colour = 3' "$ok_budget"
bad unknown_sub  "budget.topk"       'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' '[budget]' 'topk = [2]'
bad unknown_an   "analysis.tiee"     'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' "$ok_budget" '[analysis]' 'tiee = "recent"'
bad bad_type     "block_sizes"       'dumps = ["dumps/s1.h5"]' 'block_sizes = "16"' "$ok_budget"
bad bad_elem     "budget.top_k"      'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' '[budget]' 'top_k = [2, "x"]'
bad bad_range    "budget.sparsity"   'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' '[budget]' 'sparsity = 1.5'
bad bad_choice   "analysis.tie"      'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' "$ok_budget" '[analysis]' 'tie = "newest"'
bad bad_router   "routers"           'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' 'routers = ["moba", "psychic"]' "$ok_budget"
bad missing_dump "dumps"             'dumps = ["dumps/nope.h5"]' 'block_sizes = [16]' "$ok_budget"
bad empty_glob   "dumps"             'dumps = ["dumps/*.nope"]' 'block_sizes = [16]' "$ok_budget"
bad no_dumps     "dumps"             'block_sizes = [16]' "$ok_budget"
bad no_budget    "budget"            'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]'
bad empty_budget "budget"            'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' '[budget]'
bad twice        "block_sizes"       'dumps = ["dumps/s1.h5"]' 'block_sizes = [16, 16]' "$ok_budget"
bad no_layer     "layers"            'dumps = ["dumps/s1.h5"]' 'layers = [7]' 'block_sizes = [16]' "$ok_budget"
bad no_head      "heads"             'dumps = ["dumps/s1.h5"]' 'heads = [9]' 'block_sizes = [16]' "$ok_budget"
bad not_toml     "line [0-9]"          'dumps = ["dumps/s1.h5"]' 'block_sizes = [16' "$ok_budget"
bad not_a_dump   "dumps"             'dumps = ["sweep.toml"]' 'block_sizes = [16]' "$ok_budget"
bad two_buckets  "analysis.bucket_width" 'dumps = ["dumps/s1.h5"]' 'block_sizes = [16]' "$ok_budget" '[analysis]' 'buckets = 4' 'bucket_width = 16'
mkdir -p other && cp dumps/s1.h5 other/s1.h5
bad same_name    "dumps: .*share the file name s1.h5" 'dumps = ["dumps/s1.h5", "other/s1.h5"]' 'block_sizes = [16]' "$ok_budget"
expect_exit2 "nope.toml" "$MOBA" sweep nope.toml --out x
expect_exit2 "the directory nowhere does not exist" "$MOBA" sweep sweep.toml --out nowhere/run
[ ! -e nowhere ] || fail "sweep created a missing --out parent"
expect_exit2 "--shard" "$MOBA" sweep sweep.toml --out x --shard 2/2
echo "bad configs and flags -> exit 2 naming the file and key"

# The shipped example configs parse and list their jobs.
for cfg in "$REPO"/experiments/sweeps/*.toml; do
  "$MOBA" sweep "$cfg" --out "ex_$(basename "$cfg" .toml)" --dry-run >/dev/null 2>err.txt || { cat err.txt; fail "$cfg does not parse"; }
done
echo "experiments/sweeps/*.toml parse"

# Matched attended keys on the shipped real dump.
cat > matched.toml <<TOML
dumps = ["$SHIPPED"]
layers = [0]
heads = [0]
block_sizes = [16, 32, 64]
[budget]
attended_keys = [112, 48]
TOML
"$MOBA" sweep matched.toml --out M 2>err.txt || { cat err.txt; fail "matched sweep failed"; }
$PY - M <<'PY' || fail "matched attended keys"
import csv, sys
d = sys.argv[1]
b = list(csv.DictReader(open(f"{d}/budgets.csv")))
for target in ("112", "48"):
    m = [float(r["attended_keys_mean"]) for r in b if r["budget_target"] == target]
    assert len(m) == 3, m
    spread = max(m) / min(m) - 1
    print(f"target {target}: achieved {m}, spread {100*spread:.1f}%")
    if target == "112": assert spread <= 0.05, spread
    else: assert spread > 0.05, spread   # B = 64 on 256 tokens: 32.5 or 80.5 keys, nothing near 48
# sweep.csv reports the same achieved means on every row of those jobs.
rows = list(csv.DictReader(open(f"{d}/sweep.csv")))
got = {(r["budget_target"], r["block_size"]): r["attended_keys_mean"] for r in rows}
for r in b:
    assert got[(r["budget_target"], r["block_size"])] == r["attended_keys_mean"], r
# The k chosen is the closest: no other k is nearer the target.
def mean(T, B, k):
    return sum((t - (t // B) * B + 1) + B * min(k - 1, t // B) for t in range(T)) / T
for r in b:
    T, B, k, tgt = 256, int(r["block_size"]), int(r["top_k"]), float(r["budget_target"])
    best = min(abs(mean(T, B, kk) - tgt) for kk in range(1, T // B + 2))
    assert abs(mean(T, B, k) - tgt) == best, r
PY
grep -q "target 48\|attended_keys=48" err.txt && grep "attended_keys=48" err.txt | grep "over 5%" >/dev/null \
  || fail "the sweep does not say that 48 keys cannot be matched within 5%: $(cat err.txt)"

# A sweep whose only job fails (kconv weights of the wrong shape) still writes sweep.csv with
# every column: the sweep's own, then summary.csv's (no done job's table to take them from).
printf '0.1 0.2\n' > w_bad.txt
cat > failing.toml <<TOML
dumps = ["dumps/s1.h5"]
layers = [0]
block_sizes = [16]
routers = ["moba-kconv"]
[analysis]
kconv_weights = "w_bad.txt"
[budget]
top_k = [2]
TOML
set +e; "$MOBA" sweep failing.toml --out F --quiet 2>/dev/null; rc=$?; set -e
[ $rc = 1 ] || fail "a sweep whose job fails: exit $rc, want 1"
[ "$(head -1 F/sweep.csv)" = "$(head -1 M/sweep.csv)" ] \
  || fail "sweep.csv's header without a done job differs: $(head -1 F/sweep.csv)"
[ "$(wc -l < F/sweep.csv)" = 1 ] || fail "sweep.csv of a failed sweep has rows"

# --resume after a dump's content changed: its jobs rerun (new ids) and a note names the old
# job directories, which are left out of sweep.csv.
cp dumps/s1.h5 changing.h5
printf 'dumps = ["changing.h5"]\nlayers = [0]\nblock_sizes = [16]\n[budget]\ntop_k = [2]\n' > changing.toml
"$MOBA" sweep changing.toml --out C --quiet || fail "sweep of changing.h5 failed"
"$MOBA" synth --out changing.h5 --seed 99 --tokens 128 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --quiet >/dev/null
"$MOBA" sweep changing.toml --out C --resume --quiet 2>err.txt || { cat err.txt; fail "resume after a changed dump failed"; }
grep "note: 1 directory in C/jobs is no job of this sweep" err.txt >/dev/null || fail "no note of the old job: $(cat err.txt)"
[ "$(cut -d, -f3 C/sweep.csv | sort -u | grep -c "$(sha256sum changing.h5 | cut -c1-64)")" = 1 ] \
  && [ "$(cut -d, -f3 C/sweep.csv | sort -u | wc -l)" = 2 ] || fail "sweep.csv mixes the old dump's rows in"
echo "PASS"
