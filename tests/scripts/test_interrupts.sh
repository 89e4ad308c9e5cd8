#!/usr/bin/env bash
# Ctrl-C / SIGTERM during the writing commands (analyze, synth, route, sweep) at several points:
# exit 130 / 143 (or 0 when the command finished first), no temporary file left anywhere,
# an output either absent or complete; analyze keeps finished layers' tables only in
# DIR.partial and says so. Stale temporaries of dead processes are removed by the next run.
# (Delays start at 0.5 s: a signal before main() installs the handlers ends the process
# silently, as it should, with nothing written.)
# usage: test_interrupts.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"
"$MOBA" synth --out d.h5 --tokens 4096 --layers 3 --heads 4 --kv-heads 2 --head-dim 32 --seed 1 --quiet >/dev/null

no_temporaries() {
  local left
  left=$(find . -name '*.tmp-*' -o -name '*.tmp' -o -name '*.old-*')
  [ -z "$left" ] || fail "temporaries left after $1: $left"
}
# interrupt SIGNAL DELAY EXPECTED-RC COMMAND...: runs COMMAND and, unless it has finished
# within DELAY seconds, delivers SIGNAL as `timeout -s SIGNAL DELAY` does: to the command, then
# to its process group (a sweep's analyze child gets it too, as from Ctrl-C). Not `timeout`
# itself: it follows the signal with a SIGCONT, and under the sanitizer build a SIGCONT that
# lands while LeakSanitizer's exit-time check is stopping the threads (ptrace attach, i.e. a
# SIGSTOP) cancels that SIGSTOP: the process and LSan's tracer then wait for each other for
# ever (seen: moba route finishing just as the SIGINT came, hung until sent a SIGSTOP by hand).
interrupt() {
  local sig=$1 delay=$2 want=$3; shift 3
  local pid sleeper first
  set +e
  setsid -w "$@" >/dev/null 2>err.txt &  # its own process group, pgid = pid
  pid=$!
  sleep "$delay" &
  sleeper=$!
  wait -n -p first "$pid" "$sleeper"; rc=$?
  if [ "$first" = "$sleeper" ]; then
    kill -s "$sig" "$pid" 2>/dev/null; kill -s "$sig" -- "-$pid" 2>/dev/null
    wait "$pid"; rc=$?
  else
    kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null
  fi
  set -e
  [ $rc = 0 ] || [ $rc = "$want" ] || { cat err.txt; fail "exit $rc after SIG$sig at ${delay}s: $*"; }
  [ $rc = 0 ] || grep -q "interrupted (SIG$sig)" err.txt || fail "no 'interrupted' message: $(cat err.txt)"
  no_temporaries "SIG$sig at ${delay}s: $*"
  echo "SIG$sig at ${delay}s -> exit $rc: $*"
}

for delay in 0.6 1.5 3 6; do
  rm -rf A A.partial
  interrupt INT $delay 130 "$MOBA" analyze d.h5 --block-sizes 16,64 --top-k 2,4 --out A --quiet
  if [ $rc = 0 ]; then
    [ -s A/run.json ] || fail "analyze finished without run.json"
  else
    [ ! -e A ] || fail "A appeared although analyze was interrupted"
    if [ -e A.partial ]; then
      [ -s A.partial/summary.csv ] || fail "A.partial kept without finished tables"
      grep -q "kept in A.partial" err.txt || fail "A.partial kept silently"
    fi
  fi
done
for delay in 0.5 1.5; do
  rm -f s.h5
  interrupt TERM $delay 143 "$MOBA" synth --out s.h5 --tokens 32768 --layers 3 --heads 8 --kv-heads 8 --head-dim 64 --seed 2 --quiet
  [ $rc = 0 ] && { "$MOBA" info s.h5 --check >/dev/null || fail "synth finished with a bad file"; }
  [ $rc = 0 ] || [ ! -e s.h5 ] || fail "s.h5 appeared although synth was interrupted"
  rm -f r.h5
  interrupt INT $delay 130 "$MOBA" route d.h5 --layer 1 --block-size 16 --top-k 4 --with-output --out r.h5 --quiet
  [ $rc = 0 ] || [ ! -e r.h5 ] || fail "r.h5 appeared although route was interrupted"
done

# sweep: the signal reaches the running analyze child too; finished jobs stay, --resume
# completes the run.
cat > sweep.toml <<TOML
dumps = ["d.h5"]
layers = [[0], [1], [2]]
block_sizes = [16, 64]
[budget]
top_k = [2, 4]
TOML
for delay in 0.6 2; do
  rm -rf S
  interrupt INT $delay 130 "$MOBA" sweep sweep.toml --out S --quiet
  if [ $rc = 130 ]; then
    grep -q -- "--resume" err.txt || fail "sweep: no resume hint: $(cat err.txt)"
    "$MOBA" sweep sweep.toml --out S --resume --quiet >/dev/null 2>&1 || fail "sweep --resume after SIGINT"
    no_temporaries "sweep --resume"
  fi
  [ -s S/sweep.csv ] || fail "sweep.csv missing after SIGINT at ${delay}s (+ resume)"
done

# A temporary of a process that no longer runs goes; one of a live process stays.
dead=$(sh -c 'echo $$')
touch "s.h5.tmp-$dead-0" "s.h5.tmp-$$-0"
"$MOBA" synth --out s.h5 --tokens 256 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --seed 3 --quiet >/dev/null
[ ! -e "s.h5.tmp-$dead-0" ] || fail "stale temporary of dead pid $dead not removed"
[ -e "s.h5.tmp-$$-0" ] || fail "temporary of a live process removed"
rm -f "s.h5.tmp-$$-0"
echo "PASS"
