# Sourced by the bench scripts: nvidia-smi sampling in the background while a command runs.
#   sampler_start FILE   samples "utilization.gpu, memory.used" (%, MiB) of one GPU every
#                        0.5 s into FILE (GPU: the first of CUDA_VISIBLE_DEVICES, else 0);
#                        does nothing without nvidia-smi
#   sampler_stop         ends the sampler started last (by its pid)
#   sampler_mean FILE N  mean of column N (1 = busy %, 2 = MiB), "-" without samples
#   sampler_max FILE N   max of column N
SAMPLER_PID=
sampler_start() {
  : >"$1"
  command -v nvidia-smi >/dev/null || return 0
  local gpu=${CUDA_VISIBLE_DEVICES:-0}
  nvidia-smi -i "${gpu%%,*}" --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 500 >"$1" 2>/dev/null &
  SAMPLER_PID=$!
}
sampler_stop() {
  [ -n "$SAMPLER_PID" ] && { kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; }
  SAMPLER_PID=
}
sampler_mean() {
  awk -F', *' -v c="$2" '$c ~ /^[0-9.]+$/ {s += $c; n++} END {if (n) printf "%.0f", s / n; else printf "-"}' "$1"
}
sampler_max() {
  awk -F', *' -v c="$2" '$c ~ /^[0-9.]+$/ {if ($c > m) m = $c; n++} END {if (n) printf "%d", m; else printf "-"}' "$1"
}
