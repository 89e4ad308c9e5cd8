"""Checks `moba export` against the real engine code on the GPU machine (torch + safetensors
there; tests/gpu/export_check.sh prepares DIR and runs it):
- every export loads with safetensors.torch.load_file;
- the flex-blockmask export, built into a BlockMask exactly as docs/export.md shows, gives
  through FlexAttention (eager and torch.compile) the MoBA output of `moba route --with-output`;
- dense SDPA with the per-token mask from `selected` gives the same output (the mask itself);
- flashinfer-bsr, flashmoba-csc and nsa-indices (engines not on the image) are decoded as
  docs/export.md describes each layout into a per-(head, query, block) mask, and dense SDPA
  (f64) with that mask gives the same output.
Prints PASS / FAIL per check (max |diff| <= 1e-3 against route's output) and exits 1 on a FAIL.
Prepare DIR here (h5py), then run `python3 tests/gpu/export_flex_check.py DIR` there:
  build/moba synth --out s.h5 --tokens 1024 --heads 4 --kv-heads 2 --head-dim 64 --seed 5 --quiet
  build/moba route s.h5 --layer 0 --block-size 128 --top-k 3 --with-output --out r.h5 --quiet
  for f in flashinfer-bsr flex-blockmask flashmoba-csc nsa-indices; do
    build/moba export r.h5 --format $f --out DIR/r.$f.safetensors; done
  python3 -c "import h5py, numpy as np; s = h5py.File('s.h5'); r = h5py.File('r.h5')
  [np.save(f'DIR/{n}.npy', s['layers/0/' + n][...].astype(np.float32)) for n in 'qkv']
  np.save('DIR/out.npy', r['output'][...])"
(B = 128 because Flex's kernels tile by 128.)"""
import os
import sys

import numpy as np, torch
from safetensors.torch import load_file
from safetensors import safe_open
from torch.nn.attention.flex_attention import BlockMask, flex_attention
dev = "cuda"
D = sys.argv[1]
P = lambda name: os.path.join(D, name)
for f in ["flashinfer-bsr", "flex-blockmask", "flashmoba-csc", "nsa-indices"]:
    t = load_file(P(f"r.{f}.safetensors")); m = safe_open(P(f"r.{f}.safetensors"), "pt").metadata()
    print("safetensors.torch loads", f, {k: (tuple(v.shape), str(v.dtype)) for k, v in t.items()}, m["format"])
t = load_file(P("r.flex-blockmask.safetensors"), device=dev); meta = safe_open(P("r.flex-blockmask.safetensors"), "pt").metadata()
B, T, NB = int(meta["block_size"]), int(meta["n_tokens"]), int(meta["n_blocks"])
q = torch.from_numpy(np.load(P("q.npy"))).to(dev)[None]   # [1, H, T, d]
k = torch.from_numpy(np.load(P("k.npy"))).to(dev)[None]
v = torch.from_numpy(np.load(P("v.npy"))).to(dev)[None]
H, Hkv = q.shape[1], k.shape[1]
sel = t["selected"].long()
lut = torch.zeros(H, T, NB + 1, dtype=torch.bool, device=dev)
lut.scatter_(2, torch.where(sel < 0, NB, sel), True)
def mask_mod(b, h, qi, kv):
    return lut[h, qi, kv // B] & (kv <= qi)
bm = BlockMask.from_kv_blocks(t["kv_num_blocks"], t["kv_indices"], t["full_kv_num_blocks"], t["full_kv_indices"],
                              BLOCK_SIZE=(B, B), mask_mod=mask_mod, seq_lengths=(T, T))
print(bm)
ref = torch.from_numpy(np.load(P("out.npy"))).to(dev)   # route's MoBA output [H, T, d]
for name, fn in [("eager", flex_attention), ("compiled", torch.compile(flex_attention))]:
    try:
        o = fn(q, k, v, block_mask=bm, enable_gqa=True)[0]
        print(name, "flex vs moba route output: max abs diff", (o - ref).abs().max().item())
    except Exception as e:
        print(name, "failed:", repr(e)[:400])
# dense SDPA with the per-token mask
tok = lut[:, :, torch.arange(T, device=dev) // B] & (torch.arange(T, device=dev)[None, :, None] >= torch.arange(T, device=dev)[None, None, :])
kr, vr = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
od = torch.nn.functional.scaled_dot_product_attention(q.double(), kr.double(), vr.double(), attn_mask=tok[None])[0]
print("dense sdpa(f64) vs moba route output: max abs diff", (od.float() - ref).abs().max().item())

fails = []
def verdict(name, diff):
    ok = diff <= 1e-3
    print(f"{'PASS' if ok else 'FAIL'} {name}: max abs diff {diff:.3g}")
    if not ok: fails.append(name)

def dense_with(lut_hq):  # lut_hq [H, T, NB] bool -> dense f64 SDPA output [H, T, d]
    ar = torch.arange(T, device=dev)
    m = lut_hq[:, :, ar // B] & (ar[None, :, None] >= ar[None, None, :])
    return torch.nn.functional.scaled_dot_product_attention(q.double(), kr.double(), vr.double(), attn_mask=m[None])[0].float()

verdict("dense sdpa with route's selected", (od.float() - ref).abs().max().item())
for name, fn in [("flex eager", flex_attention)]:
    verdict(name, (fn(q, k, v, block_mask=bm, enable_gqa=True)[0] - ref).abs().max().item())

# flashinfer-bsr: one BSR (R = 1, C = B) per query head, indptr local to the head's slice.
t = load_file(P("r.flashinfer-bsr.safetensors"))
lut_bsr = torch.zeros(H, T, NB, dtype=torch.bool)
ho, ip, ind = t["head_offsets"], t["indptr"], t["indices"]
for h in range(H):
    cols = ind[int(ho[h]):int(ho[h + 1])]
    for r in range(T):
        lut_bsr[h, r, cols[int(ip[h, r]):int(ip[h, r + 1])].long()] = True
verdict("flashinfer-bsr (decoded as BSR rows)", (dense_with(lut_bsr.to(dev)) - ref).abs().max().item())

# flashmoba-csc: per (head, key block) the ascending query rows that selected it.
t = load_file(P("r.flashmoba-csc.safetensors"))
lut_csc = torch.zeros(H, T, NB, dtype=torch.bool)
off, nnz, rows = t["col_offsets"][0], t["col_nnz"][0], t["indices"]
for h in range(H):
    for b in range(NB):
        o = int(off[h, b]); lut_csc[h, rows[o:o + int(nnz[h, b])].long(), b] = True
verdict("flashmoba-csc (decoded as CSC columns)", (dense_with(lut_csc.to(dev)) - ref).abs().max().item())

# nsa-indices: per token and (KV or query) head the first block_counts indices.
t = load_file(P("r.nsa-indices.safetensors")); m = safe_open(P("r.nsa-indices.safetensors"), "pt").metadata()
bi, bc = t["block_indices"][0], t["block_counts"][0]   # [T, H', K], [T, H']
Hp = bi.shape[1]
lut_nsa = torch.zeros(H, T, NB, dtype=torch.bool)
for hp in range(Hp):
    qheads = [hp] if m["heads"] == "q" else list(range(hp * (H // Hp), (hp + 1) * (H // Hp)))
    for r in range(T):
        idx = bi[r, hp, :int(bc[r, hp])].long()
        for h in qheads: lut_nsa[h, r, idx] = True
verdict("nsa-indices (decoded as NSA rows)", (dense_with(lut_nsa.to(dev)) - ref).abs().max().item())
print("export check:", "all PASS" if not fails else "FAIL: " + ", ".join(fails))
sys.exit(1 if fails else 0)
