#!/usr/bin/env python3
"""Re-runs `moba analyze` at every head's fitted tau of a `moba fit` table (docs/fit.md#tau).

For each row of PATH.csv with router moba-threshold or oracle-topp and status ok, runs

    moba analyze DUMP --layers L --heads H --block-sizes B --top-k n_blocks-1
                      --routers R --tau TAU --positions metrics

(analyze takes one --tau per run, so one run per head) and reduces the per-position metric
(coverage or kl) of analysis.h5 to its mean over the queries with a routable block (t >= B),
fit's tau metric. analyze analyses k <= n_blocks - 1, so the cap k - 1 = n_blocks - 2 can bind
only for queries of the last block that would take every routable block; the script counts
those queries (`cap_hits`). Where there are none the value equals fit's `achieved`; where there
are, analyze's selection is a subset of the uncapped one, so its coverage is a lower bound
(its KL an upper bound): meeting the target here implies the uncapped router meets it too.
With --prev, also runs tau - resolution and requires it to miss the target.

    build/moba fit DUMP --block-sizes 32 --target coverage=0.95 --routers moba-threshold --out fit
    python3 experiments/scripts/fit_tau_check.py build/moba DUMP fit --prev

Needs numpy and h5py. Prints one line per head; exits 1 when a head misses the target.
"""
import csv
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def analyze_mean(moba, dump, row, tau, work):
    L, h, B, nb = int(row["layer"]), int(row["head"]), int(row["block_size"]), int(row["n_blocks"])
    router, metric = row["router"], row["target"]
    out = os.path.join(work, f"L{L}_H{h}_B{B}_{router}_{tau}")
    k = nb - 1
    subprocess.run([moba, "analyze", dump, "--layers", str(L), "--heads", str(h), "--block-sizes", str(B),
                    "--top-k", str(k), "--routers", router, "--tau", tau, "--positions", "all",
                    "--out", out, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    with h5py.File(os.path.join(out, "analysis.h5"), "r") as f:
        g = f[f"/layers/{L}/heads/{h}/B{B}_k{k}/{router}"]
        values = np.asarray(g[metric], dtype=np.float64)
        sel = np.asarray(g["selected"])
    T = values.shape[0]
    t = np.arange(T)
    mean = float(values[B:].sum() / (T - B))
    # Queries where the cap k - 1 routable blocks was reached though more were routable.
    count = (sel >= 0).sum(axis=1)
    cap_hits = int(((count == k) & (t // B > k - 1)).sum())
    return mean, cap_hits


def main():
    args = [a for a in sys.argv[1:] if a != "--prev"]
    prev = "--prev" in sys.argv[1:]
    if len(args) != 3:
        sys.exit("usage: fit_tau_check.py MOBA DUMP FIT_PREFIX [--prev]")
    moba, dump, prefix = args
    with open(prefix + ".csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["router"] in ("moba-threshold", "oracle-topp")]
    if not rows:
        sys.exit(f"{prefix}.csv: no moba-threshold / oracle-topp rows")
    bad = 0
    with tempfile.TemporaryDirectory(prefix="fit_tau_check_") as work:
        print("layer head router B tau target achieved(fit) analyze cap_hits met"
              + (" tau-res analyze(tau-res) missed" if prev else ""))
        for r in rows:
            if r["status"] != "ok":
                print(r["layer"], r["head"], r["router"], r["block_size"], "-", r["status"])
                continue
            metric, target = r["target"], float(r["target_value"])
            met = (lambda v: v <= target) if metric == "kl" else (lambda v: v >= target)
            v, hits = analyze_mean(moba, dump, r, r["tau"], work)
            ok = met(v)
            line = (f'{r["layer"]} {r["head"]} {r["router"]} {r["block_size"]} {r["tau"]} {metric}={target:g} '
                    f'{float(r["achieved"]):.6f} {v:.6f} {hits} {"yes" if ok else "NO"}')
            if hits == 0 and abs(v - float(r["achieved"])) > 1e-5:
                line += " (differs from fit's value)"
                ok = False
            if prev:
                tp = float(r["tau"]) - float(r["tau_resolution"])
                if tp > 1e-12:
                    tps = "%.12g" % tp
                    vp, _ = analyze_mean(moba, dump, r, tps, work)
                    missed = not met(vp)
                    ok = ok and missed
                    line += f' {tps} {vp:.6f} {"yes" if missed else "NO"}'
                else:
                    line += " - - (tau is the grid's first point)"
            bad += 0 if ok else 1
            print(line, flush=True)
    print(f"{len(rows) - bad} of {len(rows)} heads pass" + ("" if bad == 0 else f"; {bad} FAIL"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
