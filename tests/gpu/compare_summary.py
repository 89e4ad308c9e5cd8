#!/usr/bin/env python3
"""Compares two `moba analyze` summary.csv files (e.g. --device cpu vs --device cuda).

Rows are matched by (layer, head, scope, router, block_size, top_k). Each numeric column
belongs to a tolerance class; the classes and their bounds per dump dtype form the table
below (the analysis-level counterpart of tests/tolerances.h):

  exact     counts and shapes: equal
  selection means of per-query metrics that depend on the selected blocks and on block
            masses (coverage, KL, recalls, sparsity, planted-block retrieval): absolute
            bound, plus two queries' worth (2/n, n the queries the mean is over: n_choice,
            n_choice_trail for trailing means, planted_queries for planted recall). On
            16-bit dumps the device sees the same values as the CPU and masses agree to
            ~1e-6, but the GPU sums exact products in another order, so where two blocks'
            masses tie within that, the oracle (and every recall measured against it) may
            pick the other: one query's mean moves by at most 1/n. f32 dumps are rounded to bf16 on the device (stated in
            kernels/*.h), which moves masses by up to 3e-4 and flips oracle choices whose
            mass gap is below that; a flip moves a trailing-window mean of a few hundred
            queries by ~1/(k-1)/n, hence 1e-2.
  output    output error and cosine: the device rounds P to the 16-bit type before P.V (as
            FlashAttention does; bf16 unit roundoff 2^-8), so the sparse-vs-dense relative
            error carries a GPU noise floor of ~2e-4: absolute 1e-3 plus 2% (5% for f32).
  signal    routing SNR and model parameters: gate scores come from the CPU helper in both
            backends, but the signal key is the highest-probability routable key of the
            dense pass, so on f32 dumps (rounded to bf16 on the device) near-tied keys can
            swap: 1e-3 relative there, 1e-5 on 16-bit dumps.
"""
import csv
import math
import sys

TOLERANCE = {  # dtype -> class -> (abs, rel)
    "bfloat16": {"selection": (1e-4, 0.0), "output": (1e-3, 0.02), "signal": (1e-6, 1e-5)},
    "float16": {"selection": (1e-4, 0.0), "output": (1e-3, 0.02), "signal": (1e-6, 1e-5)},
    "float32": {"selection": (1e-2, 0.0), "output": (1e-3, 0.05), "signal": (1e-3, 1e-3)},
}
KEY = ("layer", "head", "scope", "router", "block_size", "top_k")
EXACT = {"kv_head", "n_tokens", "n_blocks", "n_queries", "n_choice", "n_choice_trail",
         "snr_queries", "signal_queries", "planted_queries", "sparsity_nominal"}


def column_class(name):
    if name in EXACT:
        return "exact"
    if name.startswith("output_") or "output_rel_err" in name:
        return "output"
    if name.startswith(("snr", "p_fail", "delta_mu", "sigma", "mu_cluster", "cluster_excess",
                        "signal_")):
        return "signal"
    return "selection"


def queries_of(row, col):
    """The number of queries a selection-class mean of `row` is over."""
    name = "n_choice_trail" if "_trail" in col else "planted_queries" if col.startswith("planted") else "n_choice"
    try:
        return float(row.get(name, "nan"))
    except ValueError:
        return float("nan")


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {tuple(r[k] for k in KEY): r for r in rows}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in TOLERANCE:
        sys.exit("usage: compare_summary.py CPU.csv CUDA.csv bfloat16|float16|float32")
    a, b, dtype = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
    if set(a) != set(b):
        sys.exit(f"FAIL: row keys differ: {sorted(set(a) ^ set(b))[:5]}")
    worst = {}
    failures = 0
    for key, ra in a.items():
        rb = b[key]
        for col, va in ra.items():
            if col in KEY:
                continue
            vb = rb[col]
            try:
                fa, fb = float(va), float(vb)
            except ValueError:
                if va != vb:
                    failures += 1
                    print(f"FAIL {key} {col}: {va!r} vs {vb!r}")
                continue
            if math.isnan(fa) or math.isnan(fb):
                if math.isnan(fa) != math.isnan(fb):
                    failures += 1
                    print(f"FAIL {key} {col}: {fa} vs {fb}")
                continue
            cls = column_class(col)
            diff = abs(fa - fb)
            if cls == "exact":
                ok = diff == 0
                bound = 0.0
            else:
                abs_tol, rel_tol = TOLERANCE[dtype][cls]
                n = queries_of(ra, col)
                if cls == "selection" and n >= 1:
                    abs_tol += 2.0 / n  # "plus two queries' worth" (was max(): no room for the mean's rounding)
                bound = abs_tol + rel_tol * max(abs(fa), abs(fb))
                ok = diff <= bound
            ratio = diff / bound if bound > 0 else (0.0 if diff == 0 else math.inf)
            if ratio > worst.get(cls, (0, ""))[0]:
                worst[cls] = (ratio, f"{col} {key}: {fa:.6g} vs {fb:.6g}")
            if not ok:
                failures += 1
                if failures <= 20:
                    print(f"FAIL {key} {col}: cpu {fa:.8g} cuda {fb:.8g} (|diff| {diff:.3g} > {bound:.3g})")
    for cls, (ratio, where) in sorted(worst.items()):
        print(f"  worst {cls:9s} {ratio:6.3f} of its bound  ({where})")
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {len(a)} rows, {failures} values outside the {dtype} table")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
