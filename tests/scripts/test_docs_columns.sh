#!/usr/bin/env bash
# The users' documentation keeps up with the outputs: every column header of summary.csv,
# aggregate.csv and buckets.csv, every key of summary.json and run.json, and (with h5py) every
# dataset and attribute name of analysis.h5, written by `moba analyze` on the shipped 256-token
# dump (routers moba, oracle, moba-kconv) and on a small synth dump, must appear in
# docs/metrics.md as `name` (in backticks). And the user-facing text (README.md, docs/,
# experiments/dump/README.md) never points outside the repository: no ../shared, DESIGN.md or
# PERF.md, and every relative Markdown link resolves to a file inside the repository (and to
# an existing heading when it has an #anchor).
# Self-test: DOCS_CHECK_EXTRA="name1 name2" adds names to the list; an undocumented one must
# make this script fail.
# usage: test_docs_columns.sh MOBA_BINARY WORK_DIR
set -euo pipefail
MOBA="${1:?usage: $0 MOBA_BINARY WORK_DIR}"
WORK="${2:?usage: $0 MOBA_BINARY WORK_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOC="$ROOT/docs/metrics.md"
rm -rf "$WORK" && mkdir -p "$WORK"
status=0
fail() { echo "FAIL: $*"; status=1; }
[ -f "$DOC" ] || { echo "FAIL: $DOC is missing"; exit 1; }

# 1. Outputs of a real and a synthetic dump.
"$MOBA" analyze "$ROOT/experiments/data/stories15M_tinystory_256.h5" --layers 0,1 --block-sizes 16,64 --top-k 1,2,4 \
  --routers moba,oracle,moba-kconv --out "$WORK/real" --quiet >"$WORK/real.log" 2>&1 \
  || { cat "$WORK/real.log"; echo "FAIL: analyze of the shipped dump"; exit 1; }
"$MOBA" synth --out "$WORK/synth.h5" --tokens 512 --heads 2 --kv-heads 1 --head-dim 32 --min-distance 64 --seed 1 \
  --quiet >"$WORK/synth.log" 2>&1 || { cat "$WORK/synth.log"; echo "FAIL: synth"; exit 1; }
"$MOBA" analyze "$WORK/synth.h5" --block-sizes 16,64 --top-k 2,4 --routers moba,oracle,moba-kconv \
  --out "$WORK/synth" --quiet >"$WORK/synth-analyze.log" 2>&1 \
  || { cat "$WORK/synth-analyze.log"; echo "FAIL: analyze of the synth dump"; exit 1; }

names="$WORK/names.txt"
: >"$names"
for d in real synth; do
  for f in summary.csv aggregate.csv buckets.csv; do
    [ -s "$WORK/$d/$f" ] || { fail "$d/$f missing or empty"; continue; }
    head -n 1 "$WORK/$d/$f" | tr -d '\r' | tr ',' '\n' | sed "s|^|$f |" >>"$names"
  done
  grep -o '"[A-Za-z0-9_]*":' "$WORK/$d/summary.json" | tr -d '":' | sed 's|^|summary.json |' >>"$names"
  grep -o '"[A-Za-z0-9_]*":' "$WORK/$d/run.json" | tr -d '":' | sed 's|^|run.json |' >>"$names"
done
# analysis.h5: dataset names and attribute names (layer/head/B_k/router group names excluded).
PY=""
for c in "${MOBA_PYTHON:-}" /usr/bin/python3 python3; do
  if [ -n "$c" ] && "$c" -c "import h5py" 2>/dev/null; then PY="$c"; break; fi
done
if [ -n "$PY" ]; then
  for d in real synth; do
    "$PY" - "$WORK/$d/analysis.h5" >>"$names" <<'PYEOF'
import sys, h5py
seen = set()
with h5py.File(sys.argv[1], "r") as f:
    for a in f.attrs:
        seen.add(a)
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            seen.add(name.rsplit("/", 1)[-1])
        for a in obj.attrs:
            seen.add(a)
    f.visititems(visit)
for n in sorted(seen):
    print("analysis.h5", n)
PYEOF
  done
else
  echo "note: no python3 with h5py; analysis.h5 names not checked"
fi
for extra in ${DOCS_CHECK_EXTRA:-}; do echo "DOCS_CHECK_EXTRA $extra" >>"$names"; done

n_checked=0
while read -r file name; do
  [ -n "$name" ] || continue
  n_checked=$((n_checked + 1))
  grep -qF "\`$name\`" "$DOC" || fail "$file: '$name' is not documented in docs/metrics.md (as \`$name\`)"
done < <(sort -u "$names")
[ "$(grep -c '^summary.csv ' "$names")" -ge 60 ] || fail "summary.csv has suspiciously few columns"
echo "checked $n_checked distinct output names against docs/metrics.md"

# 2. User-facing text points only into the repository.
files=("$ROOT/README.md" "$ROOT/experiments/dump/README.md")
while IFS= read -r f; do files+=("$f"); done < <(find "$ROOT/docs" -type f | sort)
for f in "${files[@]}"; do
  rel=${f#"$ROOT/"}
  if grep -nE '\.\./shared|shared/DESIGN|DESIGN\.md|PERF\.md' "$f" >"$WORK/outside.txt"; then
    while IFS= read -r line; do fail "$rel:$line (points outside the repository)"; done <"$WORK/outside.txt"
  fi
  # Relative Markdown links [text](target) must name an existing file inside the repository.
  case "$f" in *.md) ;; *) continue ;; esac
  # An #anchor must name a heading of the target (GitHub's slug: lower case, punctuation
  # other than - and _ dropped, spaces to -).
  while IFS= read -r link; do
    target=${link%%#*}
    anchor=""
    case "$link" in *"#"*) anchor=${link#*#} ;; esac
    case "$target" in http://*|https://*|mailto:*) continue ;; esac
    if [ -n "$target" ]; then
      resolved=$(realpath -m "$(dirname "$f")/$target")
      case "$resolved" in "$ROOT"/*) ;; *) fail "$rel: link '$link' leaves the repository"; continue ;; esac
      [ -e "$resolved" ] || { fail "$rel: link '$link' names a missing file"; continue; }
    else
      resolved=$f
    fi
    if [ -n "$anchor" ] && [ -f "$resolved" ]; then
      grep -E '^#+ ' "$resolved" | sed -E 's/^#+ +//' | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g' \
        | grep -xF -- "$anchor" >/dev/null || fail "$rel: link '$link': no such heading in ${resolved#"$ROOT/"}"
    fi
  done < <(grep -oE '\]\([^)[:space:]]+\)' "$f" | sed -E 's/^\]\(//; s/\)$//')
done

[ "$status" = 0 ] && echo "PASS: docs cover every output name; no pointer leaves the repository"
exit "$status"
