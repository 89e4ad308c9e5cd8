#!/usr/bin/env bash
# Degenerate analyze requests are handled on purpose, never silently run into NaN tables:
# k >= n_blocks (MoBA = full attention) is left out with a note saying what would route,
# B >= T alone is a usage error (exit 2, nothing written), a --sparsity value collapsing to
# k = 1 or repeating a k is flagged; requested and resolved configurations are recorded in
# run.json. `info` and `analyze` warn when a dump looks token-major without layout = "thd".
# usage: test_degenerate_configs.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"
"$MOBA" synth --out d.h5 --tokens 512 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --seed 5 --quiet >/dev/null

# 1. k >= n_blocks: left out, said, recorded; the other configurations run.
"$MOBA" analyze d.h5 --block-sizes 16,128 --top-k 2,4,40 --out A --quiet >/dev/null 2>err.txt || fail "analyze A"
cat err.txt
grep -q "B=16 k=40 (--top-k 40): k >= n_blocks = 32 at T=512" err.txt || fail "no note for B=16 k=40"
grep -q "B=128 k=4 (--top-k 4): k >= n_blocks = 4 at T=512.*k <= 3 routes at this B" err.txt || fail "no note for B=128 k=4"
"$PY" - <<'PYEOF' || fail "A outputs"
import csv, json
keys = {(int(r["block_size"]), int(r["top_k"])) for r in csv.DictReader(open("A/summary.csv"))}
assert keys == {(16, 2), (16, 4), (128, 2)}, keys
c = json.load(open("A/run.json"))["config"]
assert c["configs_requested"] == [[16, 2], [16, 4], [16, 40], [128, 2], [128, 4], [128, 40]], c["configs_requested"]
assert c["configs_B_k"] == [[16, 2], [16, 4], [128, 2]], c["configs_B_k"]
assert any("k >= n_blocks" in n for n in c["config_notes"]), c["config_notes"]
PYEOF

# 2. Nothing left to route (B >= T): exit 2, the reason and what would work, nothing written.
expect_exit2 "nothing to route" "$MOBA" analyze d.h5 --block-sizes 512,1024 --top-k 2 --out B --quiet
cat "$EXIT2"
grep -q "use block sizes below 512" "$EXIT2" || fail "B >= T message"
[ ! -e B ] && [ ! -e B.partial ] || fail "B >= T left output behind"

# 3. --sparsity: a value repeating a k is analysed once, one collapsing to k = 1 is flagged.
"$MOBA" analyze d.h5 --block-sizes 64 --sparsity 0.9,0.95 --out C --quiet >/dev/null 2>err.txt || fail "analyze C"
cat err.txt
grep -q "B=64: --sparsity 0.9 collapses to k=1" err.txt || fail "no k = 1 note"
grep -q "B=64: --sparsity 0.95 gives k=1, as --sparsity 0.9 does: analysed once" err.txt || fail "no duplicate note"

# 4. A plain request gets no note.
"$MOBA" analyze d.h5 --block-sizes 16 --top-k 4 --out D --quiet >/dev/null 2>err.txt || fail "analyze D"
[ ! -s err.txt ] || fail "notes for a plain request: $(cat err.txt)"

# 5. Token-major data without layout = "thd": info and analyze warn.
"$PY" - <<'PYEOF'
import h5py, numpy as np
with h5py.File("tmajor.h5", "w") as f:
    f.attrs["moba_dump_version"] = 1; f.attrs["model"] = "t"; f.attrs["rope_applied"] = 1
    g = f.create_group("layers/0")
    for n in "qkv":
        g.create_dataset(n, data=np.random.default_rng(0).standard_normal((64, 8, 16)).astype("float32"))
PYEOF
"$MOBA" info tmajor.h5 >/dev/null 2>err.txt || fail "info tmajor"
grep -q 'more heads than tokens.*layout = "thd"' err.txt || fail "info: no layout warning"
"$MOBA" info d.h5 >/dev/null 2>err.txt && [ ! -s err.txt ] || fail "info warns on a plain dump"
echo "PASS"
