#!/usr/bin/env bash
# Peak RSS when reading one head of a 128K-token, 16-head, head-dim-128 bf16 dump (1.5 GiB
# of q/k/v on disk, HDF5 and safetensors) must be bounded by that head's slice, not the
# file: `moba info --check --layer 0 --tensor q --head 3` holds one [n_tokens, head_dim]
# float32 slice (64 MiB). Measured with /usr/bin/time -v against a metadata-only baseline.
# Slow (writes 3 GiB): runs only with MOBA_SLOW_TESTS=1; MOBA_RSS_DIR keeps the dumps.
source "$(dirname "$0")/io_common.sh"
if [ "${MOBA_SLOW_TESTS:-0}" != 1 ]; then echo "SKIP: set MOBA_SLOW_TESTS=1 to run"; exit 77; fi
[ -x /usr/bin/time ] || fail "/usr/bin/time is missing (apt-get install time)"
T=131072 H=16 D=128
DIR="${MOBA_RSS_DIR:-$WORK}"
mkdir -p "$DIR"
slice_kib=$((T * D * 4 / 1024))
peak_kib() { /usr/bin/time -v "$@" 2> "$WORK/time.txt" > "$WORK/stdout.txt" || { cat "$WORK/time.txt"; fail "$*"; }
             awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt"; }
for ext in h5 safetensors; do
  dump="$DIR/big_${T}x${H}x${D}_bf16.$ext"
  [ -s "$dump" ] || "$PY" "$HERE/io_dumps.py" write-big "$dump" --tokens $T --heads $H --head-dim $D
  file_kib=$(( $(stat -c %s "$dump") / 1024 ))
  base=$(peak_kib "$MOBA" info "$dump")
  peak=$(peak_kib "$MOBA" info "$dump" --check --layer 0 --tensor q --head 3)
  grep -E "^  0 +q +3 " "$WORK/stdout.txt" || fail "no stats line for head 3"
  delta=$((peak - base))
  echo "$ext: file ${file_kib} KiB, one head's float32 slice ${slice_kib} KiB; peak RSS: metadata only ${base} KiB, reading the head ${peak} KiB (+${delta} KiB)"
  limit=$((slice_kib * 5 / 4 + 16384))  # the slice, plus staging and allocator slack
  [ "$delta" -le "$limit" ] || fail "$ext: reading one head grew RSS by ${delta} KiB > ${limit} KiB"
  [ "$peak" -le $((file_kib / 4)) ] || fail "$ext: peak RSS ${peak} KiB is not small next to the file (${file_kib} KiB)"
done
echo "PASS"
