#!/usr/bin/env python3
"""Routing SNR, measured against the FlashMoBA model, from a `moba analyze` output directory.

Reads DIR/aggregate.csv (overall rows, router moba) and prints, per block size and top-k:
the model's SNR (the synth dump's delta_mu_eff * sqrt(d / 2B); nan on real dumps), the
measured SNR_emp = mean(D)/std(D), the SNR predicted from the parameters measured on the data,
the empirical pairwise p_fail beside Phi(-SNR_emp), and retrieval of the planted block
(synth dumps) beside the Phi-based prediction.

    build/moba synth --out s.h5 --tokens 8192 --layers 1 --heads 4 --kv-heads 2 --seed 11
    build/moba analyze s.h5 --block-sizes 16,32,64,128,256 --top-k 2,4 --routers moba --out A
    python3 experiments/scripts/snr_vs_theory.py A
"""
import csv
import math
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: snr_vs_theory.py ANALYZE_DIR")
    path = os.path.join(sys.argv[1], "aggregate.csv")
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["scope"] == "overall" and r["router"] == "moba"]
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}")
    if not rows:
        sys.exit(f"{path}: no overall rows for router moba")
    print(f"{'B':>5} {'k':>3} {'SNR_model':>9} {'SNR_emp':>8} {'dev%':>6} {'SNR_params':>10} "
          f"{'p_fail_emp':>10} {'Phi(-SNR)':>9} {'planted_acc':>11} {'Phi_pred':>8}")
    for r in rows:
        model, emp = float(r["snr_synth"]), float(r["snr_emp"])
        dev = 100 * (emp / model - 1) if model == model and model != 0 else math.nan
        print(f"{r['block_size']:>5} {r['top_k']:>3} {model:9.3f} {emp:8.3f} {dev:6.1f} "
              f"{float(r['snr_theory']):10.3f} {float(r['p_fail_emp']):10.4f} {float(r['p_fail_theory']):9.4f} "
              f"{float(r['planted_recall']):11.3f} {float(r['planted_recall_pred']):8.3f}")


if __name__ == "__main__":
    main()
