#!/usr/bin/env python3
"""Compares `moba analyze`'s summary.csv with torch_analyze.py's CSV (PERF.md B4).

Joins the per-head rows (scope == head) on (layer, head, router, block_size, top_k) and
prints, per metric column, the largest difference d = |workbench - torch| / max(1, |torch|)
(absolute for values within [-1, 1], relative above: kl and the output error exceed 1 on
synthetic data). Exit 1 when a column exceeds its tolerance or a row is missing on one side.

Tolerances (--tol, --output-tol):
  * 1e-3 for the routing means (coverage, oracle coverage, kl, block and token recall,
    sparsity). Both sides compute masses in fp32 from the same inputs (differences ~1e-7);
    summary.csv prints 6 significant digits (5e-6 relative). What remains is a selection
    flipping where two gate scores or masses tie to within fp32 accumulation order (torch
    matmul vs the workbench's channel-order sum): one flip moves a block-recall mean by
    1 / ((k - 1) n_choice), ~5e-4 at 2K tokens, ~3e-5 at 32K.
  * 1e-2 for output_rel_err_mean. On the CPU both sides are fp32 (agreement ~1e-6), but on
    the GPU the workbench follows the dump's precision (DESIGN.md §8): P is rounded to bf16
    (8 significant bits, unit roundoff 2^-9 = 2e-3) before P.V in both o_full and o_moba,
    by two different kernels, so their rounding does not cancel; each output carries up to
    ~2e-3 |o| of noise and the relative error of their difference can move by ~4e-3 per
    query (more where |o_full| is small against |v|). torch_analyze.py stays fp32.
NaN on both sides (no query with a choice) counts as equal.

usage: compare_torch.py WORKBENCH_SUMMARY_CSV TORCH_CSV [--tol 1e-3] [--output-tol 1e-2]
"""
import argparse
import csv
import math
import sys

KEY = ("layer", "head", "router", "block_size", "top_k")
COLUMNS = ("coverage_mean", "oracle_coverage_mean", "kl_mean", "block_recall_mean", "token_recall_mean",
           "output_rel_err_mean", "sparsity_mean")


def load(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("scope", "head") == "head"]
    return {tuple(str(int(r[c])) if c != "router" else r[c] for c in KEY): r for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workbench")
    ap.add_argument("torch")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--output-tol", type=float, default=1e-2)
    a = ap.parse_args()
    wb, th = load(a.workbench), load(a.torch)
    missing = sorted(set(wb) ^ set(th))
    common = sorted(set(wb) & set(th))
    ok = not missing and bool(common)
    print(f"compare: {len(common)} rows joined on {','.join(KEY)}"
          + (f"; {len(missing)} rows on one side only, e.g. {missing[0]}" if missing else ""))
    print(f"{'column':<22} {'max diff':>10} {'tolerance':>10}  worst row (layer,head,router,B,k)")
    for col in COLUMNS:
        tol = a.output_tol if col == "output_rel_err_mean" else a.tol
        worst, where = 0.0, None
        for key in common:
            x, y = float(wb[key][col]), float(th[key][col])
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y) / max(1.0, abs(y)) if not (math.isnan(x) or math.isnan(y)) else math.inf
            if d > worst or where is None:
                worst, where = d, key
        bad = worst > tol
        ok &= not bad
        print(f"{col:<22} {worst:>10.3g} {tol:>10.3g}  {','.join(where) if where else '-'}{'  FAIL' if bad else ''}")
    print("compare: " + ("agree within tolerance" if ok else "DISAGREE"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
