# Sourced by tests/scripts/test_sweep*.sh: two tiny synthetic dumps plus the shipped 256-token
# real dump, and a sweep config over them (4 jobs per dump: a top-k job and three
# matched-attended-key jobs, one per B), small enough for the ASan build.
source "$(dirname "${BASH_SOURCE[0]}")/io_common.sh"
cd "$WORK"
REPO="$(cd "$HERE/../.." && pwd)"
SHIPPED="$REPO/experiments/data/stories15M_tinystory_256.h5"
mkdir -p dumps
"$MOBA" synth --out dumps/s1.h5 --seed 11 --tokens 128 --layers 2 --heads 2 --kv-heads 1 --head-dim 16 --min-distance 32 --quiet >/dev/null
"$MOBA" synth --out dumps/s2.h5 --seed 12 --tokens 192 --layers 1 --heads 2 --kv-heads 2 --head-dim 16 --min-distance 32 --quiet >/dev/null
cat > sweep.toml <<TOML
# test sweep
dumps = ["dumps/s*.h5", "$SHIPPED"]
layers = [0]
heads = [0, 1]
block_sizes = [16, 32, 64]
routers = ["moba", "oracle"]

[budget]
top_k = [2, 3]
attended_keys = 80

[analysis]
buckets = 4
TOML
# csv_equal A B: byte-equal sweep.csv files, or a diff and failure.
csv_equal() {
  cmp -s "$1" "$2" || { diff "$1" "$2" | head -5; fail "$1 differs from $2"; }
}
# count_done DIR: the jobs with a DONE marker.
count_done() { { find "$1/jobs" -name DONE 2>/dev/null || true; } | wc -l; }
