#!/usr/bin/env bash
# Dumps written by h5py (schema v1: f32, f16, bf16 as uint16, and the thd layout, with GQA,
# chunked and contiguous datasets) read back exactly: `moba info --json` reports the
# shapes, and `moba convert --dtype f32` re-writes values that numpy finds bit-identical
# to the independently decoded originals.
source "$(dirname "$0")/io_common.sh"
for dtype in f32 f16 bf16; do
  for layout in htd thd; do
    src="$WORK/h5py_${dtype}_${layout}.h5"
    "$PY" "$HERE/io_dumps.py" write-h5 "$src" --dtype "$dtype" --layout "$layout" --seed 7
    "$MOBA" info "$src" --json > "$WORK/info.json" || fail "moba info $src"
    "$PY" "$HERE/io_dumps.py" check-info "$WORK/info.json" "$src"
    "$MOBA" info "$src" --check > /dev/null || fail "moba info --check $src"
    "$MOBA" convert "$src" --out "$WORK/conv.h5" --dtype f32 --quiet || fail "moba convert $src"
    echo -n "$dtype $layout: "
    "$PY" "$HERE/io_dumps.py" compare "$src" "$WORK/conv.h5"
  done
done
grep -q '"dtype": "bfloat16"' <("$MOBA" info "$WORK/h5py_bf16_thd.h5" --json) || fail "bf16 not reported"
echo "PASS"
