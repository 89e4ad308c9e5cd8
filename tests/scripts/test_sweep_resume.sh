#!/usr/bin/env bash
# moba sweep crash safety: kill -9 at several moments (during hashing, mid-job, between
# jobs), then --resume, gives a sweep.csv byte-equal to an uninterrupted run's (no lost,
# duplicated or half-written rows); the killed analyze child dies with the sweep. Ctrl-C
# (SIGINT) stops the running job, keeps done ones, says how to resume and exits 130.
# --resume with a different config is refused (exit 2), as is a second sweep in a DIR that
# one is running in.
# usage: test_sweep_resume.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"

"$MOBA" sweep sweep.toml --out REF --quiet || fail "reference sweep failed"
n_jobs=$(($(wc -l < REF/jobs.tsv) - 1))

# Kill -9 at several moments, whatever the machine's speed: right after start (hashing), and
# once N jobs are done plus a short delay (mid-job or between jobs). Each round resumes the
# same DIR and is killed again.
killed_mid=0
for spec in 0:0.02 1:0 3:0.05 6:0.02 9:0.1 10:0; do
  want=${spec%%:*} extra=${spec#*:}
  flag=""; [ -d K ] && flag=--resume
  "$MOBA" sweep sweep.toml --out K $flag --quiet 2>/dev/null &
  pid=$!
  if [ "$want" = 0 ]; then sleep "$extra"; else
    for _ in $(seq 3000); do [ "$(count_done K)" -ge "$want" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.01; done
    sleep "$extra"
  fi
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  # The running analyze child dies with its sweep (PR_SET_PDEATHSIG), at once.
  sleep 0.05
  for p in $(pgrep -f -- "analyze .*--out K/jobs/" || true); do
    if [ "$(readlink /proc/$p/cwd 2>/dev/null)" = "$(pwd -P)" ]; then fail "an analyze child ($p) outlived the killed sweep"; fi
  done
  done_now=$(count_done K)
  echo "kill -9 once $want jobs were done (+${extra}s): $done_now of $n_jobs jobs done"
  [ "$done_now" -lt "$n_jobs" ] && [ "$done_now" -gt 0 ] && killed_mid=1
  # sweep.csv, when present, only ever holds whole done jobs: a subset of REF's rows, no repeats.
  if [ -s K/sweep.csv ]; then
    $PY - K/sweep.csv REF/sweep.csv <<'PY' || fail "a killed sweep left a sweep.csv that is not a subset of the reference"
import sys
a = open(sys.argv[1]).read().splitlines(); b = set(open(sys.argv[2]).read().splitlines())
assert all(l in b for l in a) and len(a) == len(set(a)), "partial or duplicated rows"
PY
  fi
done
[ $killed_mid = 1 ] || fail "no kill landed between the first and the last job"
"$MOBA" sweep sweep.toml --out K --resume 2>err.txt || { cat err.txt; fail "--resume failed"; }
csv_equal REF/sweep.csv K/sweep.csv
[ "$(count_done K)" = "$n_jobs" ] || fail "not every job is done after --resume"
ls K/jobs | grep -q '\.partial\|\.old-' && fail "analyze temporaries left in K/jobs"
grep -q "done already" err.txt || fail "--resume did not skip done jobs"
echo "kill -9 + --resume: sweep.csv byte-equal to the uninterrupted run"

# A done job whose marker names another hash (a changed config) is rerun, not trusted.
rm -rf R2 && cp -r REF R2
id=$(sed -n 2p R2/jobs.tsv | cut -f2)
echo deadbeef > R2/jobs/$id/DONE
"$MOBA" sweep sweep.toml --out R2 --resume 2>err.txt || fail "resume after a foreign marker failed"
grep -q "\[1/$n_jobs\] $id stories\|\[1/$n_jobs\] $id s" err.txt && ! grep -q "$id done already" err.txt \
  || fail "a job with a foreign DONE marker was skipped: $(head -3 err.txt)"
csv_equal REF/sweep.csv R2/sweep.csv

# SIGINT: forwarded to the running analyze, done jobs kept, exit 130 with a resume hint.
rm -rf I
"$MOBA" sweep sweep.toml --out I 2>err.txt &
pid=$!
for _ in $(seq 200); do [ "$(count_done I)" -gt 0 ] && break; sleep 0.05; done
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[ $rc = 130 ] || { cat err.txt; fail "SIGINT: exit $rc, want 130"; }
grep -q -- "--out I --resume" err.txt || fail "SIGINT: no resume hint: $(cat err.txt)"
grep -q '"status": "interrupted"' I/provenance.json || fail "provenance does not say interrupted"
"$MOBA" sweep sweep.toml --out I --resume --quiet || fail "resume after SIGINT failed"
csv_equal REF/sweep.csv I/sweep.csv
echo "SIGINT -> exit 130, resume hint, then --resume equal"

# --resume with another config is refused.
sed 's/top_k = \[2, 3\]/top_k = [2]/' sweep.toml > other.toml
expect_exit2 "different configuration" "$MOBA" sweep other.toml --out K --resume

# A second sweep in a DIR that a running one holds (flock(1) holds its lock here) is refused,
# with or without --resume, and leaves the files as they were.
before=$(ls -lR K | md5sum)
expect_exit2 "another moba sweep is running in it" flock K "$MOBA" sweep sweep.toml --out K --resume
expect_exit2 "another moba sweep is running in it" flock K "$MOBA" sweep sweep.toml --out K --shard 0/2 --resume
[ "$(ls -lR K | md5sum)" = "$before" ] || fail "a refused sweep changed K"
echo "PASS"
