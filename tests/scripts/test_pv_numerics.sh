#!/usr/bin/env bash
# experiments/scripts/pv_numerics.py (the P V precision study of kernels/cuda/NOTES.md, fifty-second
# session) on the shipped real bf16 dump: the three products rank as the study records (split P
# ~1e-6, fp16 P and V ~1e-4, bf16 P ~1e-3 row-relative), and bad input exits 2 naming the file.
# usage: test_pv_numerics.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
DUMP="$HERE/../../experiments/data/stories15M_genesis_1024.h5"
STUDY="$HERE/../../experiments/scripts/pv_numerics.py"
cd "$WORK"

"$PY" "$STUDY" "$DUMP" --layers 0 --heads 0,3 --rows 24 > out.txt || fail "pv_numerics.py failed"
cat out.txt
"$PY" - <<'PYEOF' || fail "the three products do not rank as recorded"
import re
worst = {}
for line in open("out.txt"):
    m = re.search(r"(split|fp16|bf16)\s+row-rel error median (\S+)\s+p99 \S+\s+max (\S+)", line)
    if m:
        worst[m.group(1)] = max(worst.get(m.group(1), 0.0), float(m.group(3)))
assert set(worst) == {"split", "fp16", "bf16"}, worst
assert 0 < worst["split"] < 1e-5, worst       # today's exact mode on bf16 dumps
assert 1e-5 < worst["fp16"] < 1e-3, worst     # fp16 P and V: inside the 16-bit target (2e-3)
assert 5e-4 < worst["bf16"] < 5e-3, worst     # the fast mode
assert worst["fp16"] > 10 * worst["split"] and worst["bf16"] > 3 * worst["fp16"], worst
PYEOF

expect2() {  # what-the-message-names args...
  local want=$1; shift
  expect_exit2 "$want" "$PY" "$STUDY" "$@"
}
expect2 "missing.h5" missing.h5
echo "not hdf5" > garbage.h5
expect2 "garbage.h5: cannot open as HDF5" garbage.h5
expect2 "asked for head 6" "$DUMP" --heads 6
expect2 "/layers/9/q" "$DUMP" --layers 9
"$MOBA" synth --out f16.h5 --tokens 256 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --dtype f16 --seed 1 --quiet > /dev/null
expect2 "/layers/0/q is not bf16" f16.h5
expect2 "fraction" "$DUMP" --fraction 0
echo "pv_numerics: OK"
