#!/usr/bin/env bash
# tests/gpu/kernel_trace_sum.py on a hand-made kernel trace (no GPU needed): the span, the fair
# shares, and what --alone adds (each kernel's time with nothing beside it; the shares of the
# time in which no attention kernel runs; the attention's waits), against values worked out by
# hand below.
# usage: test_kernel_trace_sum.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"
# us:   0    50   100  150  200 220 250 260 270   300
# attn  [=========)
# err        [=========)
# rows                      [=======)                (two instances)
# rows                          [========)
# dense                                 [=========)
"$PY" - <<'PYEOF'
import json
ev = [("moba_attention_kernel<128, 4>", 0, 100), ("band_errors_kernel", 50, 100),
      ("warp_row_kernel<4, 8, 8>", 200, 50), ("warp_row_kernel<4, 8, 8>", 220, 50), ("dense_pass_kernel<128>", 260, 40)]
json.dump({"traceEvents": [{"ph": "X", "name": n, "ts": s, "dur": d, "tid": i} for i, (n, s, d) in enumerate(ev)]},
          open("k.json", "w"))
PYEOF
"$PY" "$HERE/../gpu/kernel_trace_sum.py" k.json --alone > out.txt || fail "kernel_trace_sum.py failed"
cat out.txt
"$PY" - <<'PYEOF' || fail "kernel_trace_sum.py --alone: wrong numbers"
import re
text = open("out.txt").read()
assert "span 0.3 ms, busy 0.2 ms (83 %)" in text, text
def table(title):
    part = text.split(title, 1)[1].splitlines()[1:]
    rows = {}
    for line in part:
        m = re.match(r"\s+(\S+)\s+([\d.]+) ms$", line)
        if not m:
            break
        rows[m.group(1)] = float(m.group(2))
    return rows
# Alone: attention 0-50, errors 100-150, rows 200-260 (both instances count as one kernel), dense 270-300.
assert table("alone:") == {"warp_row_kernel": 0.06, "moba_attention_kernel": 0.05, "band_errors_kernel": 0.05,
                           "dense_pass_kernel": 0.03}, table("alone:")
# No attention: 100-150 and 200-300 (150 of 250 us busy); rows 20 + 30 + 10 + 5 = 65, dense 5 + 30 = 35.
assert "no attention kernel running: 0.1 ms (60.0 % of the busy time)" in text, text
# One wait between attention kernels: 100-300 us (the last attention kernel ends at 100).
assert "attention waits (no attention kernel between two, idle time included): 1, median 0.20 ms, " \
       "the longest 0.20 ms; 0 of at least 10 ms, 0.0 ms in all" in text, text
got = table("fair shares inside it:")
assert got == {"warp_row_kernel": round(0.065, 2), "band_errors_kernel": 0.05, "dense_pass_kernel": round(0.035, 2)}, got
PYEOF
# The options parse in any order, and a missing trace or a bad value is a usage error.
"$PY" "$HERE/../gpu/kernel_trace_sum.py" --gaps 0.07 k.json --templates > out2.txt \
  || fail "kernel_trace_sum.py --gaps MS before the trace, --templates: failed"
grep -q "warp_row_kernel<4, 8, 8>" out2.txt || fail "kernel_trace_sum.py --templates: no instance row"
expect_exit2 "required: GPU.json" "$PY" "$HERE/../gpu/kernel_trace_sum.py" --alone
expect_exit2 "--gaps: invalid float" "$PY" "$HERE/../gpu/kernel_trace_sum.py" k.json --gaps x
echo "PASS"
