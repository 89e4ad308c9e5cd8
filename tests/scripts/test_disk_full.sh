#!/usr/bin/env bash
# A full disk (docs/cli.md "Exit codes", "Atomic outputs"), made with a file size limit
# (`ulimit -f`, SIGXFSZ ignored, so a write past the limit fails with EFBIG as on a full disk):
# synth, convert, route, analyze and fit exit 2 with a message naming the file, do not crash
# (HDF5's clean-up after a failed close crashed at exit: 139), and leave nothing behind; fit's
# files are a set (a failure on one leaves none of them).
source "$(dirname "${BASH_SOURCE[0]}")/io_common.sh"
cd "$WORK"
"$MOBA" synth --out s.h5 --seed 1 --tokens 512 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --quiet > /dev/null
# full KIB COMMAND...: COMMAND with files limited to KIB KiB; wants exit 2 and "disk full" or
# "cannot write" on stderr, and nothing in the directory but s.h5 afterwards.
full() {
  local kib="$1" rc=0
  shift
  (trap '' XFSZ; ulimit -f "$kib"; exec "$MOBA" "$@") > out.txt 2> err.txt || rc=$?
  [ "$rc" = 2 ] || fail "exit $rc, wanted 2 with files limited to $kib KiB: $* ($(cat err.txt))"
  grep -Eq "write failed \(disk full\?\)|cannot write .*(too large|No space)" err.txt ||
    fail "no disk-full message: $* ($(cat err.txt))"
  local left
  left="$(ls -A | grep -v -x -e s.h5 -e out.txt -e err.txt || true)"
  [ -z "$left" ] || fail "left behind after $*: $left"
}
full 150 synth --out x.h5 --seed 1 --tokens 512 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --quiet
full 150 convert s.h5 --out x.h5 --quiet
full 150 route s.h5 --layer 0 --block-size 16 --top-k 4 --with-output --out x.h5 --quiet
full 150 analyze s.h5 --block-sizes 16,32 --top-k 2,4 --positions all --out an --quiet
# fit's table and budget files: the JSON table is the largest; a limit between the sizes of
# the others and its own fails on it after the CSV would have been written.
"$MOBA" fit s.h5 --block-sizes 16,32 --target coverage=0.9 --out fit --quiet > /dev/null
json_kib=$(( $(stat -c %s fit.json) / 1024 ))
max_other=0
for f in fit.csv fit.k_B16.json fit.k_B32.json fit.density_B16.json fit.density_B32.json; do
  [ "$(stat -c %s "$f")" -gt "$max_other" ] && max_other=$(stat -c %s "$f")
done
[ "$json_kib" -ge 1 ] && [ "$max_other" -le $(( json_kib * 1024 )) ] ||
  fail "fit.json ($(stat -c %s fit.json) bytes) is not the one file above a whole KiB the others stay under"
rm -f fit.*
full "$json_kib" fit s.h5 --block-sizes 16,32 --target coverage=0.9 --out fit --quiet
echo "PASS"
