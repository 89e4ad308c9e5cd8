#!/usr/bin/env bash
# moba sweep static shards: --shard 0/2 and --shard 1/2 into one DIR (job j runs in shard
# j mod 2), then --collect, give a sweep.csv byte-equal to an unsharded run's; so do Slurm
# array variables (SLURM_ARRAY_TASK_ID/COUNT/MIN) and --collect alone. --collect before every
# shard is done exits 1 naming the missing jobs.
# usage: test_sweep_shard.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"

"$MOBA" sweep sweep.toml --out REF --quiet || fail "reference sweep failed"
n_jobs=$(($(wc -l < REF/jobs.tsv) - 1))

"$MOBA" sweep sweep.toml --out S --shard 0/2 --quiet || fail "shard 0/2 failed"
[ "$(count_done S)" = $(((n_jobs + 1) / 2)) ] || fail "shard 0/2 ran $(count_done S) jobs"
for id in $(ls S/jobs); do [ $((10#${id%%-*} % 2)) = 0 ] || fail "shard 0/2 ran job $id"; done
set +e; "$MOBA" sweep --collect S 2>err.txt; rc=$?; set -e
[ $rc = 1 ] && grep -q "jobs are not done" err.txt || fail "--collect with a shard missing: exit $rc: $(cat err.txt)"
"$MOBA" sweep sweep.toml --out S --shard 1/2 --quiet || fail "shard 1/2 failed"
expect_exit2 "--out S exists and is not empty" "$MOBA" sweep sweep.toml --out S --shard 1/2 --quiet
rm S/sweep.csv
"$MOBA" sweep --collect S 2>err.txt || { cat err.txt; fail "--collect failed"; }
csv_equal REF/sweep.csv S/sweep.csv
$PY -c "import json,sys; p=json.load(open('S/provenance.json')); assert [s['shard']['index'] for s in p['shards']]==[0,1], p" \
  || fail "provenance.json does not merge both shards"
echo "--shard 0/2 + 1/2 + --collect: equal"

# Slurm array (indices 3..5 => shards 0..2), in reverse order.
for id in 5 4 3; do
  SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=3 \
    "$MOBA" sweep sweep.toml --out SL --quiet || fail "Slurm task $id failed"
done
grep -q '"source": "SLURM_ARRAY_TASK_ID"' SL/provenance.shard-2.json || fail "shard not taken from Slurm"
"$MOBA" sweep --collect SL 2>/dev/null || fail "--collect SL failed"
csv_equal REF/sweep.csv SL/sweep.csv
echo "Slurm array 3-5 + --collect: equal"

# experiments/slurm/submit_sweep.sh against a stand-in sbatch that runs each array task (and
# then the afterok collect step) at once, with the variables Slurm sets.
mkdir -p fakebin
cat > fakebin/sbatch <<'SH'
#!/usr/bin/env bash
array="" script=""
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array="${1#--array=}" ;;
    --dependency=afterok:*) ;;
    --*) ;;
    *) script="$1"; shift; break ;;
  esac
  shift
done
echo "sbatch $script array=$array" >> "$FAKE_SBATCH_LOG"
if [ -n "$array" ]; then
  lo=${array%-*} hi=${array#*-}
  for i in $(seq "$lo" "$hi"); do
    SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) SLURM_ARRAY_TASK_MIN=$lo bash "$script" "$@" >/dev/null 2>&1 || exit 1
  done
else
  bash "$script" "$@" >/dev/null 2>&1 || exit 1
fi
echo $RANDOM
SH
chmod +x fakebin/sbatch
(cd "$REPO" && FAKE_SBATCH_LOG="$WORK/sbatch.log" PATH="$WORK/fakebin:$PATH" MOBA="$MOBA" \
   experiments/slurm/submit_sweep.sh "$WORK/sweep.toml" "$WORK/SB" 3 > "$WORK/submit.txt" 2>&1) \
  || { cat submit.txt; fail "submit_sweep.sh failed"; }
[ "$(wc -l < sbatch.log)" = 2 ] && grep -q "sweep_collect.sbatch" sbatch.log || fail "submit_sweep.sh: $(cat sbatch.log)"
csv_equal REF/sweep.csv SB/sweep.csv
ls SB/provenance.shard-{0,1,2}.json >/dev/null || fail "submit_sweep.sh: not 3 shards"
echo "submit_sweep.sh (3 array tasks + afterok collect, stand-in sbatch): equal"

# --collect of an unsharded run rebuilds the same file from the job directories alone.
rm REF/sweep.csv && cp S/sweep.csv want.csv
"$MOBA" sweep --collect REF 2>/dev/null || fail "--collect REF failed"
csv_equal want.csv REF/sweep.csv
expect_exit2 "dumps/jobs.tsv: not a \`moba sweep\` run directory" "$MOBA" sweep --collect dumps
echo "PASS"
