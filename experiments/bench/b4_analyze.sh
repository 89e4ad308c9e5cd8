#!/usr/bin/env bash
# PERF.md B4, end to end, in one call: `moba analyze` of one 32-head x 32K-token layer (8 KV
# heads, head dim 128, bf16), 4 block sizes x 3 top-k, routers moba + oracle, on the chosen
# device, against the project's PyTorch baseline (torch_analyze.py) on the same dump:
#   1. synth the dump (same shape as the B1 family)
#   2. moba analyze: one warm-up run (its wall is printed, not counted), then RUNS timed
#      runs: wall time and peak RSS (/usr/bin/time), GPU busy % and peak memory (nvidia-smi
#      every 0.5 s in the background during each timed run)
#   3. torch_analyze.py, RUNS times: its analysis time (file read excluded,
#      torch.cuda.synchronize'd), its whole wall time, GPU busy %
#   4. compare_torch.py: per-column agreement of the two summaries (exit 1 if out of tolerance)
#   5. one table of medians: workbench s, torch s, ratio (torch analysis s / workbench wall s:
#      the workbench's time includes its own file read, CUDA start-up and exit, torch's does
#      not), GPU busy %, RSS, analysis.h5 size.
# The warm-up: the first analyze of a freshly written dump ran slower than the next ones
# (kernels/cuda/NOTES.md, twenty-third session: 1.27 s, then 1.07-1.22 s), and torch, which
# runs after it and excludes its file read, never paid that; so both sides are timed warm
# (PERF.md's method: after a warm-up, medians).
# usage: experiments/bench/b4_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]
# ANALYZE_ARGS: extra analyze options (e.g. --profile; its per-stage table lands in analyze.err).
# Writes under ${OUT:-/tmp/moba-out}/b4. PYTHON (python3) runs the torch side; RUNS (3) timed
# runs a side; TOKENS, HEADS, KV_HEADS, HEAD_DIM override the shape (a small local smoke run).
set -uo pipefail
MOBA=${1:?usage: b4_analyze.sh MOBA [cuda|cpu] [TIMEOUT_S]}
DEVICE=${2:-cuda}
LIMIT=${3:-300}
PYTHON=${PYTHON:-python3}
RUNS=${RUNS:-3}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "b4_analyze.sh: RUNS must be a positive integer (got '$RUNS')" >&2; exit 2; }
TOKENS=${TOKENS:-32768} HEADS=${HEADS:-32} KV_HEADS=${KV_HEADS:-8} HEAD_DIM=${HEAD_DIM:-128}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/gpu_sampler.sh"
trap sampler_stop EXIT
# On the GPU, larger query chunks amortise the host<->device copies of the analysis seam
# (analysis/backend.cpp copies a KV head per call); block masses per chunk stay < 64 MB.
CHUNK=256
[ "$DEVICE" = cuda ] && CHUNK=4096
W=${OUT:-/tmp/moba-out}/b4
rm -rf "$W"; mkdir -p "$W"
SHAPE="$HEADS heads x $TOKENS tokens x d$HEAD_DIM ($KV_HEADS KV heads, bf16)"
"$MOBA" synth --out "$W/layer.h5" --tokens "$TOKENS" --layers 1 --heads "$HEADS" --kv-heads "$KV_HEADS" \
  --head-dim "$HEAD_DIM" --dtype bf16 --min-distance 512 --seed 4 --quiet >/dev/null || { echo "B4: synth failed"; exit 1; }

# CSV CMD...: CMD under the GPU sampler, its samples appended to CSV; returns CMD's exit status.
sampled() {
  local csv=$1
  shift
  sampler_start "$W/gpu_run.csv"
  "$@"
  local rc=$?
  sampler_stop
  cat "$W/gpu_run.csv" >>"$csv"
  return $rc
}
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# 2. the workbench: a warm-up run, then RUNS timed runs
moba_run() {  # TIME_FILE: one analyze into $W/out, its wall and RSS in TIME_FILE
  /usr/bin/time -f "%e %M" -o "$1" timeout "$LIMIT" "$MOBA" analyze "$W/layer.h5" --device "$DEVICE" \
    --block-sizes 16,32,64,128 --top-k 2,4,8 --routers moba,oracle --query-chunk $CHUNK --out "$W/out" ${ANALYZE_ARGS:-} \
    >"$W/analyze.log" 2>"$W/analyze.err"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "B4 $DEVICE: moba analyze did not finish (exit $rc) within ${LIMIT}s; last progress: $(tr '\r' '\n' < "$W/analyze.err" | grep -v '^$' | tail -1)"
    exit 1
  fi
  rm -rf "$W/out.keep"; mv "$W/out" "$W/out.keep"  # the next run writes a fresh directory
}
moba_run "$W/time_moba_warmup.txt"
: >"$W/gpu_moba.csv"; : >"$W/moba_runs.txt"
for ((r = 0; r < RUNS; r++)); do
  sampled "$W/gpu_moba.csv" moba_run "$W/time_moba.txt"
  tail -1 "$W/time_moba.txt" >>"$W/moba_runs.txt"
done
mv "$W/out.keep" "$W/out"
wall=$(cut -d' ' -f1 "$W/moba_runs.txt" | median)
rss=$(cut -d' ' -f2 "$W/moba_runs.txt" | sort -n | tail -1)
rows=$(($(wc -l < "$W/out/summary.csv") - 1))
echo "B4 $DEVICE: moba analyze $SHAPE, B {16,32,64,128} x k {2,4,8}, moba+oracle, query chunk $CHUNK: warm-up $(cut -d' ' -f1 "$W/time_moba_warmup.txt") s, then $(cut -d' ' -f1 "$W/moba_runs.txt" | tr '\n' ' ')s (median ${wall} s), peak RSS $((rss / 1024)) MiB, ${rows} summary rows"

# 3. the PyTorch baseline on the same dump, RUNS times
: >"$W/gpu_torch.csv"; : >"$W/torch_runs.txt"
for ((r = 0; r < RUNS; r++)); do
  sampled "$W/gpu_torch.csv" /usr/bin/time -f "%e %M" -o "$W/time_torch.txt" timeout "$LIMIT" "$PYTHON" \
    "$HERE/torch_analyze.py" "$W/layer.h5" --layer 0 --block-sizes 16,32,64,128 --top-k 2,4,8 --device "$DEVICE" \
    --out "$W/torch.csv" 2>"$W/torch.err"
  trc=$?
  if [ $trc -ne 0 ]; then
    echo "B4 $DEVICE: torch_analyze.py failed (exit $trc):"; tail -5 "$W/torch.err"
    exit 1
  fi
  tail -1 "$W/torch.err"
  echo "$(sed -n 's/.*analysis \([0-9.]*\) s wall.*/\1/p' "$W/torch.err" | tail -1) $(tail -1 "$W/time_torch.txt")" >>"$W/torch_runs.txt"
done
tsec=$(cut -d' ' -f1 "$W/torch_runs.txt" | median)
twall=$(cut -d' ' -f2 "$W/torch_runs.txt" | median)
trss=$(cut -d' ' -f3 "$W/torch_runs.txt" | sort -n | tail -1)

# 4. agreement
"$PYTHON" "$HERE/compare_torch.py" "$W/out/summary.csv" "$W/torch.csv" | tee "$W/compare.txt"
crc=${PIPESTATUS[0]}

# 5. the table
h5=$(du -k "$W/out/analysis.h5" 2>/dev/null | cut -f1)
dump=$(du -k "$W/layer.h5" | cut -f1)
ratio=$(awk -v a="$tsec" -v b="$wall" 'BEGIN {printf "%.2f", a / b}')
echo
echo "B4 $DEVICE, $SHAPE, $((rows / HEADS / 2)) configurations x 2 routers; medians of $RUNS runs a side (the workbench after a warm-up run)"
printf '%-26s %10s %12s %10s %12s %14s\n' "" "wall s" "GPU busy %" "GPU MiB" "peak RSS MiB" "analysis.h5"
printf '%-26s %10s %12s %10s %12s %14s\n' "moba analyze" "$wall" "$(sampler_mean "$W/gpu_moba.csv" 1)" \
  "$(sampler_max "$W/gpu_moba.csv" 2)" "$((rss / 1024))" "$((h5 / 1024)) MiB"
printf '%-26s %10s %12s %10s %12s %14s\n' "torch_analyze (analysis)" "$tsec" "$(sampler_mean "$W/gpu_torch.csv" 1)" \
  "$(sampler_max "$W/gpu_torch.csv" 2)" "$((trss / 1024))" "-"
printf '%-26s %10s\n' "torch_analyze (whole run)" "$twall"
echo "ratio torch analysis / moba wall: ${ratio}x (PERF.md milestone >= 10x, goal >= 30x); analysis.h5 = $(awk -v a="$h5" -v b="$dump" 'BEGIN {printf "%.2f", a / b}')x the dump; agreement: $(tail -1 "$W/compare.txt")"
exit "$crc"
