#!/usr/bin/env bash
# `moba plot DIR` (docs/plots.md) on an analyze output and on a sweep-shaped directory built by
# plot_fake_sweep.py from analyze runs: every figure exists as PNG and SVG, index.html shows
# each and is self-contained, a re-run gives identical bytes, and bad input exits 2.
# Skipped (77) when Debian's python3-matplotlib is not installed.
source "$(dirname "${BASH_SOURCE[0]}")/io_common.sh"
PLOT_PY="${MOBA_PYTHON:-/usr/bin/python3}"
if ! "$PLOT_PY" -c "import matplotlib" 2>/dev/null; then
  echo "SKIP: $PLOT_PY has no matplotlib (apt-get install python3-matplotlib)"
  exit 77
fi
DUMP="$HERE/../../experiments/data/stories15M_tinystory_256.h5"
FIGURES=(coverage_vs_B snr_vs_B pfail_calibration kl_by_position output_err_by_position heatmap_layer_head sparsity)

# check_dir DIR STEM...: every figure of every dump stem exists as non-empty PNG and SVG and is
# linked from index.html, which loads nothing from outside DIR.
check_dir() {
  local dir="$1"; shift
  [ -s "$dir/index.html" ] || fail "$dir/index.html missing"
  for stem in "$@"; do
    for fig in "${FIGURES[@]}"; do
      for ext in png svg; do
        [ -s "$dir/plots/$stem-$fig.$ext" ] || fail "$dir/plots/$stem-$fig.$ext missing"
        grep -q "plots/$stem-$fig.$ext" "$dir/index.html" || fail "index.html does not reference plots/$stem-$fig.$ext"
      done
    done
  done
  if grep -Eiq '<script|<link|src="(https?:)?//|href="(https?:)?//' "$dir/index.html"; then
    fail "$dir/index.html refers to something outside the directory"
  fi
  grep -q "<table>" "$dir/index.html" || fail "$dir/index.html has no table"
  if grep -q "<dc:date>" "$dir"/plots/*.svg; then fail "an SVG carries a date"; fi
}

digest() { (cd "$1" && sha256sum index.html plots/*) ; }

# 1. One analyze output (three routers, top-k budgets).
"$MOBA" analyze "$DUMP" --layers 0,3 --block-sizes 16,32,64 --top-k 2,4 --routers moba,oracle,moba-kconv \
  --out "$WORK/an" --quiet > /dev/null
"$MOBA" plot "$WORK/an" > "$WORK/an.out" || fail "moba plot on an analyze output exited $?"
grep -q "wrote 7 figures" "$WORK/an.out" || fail "unexpected output: $(cat "$WORK/an.out")"
check_dir "$WORK/an" stories15M_tinystory_256
digest "$WORK/an" > "$WORK/an.sha1"
"$MOBA" plot "$WORK/an" > /dev/null
digest "$WORK/an" > "$WORK/an.sha2"
cmp -s "$WORK/an.sha1" "$WORK/an.sha2" || fail "a second moba plot wrote different bytes: $(diff "$WORK/an.sha1" "$WORK/an.sha2")"
grep -q "$(sha256sum "$DUMP" | cut -c1-12)" "$WORK/an/index.html" || fail "index.html lacks the dump's recorded sha256"
# The footer names the dump as the run recorded it (run.json input.sha256), not the file now at
# that path, nor nothing when the plot runs elsewhere.
cp "$DUMP" "$WORK/moved.h5"
"$MOBA" analyze "$WORK/moved.h5" --layers 0 --block-sizes 16 --top-k 2 --out "$WORK/mv" --quiet > /dev/null
printf 'not the dump any more\n' > "$WORK/moved.h5"
(cd / && "$MOBA" plot "$WORK/mv" > /dev/null) || fail "moba plot from another directory exited $?"
grep -q "$(sha256sum "$DUMP" | cut -c1-64)" "$WORK/mv/index.html" ||
  fail "index.html does not carry the recorded sha256"

# 2. A sweep-shaped directory: sweep.csv with budget columns, jobs/*/buckets.csv, provenance.json.
"$PY" "$HERE/plot_fake_sweep.py" "$MOBA" "$WORK/sw" "$DUMP" --layers 0,1,5 2> /dev/null || fail "plot_fake_sweep.py failed"
"$MOBA" plot "$WORK/sw" > /dev/null || fail "moba plot on a sweep directory exited $?"
check_dir "$WORK/sw" stories15M_tinystory_256
sha="$(sha256sum "$DUMP" | cut -c1-64)"
grep -q "$sha" "$WORK/sw/index.html" || fail "sweep index.html does not name the dump's sha256"
grep -q "nominal sparsity s = 0.75" "$WORK/sw/index.html" || fail "sweep index.html lacks the sparsity budget rows"

# 3. Head rows only (no scope=layer/overall rows) and no job directories: still every figure
#    but the bucket ones, which are left out with a note.
mkdir -p "$WORK/sw_heads"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "scope") c = i } NR == 1 || $c == "head"' \
  "$WORK/sw/sweep.csv" > "$WORK/sw_heads/sweep.csv"
grep -q ',overall,' "$WORK/sw_heads/sweep.csv" && fail "awk left overall rows in"
"$MOBA" plot "$WORK/sw_heads" > /dev/null || fail "moba plot on a head-only sweep exited $?"
grep -q "buckets.csv found" "$WORK/sw_heads/index.html" || fail "no note about the missing buckets.csv"
for fig in coverage_vs_B snr_vs_B pfail_calibration heatmap_layer_head sparsity; do
  [ -s "$WORK/sw_heads/plots/stories15M_tinystory_256-$fig.png" ] || fail "head-only sweep: $fig missing"
done

# 3b. One budget and one block size (figures of one panel) of a dump with a long name: the
#     titles and footers that do not fit the figure's width are wrapped onto more lines (the
#     plot warns of any line still wider than the figure), and the bytes stay deterministic.
LONG="$WORK/a_layer_dump_with_a_long_descriptive_file_name_as_users_write_them.h5"
cp "$DUMP" "$LONG"
"$MOBA" analyze "$LONG" --layers 0 --block-sizes 16 --top-k 4 --routers moba,oracle --out "$WORK/narrow" --quiet \
  > /dev/null
"$MOBA" plot "$WORK/narrow" > /dev/null 2> "$WORK/narrow.err" || fail "moba plot of one panel exited $?"
if grep -q "wider than the figure" "$WORK/narrow.err"; then fail "a line left wider than the figure: $(cat "$WORK/narrow.err")"; fi
digest "$WORK/narrow" > "$WORK/narrow.sha1"
"$MOBA" plot "$WORK/narrow" > /dev/null 2>&1
digest "$WORK/narrow" > "$WORK/narrow.sha2"
cmp -s "$WORK/narrow.sha1" "$WORK/narrow.sha2" || fail "a wrapped title changed bytes between runs"

# 3c. A run.json that is not JSON: the figures are still drawn (budgets from the tables), and
#     the note that says so is on stderr as well as on the page.
cp -r "$WORK/narrow" "$WORK/badrun"
printf '{' > "$WORK/badrun/run.json"
"$MOBA" plot "$WORK/badrun" > /dev/null 2> "$WORK/badrun.err" || fail "moba plot with a broken run.json exited $?"
grep -q "note: run.json unreadable (not valid JSON)" "$WORK/badrun.err" || fail "no note on stderr: $(cat "$WORK/badrun.err")"
grep -q "run.json unreadable" "$WORK/badrun/index.html" || fail "index.html lacks the run.json note"

# 4. Bad input exits 2 with a message; matplotlib missing exits 2 with the install hint.
expect_exit2 "no such directory" "$MOBA" plot "$WORK/does-not-exist"
mkdir -p "$WORK/empty"
expect_exit2 "no results here" "$MOBA" plot "$WORK/empty"
expect_exit2 "takes one directory" "$MOBA" plot
# A truncated or corrupt table exits 2, naming the file and the line.
cp -r "$WORK/an" "$WORK/an_cut"
head -c 5000 "$WORK/an/aggregate.csv" > "$WORK/an_cut/aggregate.csv"
expect_exit2 "aggregate.csv: .*truncated" "$MOBA" plot "$WORK/an_cut"
cp -r "$WORK/an" "$WORK/an_bad"
awk -F, -v OFS=, 'NR == 3 { $NF = "garbage" } { print }' "$WORK/an/aggregate.csv" > "$WORK/an_bad/aggregate.csv"
expect_exit2 "aggregate.csv: line 3, column .*'garbage' is not a number" "$MOBA" plot "$WORK/an_bad"
printf '#!/bin/sh\nPYTHONHASHSEED=0 exec %s -S "$@"\n' "$PLOT_PY" > "$WORK/nosite-python"
chmod +x "$WORK/nosite-python"
MOBA_PYTHON="$WORK/nosite-python" expect_exit2 "python3-matplotlib" "$MOBA" plot "$WORK/an"
echo "PASS"
