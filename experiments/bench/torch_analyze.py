#!/usr/bin/env python3
"""The PyTorch analysis baseline of PERF.md B4: what a careful PyTorch user would write to
get `moba analyze`'s headline metrics (DESIGN.md §3-§4) for one layer of a dump.

Per KV group (its query heads batched) and query chunk: dense causal attention over the key
prefix in fp32 (TF32 off) -> LSE, o_full, P; block masses m_t(b) by reshape-sum per block
size; gate scores q . kbar against mean-pooled keys (mean accumulated in fp64, rounded to
fp32 then to the dump dtype: `--pool-precision dump`); torch.topk for the router and the
oracle (current block always selected, top-(k-1) among routable blocks b < floor(t/B), ties
toward the more recent block); MoBA output by masked P.V. Means over queries with a choice
(floor(t/B) > k-1), as `moba analyze` (analysis/metrics.h) defines them.

Ties are exact: top-k runs on int64 keys (order-preserving bits of the fp32 score << 32 |
block index), so equal scores pick the larger block index, as kernels/gate_topk.h says.
Where torch and the workbench can still differ: fp32 accumulation order (gate scores,
softmax sums), which can flip a selection at near-ties of the gate scores or masses.

usage: torch_analyze.py DUMP [--layer 0] [--block-sizes 16,32,64,128] [--top-k 2,4,8]
                        [--device cuda] [--out CSV] [--chunk-bytes N]
Reads HDF5 dumps through h5py (schema v1: bf16 as uint16/opaque with dtype="bfloat16",
layout htd or thd) and .safetensors dumps without it. Prints the read time and the analysis
wall time (torch.cuda.synchronize before the clock stops; the file read excluded).
"""
import argparse
import csv
import json
import math
import sys
import time

import numpy as np
import torch

ROUTERS = ("moba", "oracle")
METRICS = ("coverage", "oracle_coverage", "kl", "block_recall", "token_recall", "output_rel_err", "sparsity")
TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def read_h5(path, layer):
    import h5py
    out, dtype = {}, None
    with h5py.File(path, "r") as f:
        for name in ("q", "k", "v"):
            ds = f[f"layers/{layer}/{name}"]
            tag = ds.attrs.get("dtype", b"")
            tag = tag.decode() if isinstance(tag, bytes) else str(tag)
            layout = ds.attrs.get("layout", b"htd")
            layout = layout.decode() if isinstance(layout, bytes) else str(layout)
            raw = ds[()]
            if tag == "bfloat16" or raw.dtype.itemsize == 2 and raw.dtype.kind not in "f":
                t, dtype = torch.from_numpy(np.ascontiguousarray(raw).view(np.int16)).view(torch.bfloat16), "bfloat16"
            else:
                t = torch.from_numpy(np.ascontiguousarray(raw))
                dtype = {np.dtype("<f4"): "float32", np.dtype("<f2"): "float16"}[raw.dtype.newbyteorder("<")]
            out[name] = t.transpose(0, 1).contiguous() if layout == "thd" else t
    return out["q"], out["k"], out["v"], dtype


def read_safetensors(path, layer):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base, out = 8 + n, {}
        for name in ("q", "k", "v"):
            e = header[f"layers.{layer}.{name}"]
            np_dtype, dtype = {"F32": (np.float32, "float32"), "F16": (np.float16, "float16"),
                               "BF16": (np.int16, "bfloat16")}[e["dtype"]]
            f.seek(base + e["data_offsets"][0])
            a = np.frombuffer(f.read(e["data_offsets"][1] - e["data_offsets"][0]), dtype=np_dtype).reshape(e["shape"])
            t = torch.from_numpy(a.copy())
            out[name] = t.view(torch.bfloat16) if dtype == "bfloat16" else t
    return out["q"], out["k"], out["v"], dtype


def pooled_keys(k, B, dtype):
    """Mean of each block's keys [nb, d]: fp64 sum / real length -> fp32 -> dump dtype."""
    T, d = k.shape
    nb = -(-T // B)
    kd = torch.nn.functional.pad(k.double(), (0, 0, 0, nb * B - T))
    lens = torch.full((nb, 1), float(B), dtype=torch.float64, device=k.device)
    lens[-1] = T - (nb - 1) * B
    mean = (kd.view(nb, B, d).sum(1) / lens).float()
    return mean.to(TORCH_DTYPE[dtype]).float()


def order_key(x, routable):
    """int64 key: order of the fp32 score (NaN lowest), then the block index (recent first);
    non-routable blocks below everything."""
    bits = (x + 0.0).view(torch.int32).long()  # + 0.0 turns -0 into +0 (they tie)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    bits = torch.where(torch.isnan(x), torch.full_like(bits, -2**31 + 1), bits)
    idx = torch.arange(x.shape[-1], device=x.device)
    key = bits * 2**32 + idx
    return torch.where(routable, key, torch.full_like(key, -2**63))


def analyze_group(q, k, v, dtype, block_sizes, top_ks, n_top, chunk, acc):
    """q [G, T, d], k and v [T, d] fp32 on the device; adds per-(router, B, k) sums over the
    queries with a choice to acc[(router, B, k)] = {metric: [G] fp64 sums, 'n': [G]}."""
    G, T, d = q.shape
    dev = q.device
    scale = 1.0 / math.sqrt(d)
    L = max(block_sizes)
    Tp = -(-T // L) * L
    kp = torch.nn.functional.pad(k, (0, 0, 0, Tp - T))
    vp = torch.nn.functional.pad(v, (0, 0, 0, Tp - T))
    # [ceil(Tp / B), d]: blocks past T (zero rows) are never routable
    kbar = {B: torch.nn.functional.pad(pooled_keys(k, B, dtype), (0, 0, 0, -(-Tp // B) - -(-T // B)))
            for B in block_sizes}
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        C, t1p = t1 - t0, min(Tp, -(-t1 // L) * L)  # keys [0, t1p): the causal prefix, padded to L
        t = torch.arange(t0, t1, device=dev)
        S = torch.matmul(q[:, t0:t1], kp[:t1p].T) * scale  # [G, C, t1p]
        S.masked_fill_(torch.arange(t1p, device=dev)[None, :] > t[:, None], float("-inf"))
        lse = torch.logsumexp(S, dim=-1, keepdim=True)
        top_val, top_idx = torch.topk(S, min(n_top, t1p), dim=-1)  # [G, C, n_top]
        P = torch.exp(S - lse)
        del S
        o_full = torch.matmul(P, vp[:t1p])  # [G, C, d]
        for B in block_sizes:
            nbc = -(-t1p // B)
            Pb = P if nbc * B == t1p else torch.nn.functional.pad(P, (0, nbc * B - t1p))
            mass = Pb.view(G, C, nbc, B).sum(-1)  # [G, C, nbc]
            del Pb
            c = t // B
            blocks = torch.arange(nbc, device=dev)
            routable = (blocks[None, :] < c[:, None]).expand(G, C, nbc)
            scores = torch.matmul(q[:, t0:t1], kbar[B][:nbc].T)  # [G, C, nbc], no scale
            mass_c = mass.gather(-1, c.view(1, C, 1).expand(G, C, 1)).double().squeeze(-1)
            keys = {"moba": order_key(scores, routable), "oracle": order_key(mass, routable)}
            top_blk = top_idx // B
            for K in top_ks:
                choice = c >= K  # floor(t / B) > K - 1
                if not bool(choice.any()):
                    continue
                picks = {r: torch.topk(keys[r], K - 1, dim=-1).indices if K > 1 else None for r in ROUTERS}
                oracle_cov = mass_c + (mass.gather(-1, picks["oracle"]).double().sum(-1) if K > 1 else 0)
                sparsity = 1.0 - ((t - c * B + 1) + (K - 1) * B).double() / (t + 1).double()
                for r in ROUTERS:
                    sel = torch.zeros(G, C, nbc, dtype=torch.bool, device=dev)
                    if K > 1:
                        sel.scatter_(-1, picks[r], True)
                    routed = sel.clone()
                    sel.scatter_(-1, c.view(1, C, 1).expand(G, C, 1), True)
                    cov = mass_c + (mass.gather(-1, picks[r]).double().sum(-1) if K > 1 else 0)
                    kl = -torch.log(cov.clamp_min(1e-300))
                    recall = (routed.gather(-1, picks["oracle"]).double().mean(-1) if K > 1
                              else torch.full_like(cov, float("nan")))
                    valid = top_val > float("-inf")
                    tok = (sel.gather(-1, top_blk) & valid).double().sum(-1) / valid.double().sum(-1)
                    keep = sel.repeat_interleave(B, dim=-1)[..., :t1p]  # [G, C, t1p] key mask
                    Pm = P * keep
                    o_moba = torch.matmul(Pm, vp[:t1p]) / Pm.sum(-1, keepdim=True)
                    del Pm, keep
                    err = ((o_moba - o_full).norm(dim=-1) / o_full.norm(dim=-1)).double()
                    vals = {"coverage": cov, "oracle_coverage": oracle_cov, "kl": kl, "block_recall": recall,
                            "token_recall": tok, "output_rel_err": err, "sparsity": sparsity.expand(G, C)}
                    a = acc[(r, B, K)]
                    m = choice.expand(G, C)
                    a["n"] += m.double().sum(-1)
                    for name in METRICS:
                        a[name] += torch.where(m, vals[name], torch.zeros_like(vals[name])).sum(-1)
        del P, o_full


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--block-sizes", default="16,32,64,128")
    ap.add_argument("--top-k", default="2,4,8")
    ap.add_argument("--top-n", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None, help="CSV path (default: stdout)")
    ap.add_argument("--chunk-bytes", type=float, default=2**30,
                    help="bytes of one [group heads, chunk, n_tokens] fp32 score block (1 GiB)")
    a = ap.parse_args()
    block_sizes = [int(x) for x in a.block_sizes.split(",")]
    top_ks = [int(x) for x in a.top_k.split(",")]
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)

    t_read = time.perf_counter()
    reader = read_safetensors if a.dump.endswith(".safetensors") else read_h5
    q, k, v, dtype = reader(a.dump, a.layer)
    t_read = time.perf_counter() - t_read

    H, T, d = q.shape
    n_kv = k.shape[0]
    G = H // n_kv
    chunk = max(1, min(T, int(a.chunk_bytes // (4 * G * T))))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_run = time.perf_counter()
    rows = []
    for g in range(n_kv):
        qg = q[g * G:(g + 1) * G].to(dev).float()
        kg, vg = k[g].to(dev).float(), v[g].to(dev).float()
        acc = {(r, B, K): {m: torch.zeros(G, dtype=torch.float64, device=dev) for m in METRICS + ("n",)}
               for r in ROUTERS for B in block_sizes for K in top_ks}
        with torch.no_grad():
            analyze_group(qg, kg, vg, dtype, block_sizes, top_ks, a.top_n, chunk, acc)
        for i in range(G):
            for B in block_sizes:
                for K in top_ks:
                    if (T - 1) // B < K:  # no query has a choice: MoBA is dense (moba analyze skips it)
                        continue
                    for r in ROUTERS:
                        s = {m: float(x[i]) for m, x in acc[(r, B, K)].items()}
                        row = {"layer": a.layer, "head": g * G + i, "router": r, "block_size": B, "top_k": K}
                        for m in METRICS:
                            row[m + "_mean"] = s[m] / s["n"] if s["n"] > 0 else float("nan")
                        rows.append(row)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_run = time.perf_counter() - t_run

    cols = ["layer", "head", "router", "block_size", "top_k"] + [m + "_mean" for m in METRICS]
    f = open(a.out, "w", newline="") if a.out else sys.stdout
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for row in rows:
        w.writerow({c: (repr(x) if isinstance(x, float) else x) for c, x in row.items()})
    if a.out:
        f.close()
    print(f"torch_analyze: {H} heads x {T} tokens x d{d} ({dtype}), B {block_sizes} x k {top_ks}, "
          f"routers {','.join(ROUTERS)}, device {dev}, chunk {chunk}: read {t_read:.2f} s, "
          f"analysis {t_run:.2f} s wall", file=sys.stderr)


if __name__ == "__main__":
    main()
