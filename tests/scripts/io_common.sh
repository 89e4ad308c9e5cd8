# Sourced by the script tests (tests/scripts/test_*.sh, tests/model/*.sh): arguments, a scratch directory and a Python with
# numpy + h5py (Debian's /usr/bin/python3 first: a pyenv python3 on PATH may lack them).
set -euo pipefail
MOBA="${1:?usage: $0 MOBA_BINARY WORKDIR}"
WORK="${2:?usage: $0 MOBA_BINARY WORKDIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$WORK" && mkdir -p "$WORK"
PY=""
for candidate in "${MOBA_PYTHON:-}" /usr/bin/python3 python3; do
  if [ -n "$candidate" ] && "$candidate" -c "import numpy, h5py" 2>/dev/null; then PY="$candidate"; break; fi
done
if [ -z "$PY" ]; then echo "FAIL: no python3 with numpy and h5py (install python3-numpy python3-h5py)"; exit 1; fi
fail() { echo "FAIL: $*"; exit 1; }
# expect_exit2 WANT COMMAND...: COMMAND must exit 2 (bad input or usage) with WANT (a grep pattern;
# "" for any message) in what it writes to stderr. Its stderr is kept in $EXIT2 for further checks
# (its stdout in $EXIT2.stdout).
EXIT2="$WORK/exit2.txt"
expect_exit2() {
  local want="$1" rc=0
  shift
  "$@" > "$EXIT2.stdout" 2> "$EXIT2" || rc=$?
  [ "$rc" = 2 ] || fail "exit $rc, wanted 2: $* ($(cat "$EXIT2"))"
  [ -z "$want" ] || grep -q -- "$want" "$EXIT2" || fail "stderr lacks '$want': $* ($(cat "$EXIT2"))"
}
# The GUI script tests: exit 77 (skipped) without a GUI build or an X server xvfb-run can start.
skip_without_gui() {
  local probe
  probe="$("$MOBA" gui . 2>&1 || true)"
  if grep -q "this build has no GUI" <<< "$probe"; then
    echo "SKIP: this build has no GUI"; exit 77
  fi
  command -v xvfb-run > /dev/null || { echo "SKIP: xvfb-run not installed"; exit 77; }
  xvfb-run -a -s "-screen 0 800x600x24" true 2> /dev/null || { echo "SKIP: cannot start Xvfb"; exit 77; }
  # Under the sanitizer build: Mesa's software driver leaves 112 bytes that LeakSanitizer reports
  # at exit, allocated inside the driver after it is dlclosed, so no suppression can name them.
  # These scripts run without leak checks; the viewer's own data (tests/gui) is checked with them.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
}
