#!/usr/bin/env bash
# moba sweep's all-GPUs mode, on the CPU: MOBA_SWEEP_FAKE_GPUS=N stands N devices in for
# CUDA's, so with device = "auto" the sweep runs N jobs at once, each child pinned with
# CUDA_VISIBLE_DEVICES (its run.json records the value), and the jobs themselves run on the
# CPU. Checks: sweep.csv byte-equal to a one-at-a-time run; jobs really overlapped
# (provenance max_concurrent_jobs); every job's device in provenance job_devices and in its
# own run.json; the parent's CUDA_VISIBLE_DEVICES list is what the children get; --gpus 1
# is the one-at-a-time loop; --gpus over the visible count, or with device "cpu", exits 2;
# --resume after a concurrent run reruns nothing.
# usage: test_sweep_gpus.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"
unset CUDA_VISIBLE_DEVICES MOBA_SWEEP_FAKE_GPUS
sed 's/^layers = \[0\]$/layers = [0]\ndevice = "auto"/' sweep.toml > auto.toml
grep -q '^device = "auto"' auto.toml || fail "could not set device = auto"

"$MOBA" sweep auto.toml --out REF --gpus 1 --quiet || fail "reference sweep failed"
n_jobs=$(($(wc -l < REF/jobs.tsv) - 1))
$PY - REF <<'PY' || fail "--gpus 1 is not the one-at-a-time loop"
import json, sys
p = json.load(open(sys.argv[1] + "/provenance.json"))
assert p["device"]["concurrent_jobs"] == 1 and p["max_concurrent_jobs"] == 1, p
PY
! grep -q cuda_visible_devices REF/jobs/*/run.json || fail "--gpus 1 pinned a job"

check_concurrent() {  # DIR N EXPECTED_VISIBLE_VALUES...
  $PY - "$@" <<'PY'
import glob, json, sys
d, n, want = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
p = json.load(open(d + "/provenance.json"))
assert p["device"]["concurrent_jobs"] == n, p["device"]
assert [g["cuda_visible_devices"] for g in p["device"]["gpus"]] == want, p["device"]["gpus"]
assert p["max_concurrent_jobs"] == n, ("jobs did not overlap", p["max_concurrent_jobs"])
jobs = sorted(glob.glob(d + "/jobs/*/run.json"))
seen = set()
for j in jobs:
    job_id = j.split("/")[-2]
    v = json.load(open(j))["config"]["cuda_visible_devices"]
    assert "CUDA_VISIBLE_DEVICES=" + v + "," in p["job_devices"][job_id], (job_id, v, p["job_devices"][job_id])
    seen.add(v)
assert len(p["job_devices"]) == len(jobs), p["job_devices"]
assert seen == set(want), (seen, want)
PY
}

MOBA_SWEEP_FAKE_GPUS=2 "$MOBA" sweep auto.toml --out P2 2>err.txt || { cat err.txt; fail "2-GPU sweep failed"; }
grep -q "2 jobs at a time" err.txt || fail "no concurrency announced: $(head -3 err.txt)"
csv_equal REF/sweep.csv P2/sweep.csv
check_concurrent P2 2 0 1 || fail "2 fake GPUs"
echo "MOBA_SWEEP_FAKE_GPUS=2: $n_jobs jobs, 2 at a time, sweep.csv equal"

CUDA_VISIBLE_DEVICES=5,7,9 MOBA_SWEEP_FAKE_GPUS=3 "$MOBA" sweep auto.toml --out P3 --gpus all --quiet || fail "3-GPU sweep failed"
csv_equal REF/sweep.csv P3/sweep.csv
check_concurrent P3 3 5 7 9 || fail "CUDA_VISIBLE_DEVICES=5,7,9 not passed on"
echo "CUDA_VISIBLE_DEVICES=5,7,9: children pinned to 5, 7, 9; sweep.csv equal"

MOBA_SWEEP_FAKE_GPUS=3 "$MOBA" sweep auto.toml --out P3b --gpus 2 --quiet || fail "--gpus 2 of 3 failed"
$PY -c "import json; p=json.load(open('P3b/provenance.json')); assert p['device']['concurrent_jobs']==2 and p['max_concurrent_jobs']==2, p" \
  || fail "--gpus 2 of 3 visible"
csv_equal REF/sweep.csv P3b/sweep.csv

MOBA_SWEEP_FAKE_GPUS=2 "$MOBA" sweep auto.toml --out P2 --resume 2>err.txt || fail "--resume failed"
[ "$(grep -c 'done already' err.txt)" = "$n_jobs" ] || fail "--resume after a concurrent run reran jobs"
csv_equal REF/sweep.csv P2/sweep.csv

MOBA_SWEEP_FAKE_GPUS=2 expect_exit2 "only 2 GPU" "$MOBA" sweep auto.toml --out E1 --gpus 3 --quiet
MOBA_SWEEP_FAKE_GPUS=2 expect_exit2 'device is "cpu"' "$MOBA" sweep sweep.toml --out E2 --gpus 2 --quiet
echo "--gpus 1 / 2 of 3 / over the count / with device cpu: as documented"
