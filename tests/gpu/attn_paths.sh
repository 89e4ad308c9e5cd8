#!/usr/bin/env bash
# The two moba_attention paths (gather, tile: kernels/cuda/moba_attention_tile.cuh) on the GPU
# machine, one call: the GPU tests of both against the CPU, then `moba bench --suite b1`
# attention times of each path on the same inputs (same run) across (B, k), for the cost
# model of use_tile_path (kernels/cuda/moba_attention.cu). Table last.
# usage: tests/gpu/attn_paths.sh MOBA GPU_TESTS [TOKENS]
set -uo pipefail
MOBA=${1:?usage: attn_paths.sh MOBA GPU_TESTS [TOKENS]}
TESTS=${2:?usage: attn_paths.sh MOBA GPU_TESTS [TOKENS]}
TOKENS=${3:-16384}
CONFIGS=${CONFIGS:-16:16,16:32,16:64,16:128,32:32,32:128,64:16,64:64,64:128,128:8,128:32,128:64,256:16,256:32,512:8,512:16,1024:2,1024:8}
echo "== GPU tests: tile path, tuning variants, exact attention"
timeout 300 "$TESTS" "gpu: moba attention tile path vs the CPU" 2>&1 | tail -3
timeout 300 "$TESTS" "gpu: tuning variants match the CPU" 2>&1 | tail -3
timeout 300 "$TESTS" "gpu: exact numerics\, moba attention vs the CPU" 2>&1 | tail -3
W=$(mktemp -d)
for path in gather tile tile3; do
  tuning="attn_path=$path"
  [ $path = tile ] && tuning="attn_path=tile,tile_wgmma=0,tile_min_blocks3=0"
  [ $path = tile3 ] && tuning="attn_path=tile,tile_wgmma=0,tile_min_blocks3=1"
  timeout 200 "$MOBA" bench --suite b1 --tokens "$TOKENS" --configs "$CONFIGS" --reps 5 --precision exact \
    --tuning "$tuning" >"$W/$path.txt" 2>"$W/$path.err" || { echo "bench $path failed"; tail -3 "$W/$path.err"; }
done
echo "== attention ms per path (B1 shape: 2 x 16 heads, d 128, bf16 exact, T=$TOKENS, same inputs)"
printf '%6s %5s %8s %10s %10s %10s %8s\n' B k "kB/T" gather_ms tile2_ms tile3_ms "gather/tile3"
paste <(grep "^B1 " "$W/gather.txt") <(grep "^B1 " "$W/tile.txt") <(grep "^B1 " "$W/tile3.txt") |
  awk -v T="$TOKENS" '{printf "%6d %5d %8.4f %10.3f %10.3f %10.3f %8.2f\n", $3, $4, $3*$4/T, $6, $15, $24, $6/$24}'
