#!/usr/bin/env bash
# `moba analyze` on a 64K-token single-head synth dump at B in {32, 64, 128} (issue 3
# acceptance): peak RSS well under 1 GB — nothing T x T or T x n_blocks is ever held, only
# the head's q/k/v slices (3 x 16 MiB), o_full, per-configuration selections and
# per-position arrays, and one query chunk's block masses. Prints the wall time.
# Slow (about half a minute of dense pass on 2 cores): runs only with MOBA_SLOW_TESTS=1.
source "$(dirname "$0")/io_common.sh"
if [ "${MOBA_SLOW_TESTS:-0}" != 1 ]; then echo "SKIP: set MOBA_SLOW_TESTS=1 to run"; exit 77; fi
[ -x /usr/bin/time ] || fail "/usr/bin/time is missing (apt-get install time)"
cd "$WORK"
"$MOBA" synth --out s64k.h5 --tokens 65536 --heads 1 --kv-heads 1 --seed 5 --quiet
/usr/bin/time -v "$MOBA" analyze s64k.h5 --block-sizes 32,64,128 --top-k 8 --routers moba,oracle --out A --quiet \
  > table.txt 2> time.txt || { cat time.txt; fail "analyze failed"; }
cat table.txt
peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' time.txt)
wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' time.txt)
user=$(awk -F: '/User time/ {gsub(/ /, "", $2); print $2}' time.txt)
echo "64K tokens x 1 head, B in {32,64,128}, k 8, routers moba+oracle: peak RSS ${peak_kib} KiB, wall ${wall}, user ${user} s"
[ "$peak_kib" -le $((400 * 1024)) ] || fail "peak RSS ${peak_kib} KiB > 400 MiB"
[ "$(tail -n +2 A/summary.csv | wc -l)" = 6 ] || fail "summary.csv rows"
echo "PASS"
