"""MoBA routing in numpy, exactly as docs/routing.md (DESIGN.md §3) and the CPU reference
(kernels/cpu/block_pool.cpp, gate_topk.cpp, kconv.cpp) compute it. Shared by the numpy replay
(replay.py) and the transformers replay (replay_hf.py), which hand it float32 q/k.

Bit-exact to `moba route` on the same float32 values:
- pooled keys: summed in float64 in token order, divided by the block's real length, rounded
  once to float32, then to the pooling dtype (`pool_dtype`: the dump's, or float32);
- gate scores s(t, b) = q_t . kbar_b accumulated in float32 strictly in channel order, each
  product rounded to float32 (the C++ build uses -ffp-contract=off), no 1/sqrt(d);
- kconv keys k'_t = k_t + SiLU(sum_l w_l * k_{t-l}) in float64, rounded to float32;
- selection: current block c = floor(t / B) always; the min(k - 1, c) routable blocks (b < c)
  ranked by (score, index) descending under `recent` ((score, -index) under `older`), NaN
  below every number; output ascending, current block included, -1 padded to k.

Layouts: q [n_q_heads, n_tokens, head_dim], k [n_kv_heads, n_tokens, head_dim]; a query tile
is rows [t0, t1) of one head (or of each head of a KV group under `shared`).
"""
import numpy as np

ROUTERS = ("moba", "moba-kconv", "oracle")
DTYPES = ("float32", "float16", "bfloat16")


def block_count(n_tokens, block_size):
    return (n_tokens + block_size - 1) // block_size


def round_to(x, dtype):
    """x (any float array) -> float32 array holding x rounded to `dtype` the way the dump writer
    (experiments/dump/schema.py) stores it: float32 round-to-nearest-even; bfloat16 via float32
    with RNE on the upper 16 bits; float16 directly with RNE."""
    x = np.asarray(x)
    if dtype == "float32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "float16":
        return np.ascontiguousarray(x, dtype=np.float16).astype(np.float32)
    if dtype == "bfloat16":
        u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
        return (bits << 16).view(np.float32)
    raise ValueError("unknown dtype %r (one of %s)" % (dtype, ", ".join(DTYPES)))


def pool_keys(k, block_size, pool_dtype="float32"):
    """kbar [n_kv_heads, n_blocks, head_dim] float32: mean of each block's keys over its real
    length (float64 sums in token order, rounded once to float32, then to pool_dtype)."""
    k = np.asarray(k, dtype=np.float32)
    n_heads, n_tokens, d = k.shape
    B = block_size
    n_blocks = block_count(n_tokens, B)
    n_full = n_tokens // B
    acc = np.zeros((n_heads, n_blocks, d))
    for i in range(B):  # token i of every full block, in token order
        acc[:, :n_full] += k[:, i:n_full * B:B].astype(np.float64)
    lens = np.full(n_blocks, float(B))
    if n_full < n_blocks:  # the ragged last block
        for t in range(n_full * B, n_tokens):
            acc[:, n_full] += k[:, t].astype(np.float64)
        lens[n_full] = n_tokens - n_full * B
    mean = (acc / lens[None, :, None]).astype(np.float32)
    return round_to(mean, pool_dtype)


def kconv_keys(k, width=3, weights=None):
    """Causal depthwise key convolution of moba-kconv: k'_t = k_t + SiLU(sum_{l<W} w_l * k_{t-l})
    (k_{t-l} = 0 before the start), float64 arithmetic, float32 result. weights [W, head_dim]
    (row l multiplies k_{t-l}) or [n_kv_heads, W, head_dim]; None = uniform 1/W."""
    k = np.asarray(k, dtype=np.float32)
    n_heads, n_tokens, d = k.shape
    kd = k.astype(np.float64)
    conv = np.zeros_like(kd)
    for l in range(width):
        if weights is None:
            w = np.full((n_heads, 1, d), 1.0 / width)
        else:
            w = np.asarray(weights, dtype=np.float32).astype(np.float64)
            w = (w[:, l] if w.ndim == 3 else np.broadcast_to(w[l], (n_heads, d)))[:, None, :]
        conv[:, l:] += w * kd[:, :n_tokens - l]
    silu = conv / (1.0 + np.exp(-conv))
    return (kd + silu).astype(np.float32)


def gate_scores(q_rows, kbar_head):
    """s [rows, n_blocks] float32 = q_rows [rows, d] . kbar_head [n_blocks, d], accumulated in
    float32 in channel order (each product rounded to float32 before the add)."""
    q_rows = np.asarray(q_rows, dtype=np.float32)
    kt = np.ascontiguousarray(np.asarray(kbar_head, dtype=np.float32).T)  # [d, n_blocks]
    s = np.zeros((q_rows.shape[0], kt.shape[1]), dtype=np.float32)
    for c in range(kt.shape[0]):
        s += q_rows[:, c:c + 1] * kt[c][None, :]
    return s


def select_blocks(scores, t, block_size, top_k, tie="recent"):
    """selected [rows, top_k] int32 for query positions t [rows] from block scores
    [rows, n_cols] (any float type; columns >= c are ignored): the current block c plus the
    min(top_k - 1, c) best routable blocks, ascending, -1 padded."""
    if tie not in ("recent", "older"):
        raise ValueError("tie must be 'recent' or 'older', not %r" % tie)
    scores = np.asarray(scores)
    t = np.asarray(t, dtype=np.int64)
    rows, n_cols = scores.shape
    K = int(top_k)
    c = t // block_size
    n_pick = np.minimum(K - 1, c)
    out = np.full((rows, K), -1, dtype=np.int64)
    m = min(K - 1, n_cols)
    if m > 0:
        idx = np.broadcast_to(np.arange(n_cols), (rows, n_cols))
        s = scores.astype(np.float64)
        nan = np.isnan(s)
        # np.lexsort: the last key is the primary one; all ascending.
        keys = (-idx if tie == "recent" else idx,            # 3rd: index (larger first under recent)
                np.where(nan, 0.0, -s),                       # 2nd: higher score first
                nan,                                          # NaN below every number
                idx >= c[:, None])                            # 1st: routable blocks first
        order = np.lexsort(keys, axis=-1)[:, :m]
        big = np.iinfo(np.int64).max
        picks = np.where(np.arange(m)[None, :] < n_pick[:, None], order, big)
        picks.sort(axis=1)
        out[:, :m] = picks
    out[np.arange(rows), n_pick] = c
    out[out == np.iinfo(np.int64).max] = -1
    return out.astype(np.int32)


def block_sums(p_rows, block_size, n_blocks):
    """Block masses m [rows, n_blocks] of probability rows p_rows [rows, n_keys] (keys past a
    row's position must be 0): m(b) = sum of p over block b's keys, float64."""
    rows, n_keys = p_rows.shape
    pad = n_blocks * block_size - n_keys
    if pad < 0:
        raise ValueError("more keys than n_blocks * block_size")
    p = np.pad(np.asarray(p_rows, dtype=np.float64), ((0, 0), (0, pad)))
    return p.reshape(rows, n_blocks, block_size).sum(axis=-1)


def token_mask(selected, t, block_size, n_keys):
    """allowed [rows, n_keys] bool: key j is attended by query t iff its block is in the row
    of `selected` and j <= t."""
    selected = np.asarray(selected)
    rows = selected.shape[0]
    n_blocks = block_count(n_keys, block_size)
    in_sel = np.zeros((rows, n_blocks + 1), dtype=bool)  # the extra column absorbs -1 padding
    r = np.repeat(np.arange(rows), selected.shape[1])
    in_sel[r, np.where(selected.ravel() >= 0, selected.ravel(), n_blocks)] = True
    key_block = np.arange(n_keys) // block_size
    allowed = in_sel[:, key_block]
    allowed &= np.arange(n_keys)[None, :] <= np.asarray(t)[:, None]
    return allowed


class RouteSpec:
    """One routing configuration: router, block_size B, top_k k (counts the current block),
    tie rule, GQA policy, the dtype q/k are rounded to before routing (what a dump of that
    dtype would hold), the pooled-key precision (`dump` = route_dtype, or `fp32`), kconv."""

    def __init__(self, router, block_size, top_k, tie="recent", gqa="per-head", route_dtype="float32",
                 pool_precision="dump", kconv_width=3, kconv_weights=None):
        if router not in ROUTERS:
            raise ValueError("router %r is not one of %s" % (router, ", ".join(ROUTERS)))
        if block_size < 1 or top_k < 1:
            raise ValueError("block size and top-k must be >= 1")
        if gqa not in ("per-head", "shared"):
            raise ValueError("gqa must be per-head or shared")
        if route_dtype not in DTYPES:
            raise ValueError("route dtype %r is not one of %s" % (route_dtype, ", ".join(DTYPES)))
        if pool_precision not in ("dump", "fp32"):
            raise ValueError("pool precision must be dump or fp32")
        if kconv_width not in (3, 5):
            raise ValueError("kconv width must be 3 or 5")
        self.router, self.block_size, self.top_k = router, int(block_size), int(top_k)
        self.tie, self.gqa, self.route_dtype = tie, gqa, route_dtype
        self.pool_precision, self.kconv_width, self.kconv_weights = pool_precision, kconv_width, kconv_weights

    @property
    def name(self):
        return "%s_B%d_k%d" % (self.router, self.block_size, self.top_k)

    def dense(self, n_tokens):
        """k * B >= n_tokens: every query attends its whole causal past (MoBA = full attention)."""
        return self.top_k * self.block_size >= n_tokens


class LayerRouter:
    """Routing state of one layer: prepares the pooled keys once from the layer's q/k (any
    float dtype; rounded to spec.route_dtype), then routes query tiles."""

    def __init__(self, spec, q, k):
        self.spec = spec
        self.n_q_heads, self.n_tokens, _ = q.shape
        self.n_kv_heads = k.shape[0]
        self.group = self.n_q_heads // self.n_kv_heads
        self.n_blocks = block_count(self.n_tokens, spec.block_size)
        if spec.router != "oracle":
            self.q = round_to(q, spec.route_dtype)
            keys = round_to(k, spec.route_dtype)
            if spec.router == "moba-kconv":
                keys = kconv_keys(keys, spec.kconv_width, spec.kconv_weights)
            pool_dtype = spec.route_dtype if spec.pool_precision == "dump" else "float32"
            self.kbar = pool_keys(keys, spec.block_size, pool_dtype)

    def scores(self, heads, t0, t1, masses=None):
        """Block scores [rows, n_blocks] for query rows [t0, t1) of the query heads `heads` (one
        head under per-head, the KV group's heads in order under shared): gate scores (float32;
        summed in head order in float32 under shared) or, for the oracle, the block masses
        masses[i] [rows, n_blocks] of heads[i] (summed under shared)."""
        if self.spec.router == "oracle":
            out = np.array(masses[0], dtype=np.float64)
            for m in masses[1:]:
                out = out + m
            return out
        out = None
        for h in heads:
            s = gate_scores(self.q[h, t0:t1], self.kbar[h // self.group])
            out = s if out is None else out + s
        return out

    def select(self, scores, t0, t1):
        return select_blocks(scores, np.arange(t0, t1), self.spec.block_size, self.spec.top_k, self.spec.tie)


def route_layer(spec, q, k, masses_fn=None, tile=256):
    """Selections of a whole layer, selected [n_q_heads, n_tokens, top_k] int32, on q/k as given
    (no perturbation: what `moba route` computes on a dump of these q/k). masses_fn(h, t0, t1)
    -> [rows, n_blocks] is needed for the oracle."""
    lr = LayerRouter(spec, q, k)
    n_q, T = lr.n_q_heads, lr.n_tokens
    out = np.empty((n_q, T, spec.top_k), dtype=np.int32)
    units = ([list(range(g * lr.group, (g + 1) * lr.group)) for g in range(lr.n_kv_heads)]
             if spec.gqa == "shared" else [[h] for h in range(n_q)])
    for heads in units:
        for t0 in range(0, T, tile):
            t1 = min(T, t0 + tile)
            masses = [masses_fn(h, t0, t1) for h in heads] if spec.router == "oracle" else None
            sel = lr.select(lr.scores(heads, t0, t1, masses), t0, t1)
            for h in heads:
                out[h, t0:t1] = sel
    return out
