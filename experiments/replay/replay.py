#!/usr/bin/env python3
"""Replays a llama2.c model with MoBA sparse attention in chosen layers and measures the real
next-token loss (`moba replay`, docs/replay.md).

For each configuration (router x block size B x top-k k) the whole sequence is run again with
MoBA attention in the chosen layers, routing online on the perturbed residual stream of each
layer with exactly the rules of docs/routing.md (routing.py, bit-exact to `moba route`), and
per prediction position t (predicting token t+1) it records

    nll_t   = -ln p_sparse(x_{t+1} | x_{<=t})
    dnll_t  = nll_t - nll_full_t
    kl_t    = KL(p_full(. | x_{<=t}) || p_sparse(. | x_{<=t}))   over the vocabulary

plus, per routed layer, head and query, the online proxies on the stream the layer really
sees: coverage R_t (full-attention mass inside the selected blocks), -ln R_t and the
attention output's relative error. Routers: moba, moba-kconv (routing only), oracle (the
current block plus the top-(k-1) routable blocks by the layer's true block mass: an equal-
budget coverage bound, not a loss bound).

The run directory also holds the dump of the same window (the plain forward of the dump tool,
experiments/dump/llama2c.py), `moba analyze` on it (the per-position proxies), the acceptance
checks (full replay = plain forward; k*B >= T = full attention exactly; layer-0 selections =
`moba route` on the dump) and the validity report (report.py).

Arithmetic: float64 like the dump tool's numpy forward; attention in query tiles, causal keys
only. Routing rounds q/k to --route-dtype first (float32 default: what a float32 dump holds).

Exit codes: 0 done, 2 bad input or usage, 1 internal error or a failed acceptance check
(everything is still written; run.json says which check failed).
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "experiments", "dump"))

try:
    import numpy as np
    import h5py  # noqa: F401  (dump and replay.h5)
except ImportError as e:
    print("moba replay: error: %s: needs numpy and h5py (Debian: python3-numpy python3-h5py)" % e, file=sys.stderr)
    sys.exit(2)

import llama2c  # noqa: E402
import routing  # noqa: E402
import schema  # noqa: E402

EXIT_INPUT, EXIT_INTERNAL = 2, 1
NLL_TOLERANCE = 1e-5        # full-attention replay vs the plain forward (mean NLL)
ORACLE_TIE_TOLERANCE = 1e-5  # oracle picks that differ from `moba route` must be this close in mass


class UsageError(Exception):
    pass


def log(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path):
    return {"path": os.path.abspath(path), "size": os.path.getsize(path), "sha256": sha256_file(path)}


def parse_int_list(text, name):
    """Positive integers, comma-separated, each once (as `moba analyze` reads its lists: an
    empty item, such as a trailing comma, or a value given twice is an error)."""
    items = text.split(",")
    if any(not x.strip() for x in items):
        raise UsageError("%s: empty item in list %r" % (name, text))
    try:
        vals = [int(x) for x in items]
    except ValueError:
        raise UsageError("%s: not a comma-separated list of integers: %r" % (name, text))
    if min(vals) < 1:
        raise UsageError("%s: need positive integers, got %r" % (name, text))
    if len(set(vals)) != len(vals):
        raise UsageError("%s: %d given twice" % (name, next(v for v in vals if vals.count(v) > 1)))
    return sorted(vals)


# ---------------------------------------------------------------------------------------------
# The forward pass with a per-layer attention plan


def masked_softmax(s, mask):
    """Row softmax of s [rows, n_keys] over the keys where mask is True (float64)."""
    x = np.where(mask, s, -np.inf)
    x -= x.max(axis=-1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=-1, keepdims=True)
    return p


class LayerRecord:
    """What a routed layer leaves behind: selections and the online proxies per head and query."""

    def __init__(self, n_q_heads, n_tokens, top_k):
        self.selected = np.full((n_q_heads, n_tokens, top_k), -1, dtype=np.int32)
        self.coverage = np.ones((n_q_heads, n_tokens), dtype=np.float64)
        self.out_err = np.zeros((n_q_heads, n_tokens), dtype=np.float64)


def attention_layer(q, k, v, spec, tile):
    """Causal attention of one layer: full when spec is None, else MoBA routed by spec on these
    q/k. q [n_q_heads, T, d], k/v [n_kv_heads, T, d], float64. Returns (out [n_q_heads, T, d],
    LayerRecord or None). Full and MoBA attention share one code path (masked_softmax on the
    same scores), so MoBA with every causal key selected equals full attention bit for bit."""
    n_q, T, d = q.shape
    n_kv = k.shape[0]
    group = n_q // n_kv
    out = np.empty_like(q)
    lr = routing.LayerRouter(spec, q, k) if spec is not None else None
    rec = LayerRecord(n_q, T, spec.top_k) if spec is not None else None
    for g in range(n_kv):
        heads = list(range(g * group, (g + 1) * group))
        for t0 in range(0, T, tile):
            t1 = min(T, t0 + tile)
            tt = np.arange(t0, t1)
            causal = np.arange(t1)[None, :] <= tt[:, None]
            kg, vg = k[g, :t1], v[g, :t1]
            scores = {h: q[h, t0:t1] @ kg.T / np.sqrt(d) for h in heads}   # [rows, t1]
            p_full = {h: masked_softmax(scores[h], causal) for h in heads}
            if spec is None:
                for h in heads:
                    out[h, t0:t1] = p_full[h] @ vg
                continue
            units = [heads] if spec.gqa == "shared" else [[h] for h in heads]
            for unit in units:
                masses = ([routing.block_sums(p_full[h], spec.block_size, lr.n_blocks) for h in unit]
                          if spec.router == "oracle" else None)
                sel = lr.select(lr.scores(unit, t0, t1, masses), t0, t1)
                allowed = routing.token_mask(sel, tt, spec.block_size, t1)
                for h in unit:
                    o = masked_softmax(scores[h], allowed) @ vg
                    out[h, t0:t1] = o
                    o_full = p_full[h] @ vg
                    rec.selected[h, t0:t1] = sel
                    rec.coverage[h, t0:t1] = np.where(allowed, p_full[h], 0.0).sum(axis=-1)
                    nf = np.linalg.norm(o_full, axis=-1)
                    ne = np.linalg.norm(o - o_full, axis=-1)
                    rec.out_err[h, t0:t1] = np.where(nf > 0, ne / np.where(nf > 0, nf, 1.0), ne)
    return out, rec


def forward(model, tokens, plan, tile=256):
    """llama2.c's forward (llama2c.Model.forward's arithmetic) with attention_layer; plan maps
    layer -> RouteSpec (absent: full attention). Returns (h [T, dim] after the final RMSNorm,
    {layer: LayerRecord})."""
    cfg, w = model.cfg, model.w
    tokens = np.asarray(tokens, dtype=np.int64)
    T, hd = tokens.size, cfg.head_dim
    positions = np.arange(T)
    records = {}
    x = w["tok_embeddings"][tokens]
    for layer in range(cfg.n_layers):
        xb = llama2c.rmsnorm(x, w["rms_att"][layer])
        q = (xb @ w["wq"][layer].T).reshape(T, cfg.n_heads, hd).transpose(1, 0, 2)
        k = (xb @ w["wk"][layer].T).reshape(T, cfg.n_kv_heads, hd).transpose(1, 0, 2)
        v = (xb @ w["wv"][layer].T).reshape(T, cfg.n_kv_heads, hd).transpose(1, 0, 2)
        q = llama2c.rope_interleaved(q, positions)
        k = llama2c.rope_interleaved(k, positions)
        att, rec = attention_layer(q, k, np.ascontiguousarray(v), plan.get(layer), tile)
        if rec is not None:
            records[layer] = rec
        x = x + att.transpose(1, 0, 2).reshape(T, cfg.dim) @ w["wo"][layer].T
        xb = llama2c.rmsnorm(x, w["rms_ffn"][layer])
        h1 = xb @ w["w1"][layer].T
        h3 = xb @ w["w3"][layer].T
        x = x + (h1 / (1.0 + np.exp(-h1)) * h3) @ w["w2"][layer].T
    return llama2c.rmsnorm(x, w["rms_final"]), records


def log_probs(model, h):
    lg = model.logits(h)
    m = lg.max(axis=-1, keepdims=True)
    return lg - (m + np.log(np.exp(lg - m).sum(axis=-1, keepdims=True)))


class FullReference:
    """Per-position log-probabilities of the full-attention run (float64), in chunks."""

    def __init__(self, model, h_full, tokens, chunk=512):
        self.h = h_full
        self.chunk = chunk
        self.tokens = np.asarray(tokens)
        n = len(tokens) - 1
        self.logp = []
        self.nll = np.empty(n)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            lp = log_probs(model, h_full[s:e])
            self.logp.append(lp)
            self.nll[s:e] = -lp[np.arange(e - s), self.tokens[s + 1:e + 1]]

    def compare(self, model, h):
        """(nll, kl) per prediction position of a run with final states h. Rows whose states equal
        the full run's bit for bit get the full NLL and KL 0 without evaluating the classifier."""
        n = len(self.tokens) - 1
        nll, kl = self.nll.copy(), np.zeros(n)
        for ci, s in enumerate(range(0, n, self.chunk)):
            e = min(n, s + self.chunk)
            diff = np.flatnonzero(np.any(h[s:e] != self.h[s:e], axis=-1))
            if diff.size == 0:
                continue
            lp = log_probs(model, h[s + diff])
            lf = self.logp[ci][diff]
            nll[s + diff] = -lp[np.arange(diff.size), self.tokens[s + 1 + diff]]
            kl[s + diff] = np.sum(np.exp(lf) * (lf - lp), axis=-1)
        return nll, np.maximum(kl, 0.0)


# ---------------------------------------------------------------------------------------------
# Statistics


def bootstrap_ci(values, chunk, n_boot, seed, level=0.95):
    """(mean, lo, hi): percentile bootstrap of the mean over contiguous position chunks of
    `chunk` positions (resampled with replacement), so correlation along the sequence is kept
    inside a chunk. NaN when there are no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    n_chunks = max(1, int(math.ceil(values.size / chunk)))
    sums = np.array([values[i * chunk:(i + 1) * chunk].sum() for i in range(n_chunks)])
    counts = np.array([values[i * chunk:(i + 1) * chunk].size for i in range(n_chunks)], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_chunks, size=(n_boot, n_chunks))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    a = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


# ---------------------------------------------------------------------------------------------
# The run


def resolve_configs(args, n_tokens):
    """RouteSpecs in run order: per router, per B, per k."""
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    for r in routers:
        if r not in routing.ROUTERS:
            raise UsageError("--routers: unknown router %r (one of %s)" % (r, ", ".join(routing.ROUTERS)))
    bs = parse_int_list(args.block_sizes, "--block-sizes")
    if (args.top_k is None) == (args.budget is None):
        raise UsageError("give exactly one of --top-k LIST and --budget KEYS")
    pairs = []
    for B in bs:
        ks = parse_int_list(args.top_k, "--top-k") if args.top_k else [max(1, int(round(args.budget / B)))]
        pairs += [(B, k) for k in ks]
    kconv_weights = read_kconv_weights(args.kconv_weights) if args.kconv_weights else None
    specs = []
    for r in routers:
        for B, k in pairs:
            specs.append(routing.RouteSpec(r, B, k, tie=args.tie, gqa=args.gqa, route_dtype=args.route_dtype,
                                           pool_precision=args.pool_precision, kconv_width=args.kconv,
                                           kconv_weights=kconv_weights))
    return specs, routers, bs, pairs


def read_kconv_weights(path):
    """[W, head_dim] float32 from a .npy file or text (W lines of head_dim numbers, separated by
    spaces or commas, '#' comments), the two forms `moba route --kconv-weights` reads."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError("--kconv-weights %s: cannot open (%s)" % (path, e.strerror or e))
    if data.startswith(b"\x93NUMPY"):
        try:
            return np.load(path).astype(np.float32)
        except (OSError, ValueError) as e:
            raise UsageError("--kconv-weights %s: cannot read the .npy file (%s)" % (path, e))
    rows = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        words = line.split("#", 1)[0].replace(",", " ").split()
        if not words:
            continue
        try:
            row = [float(w) for w in words]
        except ValueError:
            raise UsageError("--kconv-weights %s: line %d: not a list of numbers" % (path, n))
        if rows and len(row) != len(rows[0]):
            raise UsageError("--kconv-weights %s: line %d has %d values, previous rows have %d"
                             % (path, n, len(row), len(rows[0])))
        rows.append(row)
    if not rows:
        raise UsageError("--kconv-weights %s: no numbers in the file" % path)
    return np.array(rows, dtype=np.float32)


def read_tokens(args):
    if args.token_ids:
        ids, src = llama2c.read_token_ids(args.token_ids), args.token_ids
    else:
        if not args.tokenizer:
            raise UsageError("--text needs --tokenizer (llama2.c tokenizer.bin)")
        ids, src = llama2c.Tokenizer(args.tokenizer).encode(llama2c.read_text(args.text)), args.text
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise UsageError("--max-tokens: %d is not a positive count" % args.max_tokens)
        if len(ids) < args.max_tokens:
            raise UsageError("%s: gives %d tokens, fewer than --max-tokens %d" % (src, len(ids), args.max_tokens))
        ids = ids[:args.max_tokens]
    if len(ids) < 2:
        raise UsageError("%s: need at least 2 tokens" % src)
    return ids


def git_label():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def prepare_out(out):
    """Work in OUT.partial; OUT must be absent, empty or an earlier replay run (run.json with
    command 'replay')."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise UsageError("--out %s: exists and is not a directory" % out)
        entries = os.listdir(out)
        if entries:
            try:
                with open(os.path.join(out, "run.json")) as f:
                    ok = json.load(f).get("command") == "replay"
            except (OSError, ValueError):
                ok = False
            if not ok:
                raise UsageError("--out %s: not empty and not an earlier replay run (no run.json of "
                                 "moba replay); refusing to replace it" % out)
    parent = os.path.dirname(os.path.abspath(out.rstrip("/")))
    if not os.path.isdir(parent):
        raise UsageError("--out %s: the directory %s does not exist" % (out, parent))
    if not os.access(parent, os.W_OK):
        raise UsageError("--out %s: the directory %s is not writable" % (out, parent))
    partial = out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        os.mkdir(partial)
    except OSError as e:
        raise UsageError("--out %s: cannot create %s (%s)" % (out, partial, e.strerror or e))
    return partial


def finish_out(partial, out):
    if os.path.exists(out):
        old = "%s.old-%d" % (out.rstrip("/"), os.getpid())
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, out)


def run_moba(moba, argv, quiet):
    cmd = [moba] + argv + (["--quiet"] if quiet else [])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if not quiet else subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise RuntimeError("%s exited with %d%s" % (" ".join(cmd), res.returncode,
                                                   (": " + res.stderr.strip()) if quiet and res.stderr else ""))
    return res.stdout


def analyze_argv(args, dump, out_dir, bs, pairs, routers, n_tokens):
    """`moba analyze` on the dump, the same configurations (the ones that route at all)."""
    routed = [(B, k) for B, k in pairs if k * B < n_tokens]
    if not routed:
        return None
    argv = ["analyze", dump, "--block-sizes", ",".join(str(B) for B in sorted({B for B, _ in routed}))]
    ks = sorted({k for _, k in routed})
    if args.budget is not None:
        argv += ["--sparsity", repr(1.0 - args.budget / n_tokens)]
    else:
        argv += ["--top-k", ",".join(str(k) for k in ks)]
    argv += ["--routers", ",".join(routers), "--tie", args.tie, "--gqa", args.gqa,
             "--pool-precision", args.pool_precision, "--kconv", str(args.kconv),
             "--positions", "metrics", "--keep-heads", "all", "--out", out_dir]
    if args.layers != "all":
        argv += ["--layers", args.layers]
    if args.kconv_weights:
        argv += ["--kconv-weights", args.kconv_weights]
    return argv


def route_check(args, moba, dump, spec, selected0, q0, k0, work, quiet):
    """Layer 0 sees the unperturbed stream: its selections must equal `moba route` on the dump
    (exactly for the gate routers; the oracle may differ only where two blocks' masses tie within
    ORACLE_TIE_TOLERANCE, since `moba route` computes the masses from the dump's float32 q/k)."""
    out = os.path.join(work, "route_%s.h5" % spec.name)
    argv = ["route", dump, "--layer", "0", "--block-size", str(spec.block_size), "--top-k", str(spec.top_k),
            "--router", spec.router, "--tie", spec.tie, "--gqa", spec.gqa, "--pool-precision", spec.pool_precision,
            "--out", out]
    if spec.router == "moba-kconv":
        argv += ["--kconv", str(spec.kconv_width)]
        if args.kconv_weights:
            argv += ["--kconv-weights", args.kconv_weights]
    run_moba(moba, argv, True)
    with h5py.File(out, "r") as f:
        want = f["selected"][...]
    os.remove(out)
    bad_rows = np.argwhere(np.any(want != selected0, axis=-1))
    near_ties = 0
    if spec.router == "oracle" and bad_rows.size:
        group = q0.shape[0] // k0.shape[0]
        d = q0.shape[2]
        n_blocks = routing.block_count(q0.shape[1], spec.block_size)
        for h, t in bad_rows:
            s = k0[h // group, :t + 1] @ q0[h, t] / np.sqrt(d)
            p = np.exp(s - s.max())
            p /= p.sum()
            m = routing.block_sums(p[None, :], spec.block_size, n_blocks)[0]
            a, b = set(selected0[h, t]) - set(want[h, t]), set(want[h, t]) - set(selected0[h, t])
            if abs(sum(m[i] for i in a) - sum(m[i] for i in b)) <= ORACLE_TIE_TOLERANCE * max(1, len(a)):
                near_ties += 1
    n_bad = int(bad_rows.shape[0])
    passed = n_bad == 0 or (spec.router == "oracle" and near_ties == n_bad)
    note = ""
    if spec.router == "oracle" and spec.route_dtype != "float32":
        # the replay's oracle ranks the model's own (float64) block masses; `moba route` ranks masses
        # of the dump's rounded q/k: compared and reported, not required to agree
        passed, note = True, "oracle on a %s dump: compared, not checked" % spec.route_dtype
    return {"config": spec.name, "router": spec.router, "block_size": spec.block_size, "top_k": spec.top_k,
            "rows": int(selected0.shape[0] * selected0.shape[1]), "mismatched_rows": n_bad,
            "mismatched_near_ties": near_ties, "pass": bool(passed), "note": note}


def write_csv(path, header, rows):
    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("%.6g" % v)
        return str(v)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(fmt(r[h]) for h in header) + "\n")
    os.replace(tmp, path)


REPLAY_COLUMNS = ["config", "router", "block_size", "top_k", "layers", "n_tokens", "n_positions", "first_choice",
                  "n_choice", "nll_mean", "dnll_mean", "dnll_lo", "dnll_hi", "kl_mean", "kl_lo", "kl_hi",
                  "abs_dnll_mean", "dnll_pos_share", "dnll_all_mean", "kl_all_mean", "online_coverage_mean",
                  "online_kl_mean", "online_out_err_mean", "wall_seconds"]


def run(args):
    t_start = time.time()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.tile < 1 or args.chunk < 1 or args.bootstrap < 10:
        raise UsageError("--tile and --chunk must be >= 1, --bootstrap >= 10")
    model = llama2c.Model(args.model)
    cfg = model.cfg
    tokens = read_tokens(args)
    T = len(tokens)
    bad = [i for i, t in enumerate(tokens) if not 0 <= t < cfg.vocab_size]
    if bad:
        raise UsageError("%s: token %d (id %d) is out of the model's range [0, %d)"
                         % (args.token_ids or args.text, bad[0], tokens[bad[0]], cfg.vocab_size))
    layers = schema.parse_layers(args.layers, cfg.n_layers)
    specs, routers, bs, pairs = resolve_configs(args, T)
    w = next((s.kconv_weights for s in specs if s.kconv_weights is not None), None)
    if w is not None:  # as `moba route --kconv-weights` checks them: [W, head_dim], finite
        if w.ndim != 2 or w.shape != (args.kconv, cfg.head_dim):
            raise UsageError("--kconv-weights %s: shape %s, the model needs [%d, %d] (--kconv W, head dim)"
                             % (args.kconv_weights, list(w.shape), args.kconv, cfg.head_dim))
        if not np.isfinite(w).all():
            raise UsageError("--kconv-weights %s: a non-finite weight" % args.kconv_weights)
    if args.dense_check:
        B = max(bs)
        specs.append(routing.RouteSpec("moba", B, routing.block_count(T, B), tie=args.tie, gqa=args.gqa,
                                       route_dtype=args.route_dtype, pool_precision=args.pool_precision))
    partial = prepare_out(args.out)
    q = args.quiet
    log("replay: %s, %d tokens, %d layers x %d heads; %d configurations on layers %s"
        % (os.path.basename(args.model), T, cfg.n_layers, cfg.n_heads, len(specs), ",".join(map(str, layers))), q)

    # 1. The plain forward of the dump tool: the dump of this window and the reference NLL.
    t0 = time.time()
    h_plain, captured = model.forward(tokens, capture_layers=set(range(cfg.n_layers)))
    nll_plain = float(model.nll(tokens)) if args.plain_nll_direct else None
    dump = os.path.join(partial, "dump.h5")
    schema.write_dump(dump, {l: captured[l] for l in layers}, token_ids=tokens,
                      model=args.model_name or os.path.basename(args.model),
                      source=args.source or (args.token_ids or args.text), dtype=args.dump_dtype)
    q0, k0 = captured[0][0], captured[0][1]
    del captured
    log("replay: plain forward and dump.h5 (%s) in %.1f s" % (args.dump_dtype, time.time() - t0), q)

    # 2. Full attention through the replay's own path.
    t0 = time.time()
    h_full, _ = forward(model, tokens, {}, args.tile)
    ref = FullReference(model, h_full, tokens)
    plain_ref = FullReference(model, h_plain, tokens)
    if nll_plain is None:
        nll_plain = float(plain_ref.nll.mean())
    nll_full = float(ref.nll.mean())
    checks = {"full_vs_plain": {"nll_plain": nll_plain, "nll_replay_full": nll_full,
                                "abs_diff": abs(nll_full - nll_plain),
                                "max_abs_diff_per_position": float(np.max(np.abs(ref.nll - plain_ref.nll))),
                                "tolerance": NLL_TOLERANCE, "pass": abs(nll_full - nll_plain) <= NLL_TOLERANCE}}
    del plain_ref, h_plain
    log("replay: full attention %.6f nats/token (plain forward %.6f) in %.1f s"
        % (nll_full, nll_plain, time.time() - t0), q)

    n_pos = T - 1
    rows = []
    pos_cols = {"t": np.arange(n_pos), "token_next": np.asarray(tokens[1:]), "nll_full": ref.nll}
    route_checks = []
    with h5py.File(os.path.join(partial, "replay.h5.tmp"), "w") as f5:
        f5.attrs["n_tokens"] = T
        f5.attrs["layers"] = np.asarray(layers, dtype=np.int32)
        f5.create_dataset("token_ids", data=np.asarray(tokens, dtype=np.int32))
        f5.create_dataset("full/nll", data=ref.nll)
        for spec in specs:
            t0 = time.time()
            h, recs = forward(model, tokens, {l: spec for l in layers}, args.tile)
            nll, kl = ref.compare(model, h)
            dnll = nll - ref.nll
            first_choice = spec.top_k * spec.block_size     # queries t >= k*B have a choice
            choice = np.arange(n_pos) >= first_choice
            dn_m, dn_lo, dn_hi = bootstrap_ci(dnll[choice], args.chunk, args.bootstrap, args.seed)
            kl_m, kl_lo, kl_hi = bootstrap_ci(kl[choice], args.chunk, args.bootstrap, args.seed)
            cov = np.stack([recs[l].coverage for l in layers])[:, :, first_choice:]   # [L, H, n_choice]
            err = np.stack([recs[l].out_err for l in layers])[:, :, first_choice:]
            row = {"config": spec.name, "router": spec.router, "block_size": spec.block_size, "top_k": spec.top_k,
                   "layers": "all" if args.layers == "all" else args.layers.replace(",", ";"),
                   "n_tokens": T, "n_positions": n_pos, "first_choice": first_choice,
                   "n_choice": int(choice.sum()), "nll_mean": float(nll.mean()),
                   "dnll_mean": dn_m, "dnll_lo": dn_lo, "dnll_hi": dn_hi, "kl_mean": kl_m, "kl_lo": kl_lo,
                   "kl_hi": kl_hi, "abs_dnll_mean": float(np.abs(dnll[choice]).mean()) if choice.any() else math.nan,
                   "dnll_pos_share": float((dnll[choice] > 0).mean()) if choice.any() else math.nan,
                   "dnll_all_mean": float(dnll.mean()), "kl_all_mean": float(kl.mean()),
                   "online_coverage_mean": float(cov.mean()) if cov.size else math.nan,
                   "online_kl_mean": float(-np.log(np.maximum(cov, 1e-300)).mean()) if cov.size else math.nan,
                   "online_out_err_mean": float(err.mean()) if err.size else math.nan,
                   "wall_seconds": round(time.time() - t0, 1)}
            if spec.dense(T):
                row["config"] = "dense_" + spec.name
                checks["dense"] = {"config": spec.name, "identical_final_states": bool(np.array_equal(h, h_full)),
                                   "max_abs_dnll": float(np.max(np.abs(dnll))), "max_kl": float(np.max(kl)),
                                   "mean_nll": float(nll.mean())}
                checks["dense"]["pass"] = bool(checks["dense"]["identical_final_states"]
                                               and checks["dense"]["max_abs_dnll"] == 0.0)
            rows.append(row)
            g = f5.create_group("configs/" + row["config"])
            for key in ("router", "block_size", "top_k", "tie", "gqa", "route_dtype", "pool_precision"):
                g.attrs[key] = getattr(spec, key)
            for name, arr in (("nll", nll), ("dnll", dnll), ("kl", kl)):
                g.create_dataset(name, data=arr)
            sel_type = np.int16 if routing.block_count(T, spec.block_size) < 32767 else np.int32
            for l in layers:
                gl = g.create_group("layers/%d" % l)
                gl.create_dataset("selected", data=recs[l].selected.astype(sel_type), compression="gzip",
                                  shuffle=True, chunks=True)
                gl.create_dataset("coverage", data=recs[l].coverage.astype(np.float32), compression="gzip")
                gl.create_dataset("out_err", data=recs[l].out_err.astype(np.float32), compression="gzip")
            if not spec.dense(T):
                pos_cols["dnll:" + row["config"]] = dnll
                pos_cols["kl:" + row["config"]] = kl
            if args.moba and 0 in layers and args.route_dtype == args.dump_dtype:
                route_checks.append(route_check(args, args.moba, dump, spec, recs[0].selected, q0, k0, partial, True))
            summary = ("dNLL %+.5f [%+.5f, %+.5f]  KL %.5f" % (dn_m, dn_lo, dn_hi, kl_m) if not spec.dense(T) else
                       "k*B >= T: %s full attention" % ("identical to" if checks["dense"]["pass"] else "DIFFERS from"))
            log("replay: %-22s %s  (%.1f s)%s"
                % (row["config"], summary, row["wall_seconds"],
                   "  layer 0 = moba route: %s" % ("yes" if route_checks[-1]["pass"] else "NO")
                   if route_checks and route_checks[-1]["config"] == spec.name else ""), q)
    os.replace(os.path.join(partial, "replay.h5.tmp"), os.path.join(partial, "replay.h5"))
    write_csv(os.path.join(partial, "replay.csv"), REPLAY_COLUMNS, rows)
    pos_header = list(pos_cols)
    with open(os.path.join(partial, "positions.csv"), "w") as f:
        f.write(",".join(pos_header) + "\n")
        cols = [pos_cols[c] for c in pos_header]
        for i in range(n_pos):
            f.write(",".join(("%d" % c[i]) if j < 2 else ("%.8g" % c[i]) for j, c in enumerate(cols)) + "\n")
    if route_checks:
        write_csv(os.path.join(partial, "route_check.csv"), list(route_checks[0]), route_checks)
        checks["route_layer0"] = {"pass": all(r["pass"] for r in route_checks), "configs": route_checks}
    elif not args.moba:
        checks["route_layer0"] = {"skipped": "no moba binary (--moba)"}
    else:
        checks["route_layer0"] = {"skipped": "layer 0 not routed or --route-dtype differs from --dump-dtype"}

    # 3. The proxies of `moba analyze` on the same dump.
    analyze = None
    if args.moba and not args.no_analyze:
        argv = analyze_argv(args, dump, os.path.join(partial, "analyze"), bs, pairs, routers, T)
        if argv:
            t0 = time.time()
            log("replay: moba %s" % " ".join(argv[:1] + argv[2:]), q)
            run_moba(args.moba, argv, True)
            analyze = {"argv": [a.replace(partial, args.out) for a in argv], "wall_seconds": round(time.time() - t0, 1)}
            if not args.no_report:  # the project's own figures of the analyze output (moba plot)
                res = subprocess.run([args.moba, "plot", os.path.join(partial, "analyze")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                analyze["plot"] = "analyze/index.html" if res.returncode == 0 else \
                    "moba plot failed: " + (res.stderr.strip().splitlines() or ["?"])[-1]

    run_json = {
        "command": "replay", "git_commit": args.commit or git_label(), "started_utc": started,
        "host": platform.node(), "python": platform.python_version(), "numpy": np.__version__,
        "input": {"model": file_record(args.model) if os.path.isfile(args.model) else {"path": os.path.abspath(args.model)},
                  "tokenizer": file_record(args.tokenizer) if args.tokenizer else None,
                  "text": file_record(args.text) if args.text else None,
                  "token_ids_file": file_record(args.token_ids) if args.token_ids else None,
                  "token_ids_sha256": hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).hexdigest(),
                  "dump": file_record(dump)},
        "config": {"argv": sys.argv[1:], "n_tokens": T, "layers": layers, "routers": routers, "block_sizes": bs,
                   "configs_B_k": [list(p) for p in pairs], "budget": args.budget, "tie": args.tie, "gqa": args.gqa,
                   "route_dtype": args.route_dtype, "pool_precision": args.pool_precision, "kconv_width": args.kconv,
                   "kconv_weights": args.kconv_weights or "uniform", "kconv_apply": "routing",
                   "dump_dtype": args.dump_dtype, "tile": args.tile, "chunk": args.chunk,
                   "bootstrap": args.bootstrap, "seed": args.seed, "dense_check": args.dense_check,
                   "model_config": vars(cfg)},
        "analyze": analyze, "checks": checks, "wall_seconds": round(time.time() - t_start, 1),
    }
    with open(os.path.join(partial, "run.json"), "w") as f:
        json.dump(run_json, f, indent=1, sort_keys=False)
        f.write("\n")

    if not args.no_report:
        import report
        report.build(partial, quiet=q)
    finish_out(partial, args.out)
    failed = [name for name, c in checks.items() if isinstance(c, dict) and c.get("pass") is False]
    print("replay: %s: %d configurations; checks: %s" % (
        args.out, len(rows), ", ".join("%s %s" % (n, "skipped" if "skipped" in c else ("pass" if c["pass"] else "FAIL"))
                                       for n, c in checks.items())))
    if failed:
        print("moba replay: check failed: %s (see %s/run.json)" % (", ".join(failed), args.out), file=sys.stderr)
        return EXIT_INTERNAL
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "report":
        import report
        return report.main(argv[1:])
    ap = argparse.ArgumentParser(prog="moba replay", description="Replays a llama2.c model with MoBA attention "
                                 "in chosen layers: real next-token loss and output KL per configuration, the "
                                 "acceptance checks, moba analyze on the dump of the same window, and the validity "
                                 "report (docs/replay.md).",
                                 epilog="Rebuild only the report of a run: moba replay report RUN. docs/replay.md")
    ap.add_argument("--model", required=True, help="llama2.c checkpoint (.bin, fp16 or xz-compressed) or a "
                                                   "converted transformers folder")
    ap.add_argument("--tokenizer", help="llama2.c tokenizer.bin (with --text)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="UTF-8 text (encoded with BOS = 1)")
    g.add_argument("--token-ids", help="whitespace-separated token ids, used as they are")
    ap.add_argument("--max-tokens", type=int, default=None, help="keep the first N >= 1 tokens (BOS included); error if fewer")
    ap.add_argument("--block-sizes", required=True, help="comma-separated B")
    ap.add_argument("--top-k", help="comma-separated k (every B x k), k counts the current block")
    ap.add_argument("--budget", type=int, help="keys per query: k = max(1, round(BUDGET / B)) per B")
    ap.add_argument("--routers", default="moba,oracle", help="of moba, moba-kconv, oracle (default moba,oracle)")
    ap.add_argument("--layers", default="all", help="layers where MoBA replaces attention (default all)")
    ap.add_argument("--tie", default="recent", choices=("recent", "older"))
    ap.add_argument("--gqa", default="per-head", choices=("per-head", "shared"))
    ap.add_argument("--route-dtype", default="float32", choices=routing.DTYPES,
                    help="q/k are rounded to this before routing (default float32)")
    ap.add_argument("--pool-precision", default="dump", choices=("dump", "fp32"))
    ap.add_argument("--kconv", type=int, default=3, choices=(3, 5), help="moba-kconv width")
    ap.add_argument("--kconv-weights", help="[W, head_dim] float32 .npy (default uniform 1/W)")
    ap.add_argument("--dump-dtype", default="float32", choices=schema.DTYPES,
                    help="dtype of dump.h5 (default float32: = the routing's inputs, so layer 0 is checkable)")
    ap.add_argument("--no-dense-check", dest="dense_check", action="store_false",
                    help="skip the k*B >= T configuration that must equal full attention")
    ap.add_argument("--plain-nll-direct", action="store_true",
                    help="also evaluate the plain forward's NLL with llama2c.Model.nll (a second plain pass)")
    ap.add_argument("--moba", help="the moba binary (for analyze and the layer-0 route check; moba replay passes it)")
    ap.add_argument("--no-analyze", action="store_true", help="do not run moba analyze on the dump")
    ap.add_argument("--no-report", action="store_true", help="do not build report/")
    ap.add_argument("--tile", type=int, default=256, help="query rows per attention tile (memory only)")
    ap.add_argument("--chunk", type=int, default=64, help="positions per bootstrap chunk (default 64)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--model-name", help="dump root attribute 'model' (default: the checkpoint's file name)")
    ap.add_argument("--source", help="dump root attribute 'source' (default: the input path)")
    ap.add_argument("--commit", help=argparse.SUPPRESS)
    ap.add_argument("--out", required=True, help="run directory (written as OUT.partial, renamed at the end)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (UsageError, llama2c.CheckpointError, schema.DumpError) as e:
        print("moba replay: error: %s" % e, file=sys.stderr)
        shutil.rmtree(args.out.rstrip("/") + ".partial", ignore_errors=True)
        return EXIT_INPUT
    except RuntimeError as e:
        print("moba replay: internal error: %s" % e, file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        shutil.rmtree(args.out.rstrip("/") + ".partial", ignore_errors=True)
        print("moba replay: interrupted (SIGINT); %s is unchanged" % args.out, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
