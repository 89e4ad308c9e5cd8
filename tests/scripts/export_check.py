"""Reads a `moba export` file with json + numpy only, following docs/export.md, rebuilds the
dense per-query block mask [n_q_heads, n_tokens, n_blocks] and compares it with the route
file's `selected` (read with h5py).
usage: export_check.py ROUTE.h5 EXPORT.safetensors FORMAT"""
import json
import struct
import sys

import h5py
import numpy as np

DTYPES = {"I32": "<i4", "I64": "<i8", "U8": "u1", "F32": "<f4", "BOOL": "?"}


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, d in header.items():
        b, e = d["data_offsets"]
        a = np.frombuffer(raw[base + b:base + e], dtype=DTYPES[d["dtype"]])
        assert a.size == int(np.prod(d["shape"], dtype=np.int64)), name
        tensors[name] = a.reshape(d["shape"])
    assert base + max([d["data_offsets"][1] for d in header.values()] + [0]) == len(raw), "trailing bytes"
    return tensors, meta


def dense_from_selected(sel, n_blocks):
    H, T, K = sel.shape
    m = np.zeros((H, T, n_blocks + 1), dtype=bool)  # column n_blocks collects the -1 pads
    hh, tt, _ = np.meshgrid(np.arange(H), np.arange(T), np.arange(K), indexing="ij")
    m[hh, tt, np.where(sel < 0, n_blocks, sel)] = True
    return m[:, :, :n_blocks]


if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)
if len(sys.argv) != 4:
    print(__doc__.splitlines()[-1], file=sys.stderr)
    sys.exit(2)
route, path, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
with h5py.File(route, "r") as f:
    sel = f["selected"][...]
    B = int(f.attrs["block_size"])
    n_kv = int(f.attrs["n_kv_heads"])
    gqa = f.attrs["gqa"]
    gqa = gqa.decode() if isinstance(gqa, bytes) else str(gqa)
H, T, K = sel.shape
NB = -(-T // B)
want = dense_from_selected(sel, NB)
t, meta = load_safetensors(path)
assert meta["format"] == fmt, meta
assert int(meta["block_size"]) == B and int(meta["n_tokens"]) == T and int(meta["n_blocks"]) == NB

if fmt == "flashinfer-bsr":
    R, C, M, N = (int(meta[k]) for k in ("R", "C", "M", "N"))
    assert R == 1 and C == B and M == N == NB * B and M >= T
    indptr, indices, ho = t["indptr"], t["indices"], t["head_offsets"]
    assert indptr.shape == (H, M + 1) and ho.shape == (H + 1,) and ho[-1] == indices.size
    got = np.zeros((H, M, N // C), dtype=bool)
    for h in range(H):
        ind = indices[ho[h]:ho[h + 1]]
        assert indptr[h, 0] == 0 and indptr[h, -1] == ind.size and np.all(np.diff(indptr[h]) >= 0)
        for r in range(M):
            cols = ind[indptr[h, r]:indptr[h, r + 1]]
            assert np.all(np.diff(cols) > 0), "columns of a row not strictly ascending"
            got[h, r, cols] = True
    assert not got[:, T:].any(), "padded query rows must be empty"
    got = got[:, :T]
elif fmt == "flex-blockmask":
    assert int(meta["Q_BLOCK_SIZE"]) == B and int(meta["KV_BLOCK_SIZE"]) == B
    kn, ki, fn, fi = t["kv_num_blocks"], t["kv_indices"], t["full_kv_num_blocks"], t["full_kv_indices"]
    assert kn.shape == fn.shape == (1, H, NB) and ki.shape == fi.shape == (1, H, NB, NB)
    assert np.array_equal(t["selected"], sel), "stored selected differs from the route"
    for h in range(H):
        for qb in range(NB):
            part = set(ki[0, h, qb, :kn[0, h, qb]].tolist())
            full = set(fi[0, h, qb, :fn[0, h, qb]].tolist())
            assert not (part & full), "a block both partial and full"
            rows = want[h, qb * B:min(T, (qb + 1) * B)]
            assert part | full == set(np.nonzero(rows.any(axis=0))[0].tolist()), "union per query block"
            for b in full:  # full: strictly past and selected by every query of the block
                assert b < qb and rows[:, b].all()
    # The exact per-query mask comes from `selected` (the mask_mod's input), as docs/export.md shows.
    got = dense_from_selected(t["selected"], NB)
elif fmt == "flashmoba-csc":
    off, nnz, ind = t["col_offsets"], t["col_nnz"], t["indices"]
    assert off.shape == nnz.shape == (1, H, NB) and off.dtype == np.int64 and nnz.dtype == np.int32
    assert nnz.sum() == ind.size
    got = np.zeros((H, T, NB), dtype=bool)
    flat = off.reshape(-1)
    assert flat[0] == 0 and np.array_equal(flat[1:], np.cumsum(nnz.reshape(-1))[:-1]), "offsets not a prefix sum"
    for h in range(H):
        for c in range(NB):
            rows = ind[off[0, h, c]:off[0, h, c] + nnz[0, h, c]]
            assert np.all(np.diff(rows) > 0), "rows of a column not strictly ascending"
            got[h, rows, c] = True
elif fmt == "nsa-indices":
    bi, bc = t["block_indices"], t["block_counts"]
    Ho = bi.shape[2]
    assert bi.shape == (1, T, Ho, K) and bc.shape == (1, T, Ho)
    if meta["heads"] == "kv":
        assert gqa == "shared" and Ho == n_kv and int(meta["kv_repeat"]) == 1
        head_of = lambda h: h // (H // n_kv)
    else:
        assert Ho == H and int(meta["kv_repeat"]) == H // n_kv
        head_of = lambda h: h
    got = np.zeros((H, T, NB), dtype=bool)
    for h in range(H):
        for tt in range(T):
            row = bi[0, tt, head_of(h)]
            c = bc[0, tt, head_of(h)]
            assert np.all(row[c:] == -1) and np.all(row[:c] >= 0) and np.all(np.diff(row[:c]) > 0)
            assert np.all(row[:c] <= tt // B), "non-causal block"
            got[h, tt, row[:c]] = True
else:
    raise SystemExit("unknown format " + fmt)

if not np.array_equal(got, want):
    bad = np.argwhere(got != want)[:5]
    raise SystemExit(f"{fmt}: dense block mask differs from `selected` at (head, token, block) {bad.tolist()}")
print(f"ok {fmt}: {H} heads x {T} tokens x {NB} blocks, {int(want.sum())} selections match")
