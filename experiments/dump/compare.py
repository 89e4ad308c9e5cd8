#!/usr/bin/env python3
"""Compares two schema-v1 dumps of the same tokens, per layer and head.

For each layer present in both: the causal attention scores S = q k^T / sqrt(head_dim) (lower
triangle, per q head, GQA-aware) and v (per kv head). S is invariant to any permutation of head_dim
applied to both q and k, such as llama2.c's interleaved RoPE pairs versus transformers'
rotate-half order, so dumps of either layout compare. The error is relative in the Frobenius
norm: ||S_a - S_b|| / ||S_b|| per head (b is the reference). Exit status 1 when any exceeds --tol.

usage: compare.py A B [--tol 1e-3] [--max-tokens N] [--quiet]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schema  # noqa: E402


def causal_scores(q, k):
    """q [n_q_heads, n_tokens, head_dim], k [n_kv_heads, n_tokens, head_dim] -> lower-triangle
    scores [n_q_heads, n_tokens * (n_tokens + 1) / 2] in float64."""
    group = q.shape[0] // k.shape[0]
    kr = np.repeat(k.astype(np.float64), group, axis=0)
    s = q.astype(np.float64) @ kr.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    rows, cols = np.tril_indices(q.shape[1])
    return s[:, rows, cols]


def rel_err(a, b):
    """per head (axis 0) ||a - b|| / ||b||."""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)


def compare(path_a, path_b, max_tokens=0):
    """-> list of (layer, score errors per q head, v errors per kv head)."""
    _, ta, la = schema.read_dump(path_a)
    _, tb, lb = schema.read_dump(path_b)
    n = min(next(iter(la.values()))["q"][0].shape[1], next(iter(lb.values()))["q"][0].shape[1])
    if max_tokens:
        n = min(n, max_tokens)
    if ta is not None and tb is not None and not np.array_equal(ta[:n], tb[:n]):
        raise schema.DumpError("%s and %s: token_ids differ in the first %d tokens" % (path_a, path_b, n))
    common = sorted(set(la) & set(lb))
    if not common:
        raise schema.DumpError("%s and %s: no layer in common" % (path_a, path_b))
    out = []
    for l in common:
        qa, ka, va = (schema.as_float32(la[l][t])[:, :n] for t in ("q", "k", "v"))
        qb, kb, vb = (schema.as_float32(lb[l][t])[:, :n] for t in ("q", "k", "v"))
        if qa.shape != qb.shape or ka.shape != kb.shape:
            raise schema.DumpError("layer %d: shapes differ: q %s vs %s, k %s vs %s"
                                   % (l, qa.shape, qb.shape, ka.shape, kb.shape))
        out.append((l, rel_err(causal_scores(qa, ka), causal_scores(qb, kb)), rel_err(va, vb)))
    return n, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b", help="the reference")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--max-tokens", type=int, default=0, help="compare the first N tokens only")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        n, rows = compare(args.a, args.b, args.max_tokens)
    except schema.DumpError as e:
        print("compare: error: %s" % e, file=sys.stderr)
        return 2
    worst = 0.0
    if not args.quiet:
        print("%d tokens; relative error ||a-b||/||b|| per head (max over heads, then each head)" % n)
    for l, es, ev in rows:
        worst = max(worst, es.max(), ev.max())
        if not args.quiet:
            print("layer %d  scores max %.2e [%s]  v max %.2e [%s]" % (
                l, es.max(), " ".join("%.1e" % e for e in es), ev.max(), " ".join("%.1e" % e for e in ev)))
    ok = worst <= args.tol
    print("%s: worst %.3e, tolerance %.1e" % ("PASS" if ok else "FAIL", worst, args.tol))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
