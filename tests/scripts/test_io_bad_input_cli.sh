#!/usr/bin/env bash
# Every bad-input class through the CLI: `moba info` and `moba convert` exit 2 with a
# message naming the file and the field, and convert leaves no output (nor temp) file.
source "$(dirname "$0")/io_common.sh"
mkdir -p "$WORK/bad" "$WORK/out"
"$PY" "$HERE/io_dumps.py" write-bad "$WORK/bad" > "$WORK/cases.txt"
echo "$WORK/bad/does_not_exist.h5 No such file" >> "$WORK/cases.txt"
n=0
while read -r file field; do
  for cmd in info convert; do
    args=("$file")
    [ "$cmd" = info ] && args+=(--check)
    [ "$cmd" = convert ] && args+=(--out "$WORK/out/converted.h5" --quiet)
    expect_exit2 "" "$MOBA" "$cmd" "${args[@]}"
    msg="$(cat "$EXIT2")"
    grep -qF "$file" "$EXIT2" || fail "moba $cmd $file: message does not name the file: $msg"
    grep -qF "$field" "$EXIT2" || fail "moba $cmd $file: message does not name '$field': $msg"
    [ -z "$(ls -A "$WORK/out")" ] || fail "moba $cmd $file left $(ls -A "$WORK/out") behind"
  done
  echo "ok  $(basename "$file"): $msg"
  n=$((n + 1))
done < "$WORK/cases.txt"
[ "$n" -ge 15 ] || fail "only $n cases"
# Usage errors are exit 2 too, and write nothing.
expect_exit2 "--out" "$MOBA" convert "$WORK/bad/nan.h5"
echo "PASS ($n bad inputs)"
