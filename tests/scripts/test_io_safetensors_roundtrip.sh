#!/usr/bin/env bash
# safetensors written by a hand-written Python writer (struct + json, the published format)
# in F32, F16 and BF16 read back exactly through `moba convert --dtype f32`.
source "$(dirname "$0")/io_common.sh"
for dtype in F32 F16 BF16; do
  src="$WORK/dump_${dtype}.safetensors"
  "$PY" "$HERE/io_dumps.py" write-st "$src" --dtype "$dtype" --seed 3
  "$MOBA" info "$src" --json > "$WORK/info.json" || fail "moba info $src"
  "$PY" "$HERE/io_dumps.py" check-info "$WORK/info.json" "$src"
  grep -q '"format": "safetensors"' "$WORK/info.json" || fail "format not reported"
  "$MOBA" convert "$src" --out "$WORK/conv.h5" --dtype f32 --quiet || fail "moba convert $src"
  echo -n "$dtype: "
  "$PY" "$HERE/io_dumps.py" compare "$src" "$WORK/conv.h5"
done
echo "PASS"
