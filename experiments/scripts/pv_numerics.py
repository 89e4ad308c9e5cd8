#!/usr/bin/env python3
"""How precise P V is on a bf16 dump under three ways of taking the product, against fp64.

The GPU kernels compute P = exp(s - m) in fp32 (P <= 1, m the row's running maximum) and then
O = P V / sum(P) on tensor cores, where P must be 16-bit. This emulates the product three ways
on real or synthetic bf16 activations and prints the row-relative output error
||O - O_ref|| / ||O_ref|| against an fp64 softmax of the same bf16 inputs:

  split  P = hi + lo, both bf16, two products (`--precision exact` on bf16 dumps today)
  fp16   P and V rounded to fp16, one product (what `exact` does on fp16 dumps; bf16 -> fp16
         is exact for 2^-14 <= |v| <= 65504, below that fp16's subnormals keep |dv| < 2^-25)
  bf16   P rounded to bf16, one product (`--precision fast`)

Each row is taken twice: over all its causal keys, and over the top FRACTION of its causal
blocks of --block-size keys by exact block mass (the current block always kept), as a MoBA
selection would. Products are summed in fp64 here, so only the operands' rounding is measured
(fp32 accumulation adds ~1e-7). kernels/cuda/NOTES.md, fifty-second session, has the numbers.

    build/moba synth --out s.h5 --tokens 8192 --layers 1 --heads 2 --kv-heads 1 --head-dim 128 \\
        --dtype bf16 --min-distance 512 --seed 6
    python3 experiments/scripts/pv_numerics.py s.h5 --heads 0,1
    python3 experiments/scripts/pv_numerics.py experiments/data/stories15M_genesis_1024.h5 --layers 0,1 --heads 0,3

Needs numpy and h5py. Exit 2 on a bad file or argument.
"""
import argparse
import os
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # pragma: no cover
    sys.exit(f"pv_numerics.py: needs numpy and h5py ({e})")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dump"))
import schema  # noqa: E402  (the dump tools' bf16 conversion)

METHODS = ("split", "fp16", "bf16")


def fail(msg):
    print(f"pv_numerics.py: {msg}", file=sys.stderr)
    sys.exit(2)


def round_bf16(x):
    """fp32 -> bf16 (round to nearest even), returned as fp32."""
    return schema.bf16_bits_to_float(schema.float_to_bf16_bits(x))


def attr_text(d, name, default):
    v = d.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def load(f, path, layer, name):
    """A bf16 [heads, tokens, head_dim] dataset of /layers/<layer> of the open file f as fp32 (one
    dataset at a time: schema.read_dump would read every layer of a model's dump to study one)."""
    key = f"layers/{layer}/{name}"
    if key not in f:
        fail(f"{path}: no dataset /{key}")
    d = f[key]
    dtype, layout = attr_text(d, "dtype", ""), attr_text(d, "layout", "htd")
    if d.dtype != np.uint16 or dtype != "bfloat16":
        fail(f"{path}: /{key} is not bf16 (dtype attribute '{dtype}', stored as {d.dtype}); "
             "this study is about bf16 dumps")
    x = schema.bf16_bits_to_float(d[()])
    if x.ndim != 3:
        fail(f"{path}: /{key} has {x.ndim} dimensions, expected 3")
    if layout == "thd":
        x = x.transpose(1, 0, 2)
    elif layout != "htd":
        fail(f"{path}: /{key} has layout '{layout}' (expected htd or thd)")
    if not np.isfinite(x).all():
        fail(f"{path}: /{key} holds NaN or Inf")
    return x


def row_errors(q, k, v, rows, block_size, fraction):
    """Per method and selection, the row-relative errors of the given rows."""
    T, d = q.shape
    scale = 1.0 / np.sqrt(d)
    v64 = v.astype(np.float64)
    v16 = v.astype(np.float16).astype(np.float64)
    errs = {sel: {m: [] for m in METHODS} for sel in ("causal", "selected")}
    for t in rows:
        s = (q[t].astype(np.float64) @ k[: t + 1].T.astype(np.float64)).astype(np.float32).astype(np.float64) * scale
        p64 = np.exp(s - s.max())
        p = p64.astype(np.float32)  # the kernels' fp32 P
        n_blocks = t // block_size + 1
        mass = np.add.reduceat(p64, np.arange(0, t + 1, block_size))
        keep = np.zeros(n_blocks, bool)
        keep[np.argsort(-mass, kind="stable")[: max(1, int(round(fraction * n_blocks)))]] = True
        keep[-1] = True
        for sel, mask in (("causal", np.ones(t + 1, bool)), ("selected", np.repeat(keep, block_size)[: t + 1])):
            pm, pm64, vm, vm16 = p[mask], p64[mask], v64[: t + 1][mask], v16[: t + 1][mask]
            ref = pm64 @ vm / pm64.sum()
            norm = max(np.linalg.norm(ref), 1e-300)
            l = pm.astype(np.float64).sum()
            hi = round_bf16(pm)
            lo = round_bf16(pm - hi)
            out = {"split": (hi.astype(np.float64) + lo) @ vm / l,
                   "fp16": pm.astype(np.float16).astype(np.float64) @ vm16 / l,
                   "bf16": hi.astype(np.float64) @ vm / l}
            for m in METHODS:
                errs[sel][m].append(np.linalg.norm(out[m] - ref) / norm)
    return errs


def int_list(text, what):
    try:
        return [int(x) for x in text.split(",") if x != ""]
    except ValueError:
        fail(f"--{what} takes comma-separated integers (got '{text}')")


def study(f, a):
    """Prints the study of every asked layer and head of the open dump f."""
    for layer in int_list(a.layers, "layers"):
        q, k, v = (load(f, a.dump, layer, x) for x in "qkv")
        if k.shape != v.shape or q.shape[1:] != k.shape[1:] or q.shape[0] % k.shape[0]:
            fail(f"{a.dump}: layer {layer}: q {q.shape}, k {k.shape}, v {v.shape} do not fit together")
        group = q.shape[0] // k.shape[0]
        T = q.shape[1]
        rows = np.unique(np.linspace(min(8, T - 1), T - 1, a.rows).astype(int))
        for h in int_list(a.heads, "heads"):
            if not 0 <= h < q.shape[0]:
                fail(f"{a.dump}: layer {layer} has {q.shape[0]} query heads (asked for head {h})")
            kv = h // group
            vv = v[kv]
            nz = vv != 0
            over = np.abs(vv) > 65504  # past fp16's range: the fp16 product is meaningless there
            changed = (vv.astype(np.float16).astype(np.float32) != vv) & nz & ~over
            print(f"layer {layer} head {h}: {T} tokens, head dim {q.shape[2]}, {len(rows)} rows; V elements fp16 "
                  f"changes: {changed.sum()} of {nz.sum()} nonzero, {over.sum()} beyond its range "
                  f"(max |v| {np.abs(vv).max():.3g})")
            errs = row_errors(q[h], k[kv], vv, rows, a.block_size, a.fraction)
            for sel, label in (("causal", "all causal keys"), ("selected", f"top {a.fraction:g} of B={a.block_size}")):
                for m in METHODS:
                    e = np.array(errs[sel][m])
                    print(f"  {label:20s} {m:6s} row-rel error median {np.median(e):.2e}  "
                          f"p99 {np.quantile(e, 0.99):.2e}  max {e.max():.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", help="a bf16 dump (HDF5, schema v1)")
    ap.add_argument("--layers", default="0", help="layers, comma-separated (default 0)")
    ap.add_argument("--heads", default="0", help="query heads, comma-separated (default 0)")
    ap.add_argument("--rows", type=int, default=48, help="query rows a head, spread over the sequence (default 48)")
    ap.add_argument("--block-size", type=int, default=64, help="block size of the selection (default 64)")
    ap.add_argument("--fraction", type=float, default=0.25, help="share of causal blocks selected (default 0.25)")
    a = ap.parse_args()
    if a.rows < 1 or a.block_size < 1 or not 0.0 < a.fraction <= 1.0:
        fail("--rows and --block-size must be >= 1 and --fraction in (0, 1]")
    try:
        f = h5py.File(a.dump, "r")
    except (OSError, ValueError) as e:
        fail(f"{a.dump}: cannot open as HDF5 ({e})")
    with f:
        study(f, a)


if __name__ == "__main__":
    main()
