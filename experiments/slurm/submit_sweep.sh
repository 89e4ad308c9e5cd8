#!/usr/bin/env bash
# Submits a `moba sweep` as a Slurm array of N shards plus a collect step that runs once
# every shard succeeded (afterok). Run from the repository root on the cluster's login node:
#   experiments/slurm/submit_sweep.sh experiments/sweeps/demo.toml runs/demo 4
# Extra sbatch options for both steps (partition, account, GPUs) go in SBATCH_EXTRA, e.g.
#   SBATCH_EXTRA="--partition=gpu --gpus-per-task=1" experiments/slurm/submit_sweep.sh ...
# MOBA=/path/to/moba picks the binary (default build/moba). See docs/sweep.md.
set -euo pipefail
CONFIG="${1:?usage: $0 CONFIG.toml DIR [N_SHARDS]}"
DIR="${2:?usage: $0 CONFIG.toml DIR [N_SHARDS]}"
N="${3:-4}"
HERE="$(cd "$(dirname "$0")" && pwd)"
export MOBA="${MOBA:-$(pwd)/build/moba}"
export MOBA_SWEEP_SHARDS="$N"
# Check the config before queueing anything (bad keys exit 2 here, not in N tasks).
"$MOBA" sweep "$CONFIG" --out "$DIR" --dry-run
array=$(sbatch --parsable ${SBATCH_EXTRA:-} --export=ALL --array=0-$((N - 1)) "$HERE/sweep_array.sbatch" "$CONFIG" "$DIR")
array="${array%%;*}"
collect=$(sbatch --parsable ${SBATCH_EXTRA:-} --export=ALL --dependency=afterok:"$array" "$HERE/sweep_collect.sbatch" "$DIR")
echo "array job $array ($N shards) -> $DIR; collect step $collect runs when all succeed"
echo "a failed shard I: fix the cause, then"
echo "  MOBA_SWEEP_SHARDS=$N MOBA_SWEEP_RESUME=1 sbatch --array=I $HERE/sweep_array.sbatch $CONFIG $DIR"
echo "followed by  $MOBA sweep --collect $DIR"
