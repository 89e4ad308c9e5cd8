#!/usr/bin/python3
"""Builds a sweep-shaped run directory from plain `moba analyze` runs: the fixture of
tests/scripts/test_plot.sh, independent of `moba sweep`.

usage: plot_fake_sweep.py MOBA OUT DUMP [DUMP ...] [--head-only] [--layers LIST]

Per dump, two analyze jobs (--block-sizes 16,32,64,128 with --top-k 2,4,8, and with
--sparsity 0.5,0.75) into OUT/jobs/<job>/, then OUT/sweep.csv in the sweep's layout:
job, dump, dump_sha256, budget_mode, budget_target, attended_keys_mean, then every column
of the jobs' summary.csv; summary rows followed by aggregate rows (--head-only: summary
rows only). --layers is passed to analyze. attended_keys_mean is the mean over queries with a choice of the causal
attended keys (1 - sparsity_token) * (t + 1), from the job's analysis.h5 for head rows (the
jobs run with --positions all, so every head keeps its per-position arrays),
NaN in aggregate rows. OUT/provenance.json holds git_commit from the first job's run.json.
"""
import csv
import hashlib
import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np

BLOCKS = "16,32,64,128"


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def attended_keys(h5, row):
    if row["scope"] != "head":
        return "nan"
    g = "layers/%s/heads/%s/B%s_k%s/%s" % (row["layer"], row["head"], row["block_size"], row["top_k"], row["router"])
    s = h5[g + "/sparsity_token"][...].astype(np.float64)
    t = np.arange(s.size)
    choice = (t // int(row["block_size"])) >= int(row["top_k"])
    if not choice.any():
        return "nan"
    return "%.6g" % float(np.mean(((1.0 - s) * (t + 1))[choice]))


def main():
    args = [a for a in sys.argv[1:] if a != "--head-only"]
    head_only = "--head-only" in sys.argv
    extra = []
    if "--layers" in args:
        i = args.index("--layers")
        extra = ["--layers", args[i + 1]]
        del args[i:i + 2]
    if len(args) < 3:
        sys.exit(__doc__)
    moba, out, dumps = args[0], args[1], args[2:]
    os.makedirs(os.path.join(out, "jobs"), exist_ok=True)
    rows, header, commit = [], None, ""
    for dump in dumps:
        name = os.path.basename(dump)
        sha = sha256_of(dump)
        stem = name.rsplit(".", 1)[0]
        for mode, flag, values in (("top_k", "--top-k", "2,4,8"), ("sparsity", "--sparsity", "0.5,0.75")):
            job = "%s-%s" % (stem, mode)
            jd = os.path.join(out, "jobs", job)
            subprocess.run([moba, "analyze", dump, "--block-sizes", BLOCKS, flag, values,
                            "--positions", "all", "--out", jd, "--quiet"] + extra, check=True, stdout=subprocess.DEVNULL)
            if not commit:
                with open(os.path.join(jd, "run.json")) as f:
                    commit = json.load(f).get("git_commit", "")
            job_rows = []
            for table in ("summary.csv",) + (() if head_only else ("aggregate.csv",)):
                with open(os.path.join(jd, table), newline="") as f:
                    r = csv.DictReader(f)
                    header = r.fieldnames
                    job_rows += list(r)
            with h5py.File(os.path.join(jd, "analysis.h5"), "r") as h5:
                for row in job_rows:
                    B, k = int(row["block_size"]), int(row["top_k"])
                    T = float(row["n_tokens"])
                    targets = []
                    if mode == "top_k":
                        targets = [str(k)]
                    else:  # the sparsities that resolve to this (B, k): docs/routing.md
                        targets = [s for s in values.split(",")
                                   if max(1, int(math.floor((1 - float(s)) * T / B + 0.5))) == k]
                    for t in targets:
                        rows.append([job, name, sha, mode, t, attended_keys(h5, row)] + [row[c] for c in header])
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["job", "dump", "dump_sha256", "budget_mode", "budget_target", "attended_keys_mean"] + header)
        w.writerows(rows)
    with open(os.path.join(out, "provenance.json"), "w") as f:
        json.dump({"git_commit": commit, "dumps": [os.path.abspath(d) for d in dumps]}, f, indent=1)


if __name__ == "__main__":
    main()
