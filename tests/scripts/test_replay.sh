#!/usr/bin/env bash
# `moba replay` (experiments/replay/) without the real model, on a random llama2.c checkpoint
# with GQA (4 q / 2 kv heads, 2 layers) written here:
# 1. routing.py = `moba route` bit for bit on adversarial shapes (T = 1, B = 1, ragged last
#    block, k = 1, k >= n_blocks, exact ties under both tie rules, shared GQA, bf16/f16 pooling,
#    kconv W = 5 with a weights file (.npy, and text in a replay run), the oracle);
# 2. the acceptance checks of a replay run: full-attention replay = the plain forward
#    (llama2c.Model.nll) to 1e-5, k*B >= T = full attention bit for bit, layer-0 selections =
#    `moba route` on the dump of the same window;
# 3. an independent naive forward (T x T matrices, masks built from the stored selections)
#    reproduces every configuration's per-position NLL, and routing.py on its perturbed layer-1
#    q/k reproduces the stored layer-1 selections (routing is online, on the perturbed stream);
# 4. the report's files (`moba replay report RUN`), and refusals (exit 2, nothing left behind).
# usage: test_replay.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
REPO=$(cd "$HERE/../.." && pwd)
export MOBA_PYTHON="$PY"

"$PY" - "$REPO" "$WORK" "$MOBA" <<'PYEOF'
import os, subprocess, sys
import numpy as np
repo, work, moba = sys.argv[1:4]
sys.path.insert(0, os.path.join(repo, "experiments", "replay"))
sys.path.insert(0, os.path.join(repo, "experiments", "dump"))
import h5py, routing, schema, struct
fails = []

def route_cli(dump, B, K, router, tie, gqa, pool, extra=()):
    out = os.path.join(work, "r.h5")
    subprocess.run([moba, "route", dump, "--layer", "0", "--block-size", str(B), "--top-k", str(K), "--router", router,
                    "--tie", tie, "--gqa", gqa, "--pool-precision", pool, "--out", out, "--quiet"] + list(extra), check=True,
                   stdout=subprocess.DEVNULL)
    with h5py.File(out, "r") as f:
        return f["selected"][...]

rng = np.random.default_rng(7)
np.save(os.path.join(work, "w5.npy"), rng.standard_normal((5, 16)).astype(np.float32))
# kconv W = 5 weights for the replay model's head dim 8 as text (W lines, commas, a comment):
# the other form --kconv-weights reads
with open(os.path.join(work, "w5_d8.txt"), "w") as f:
    f.write("# kconv W = 5, head dim 8\n")
    for row in np.random.default_rng(8).standard_normal((5, 8)).astype(np.float32):
        f.write(", ".join(repr(float(x)) for x in row) + "\n")
cases = [  # T, B, K, hq, hkv, dtype, tie, gqa, router, pool, ties
    (113, 16, 3, 4, 2, "float32", "recent", "per-head", "moba", "dump", False),
    (113, 16, 3, 4, 2, "bfloat16", "recent", "per-head", "moba", "dump", True),
    (113, 16, 3, 4, 2, "bfloat16", "older", "shared", "moba", "dump", True),
    (1, 4, 2, 2, 1, "float32", "recent", "per-head", "moba", "dump", False),
    (37, 1, 5, 2, 2, "float16", "recent", "per-head", "moba", "fp32", False),
    (64, 16, 1, 2, 2, "float32", "recent", "per-head", "moba", "dump", False),
    (100, 16, 9, 2, 1, "float32", "recent", "per-head", "moba", "dump", False),
    (129, 8, 4, 2, 2, "float16", "older", "per-head", "moba-kconv", "dump", False),
    (129, 8, 4, 2, 2, "float32", "recent", "per-head", "moba-kconv", "dump", "w5"),
    (90, 8, 3, 4, 2, "float32", "recent", "per-head", "oracle", "dump", False),
    (90, 8, 3, 4, 2, "float32", "recent", "shared", "oracle", "dump", False),
]
for T, B, K, hq, hkv, dt, tie, gqa, router, pool, special in cases:
    q = rng.standard_normal((hq, T, 16)); k = rng.standard_normal((hkv, T, 16)); v = rng.standard_normal((hkv, T, 16))
    if special is True:  # identical key blocks 0, 1, 3: exactly tied gate scores
        k[:, 16:32] = k[:, 0:16]; k[:, 48:64] = k[:, 0:16]
    dump = os.path.join(work, "d.h5")
    schema.write_dump(dump, {0: (q, k, v)}, dtype=dt)
    extra = ["--kconv", "5", "--kconv-weights", os.path.join(work, "w5.npy")] if special == "w5" else []
    want = route_cli(dump, B, K, router, tie, gqa, pool, extra)
    spec = routing.RouteSpec(router, B, K, tie=tie, gqa=gqa, route_dtype=dt, pool_precision=pool,
                             kconv_width=5 if special == "w5" else 3,
                             kconv_weights=np.load(os.path.join(work, "w5.npy")) if special == "w5" else None)
    qd, kd = routing.round_to(q, dt).astype(np.float64), routing.round_to(k, dt).astype(np.float64)
    grp = hq // hkv
    def masses(h, t0, t1):
        s = qd[h, t0:t1] @ kd[h // grp].T / 4.0
        s[np.arange(T)[None, :] > np.arange(t0, t1)[:, None]] = -np.inf
        p = np.exp(s - s.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        return routing.block_sums(p, B, routing.block_count(T, B))
    got = routing.route_layer(spec, q, k, masses, tile=32)
    if got.shape != want.shape or not np.array_equal(got, want):
        fails.append("routing.py != moba route: T=%d B=%d k=%d %s %s %s %s (%d rows differ)"
                     % (T, B, K, dt, tie, gqa, router, int(np.any(got != want, -1).sum()) if got.shape == want.shape else -1))

# a random llama2.c v0 checkpoint: dim 32, hidden 64, 2 layers, 4 heads, 2 kv heads, vocab 64
dim, hid, L, H, KV, V, S = 32, 64, 2, 4, 2, 64, 512
hd = dim // H
shapes = [(V, dim), (L, dim), (L, dim, dim), (L, KV * hd, dim), (L, KV * hd, dim), (L, dim, dim), (L, dim),
          (L, hid, dim), (L, dim, hid), (L, hid, dim), (dim,), (S, hd // 2), (S, hd // 2)]
with open(os.path.join(work, "tiny.bin"), "wb") as f:
    f.write(struct.pack("<7i", dim, hid, L, H, KV, V, S))
    for i, s in enumerate(shapes):
        a = rng.standard_normal(s).astype(np.float32)
        if i in (1, 6, 10):
            a = 1 + 0.1 * a
        elif i >= 2:
            a *= 0.5 / np.sqrt(s[-1])
        if i in (2, 3):
            a *= 3.0   # sharper attention: routing matters
        if i == 0:
            a *= 0.3
        f.write(a.astype(np.float32).tobytes())
np.savetxt(os.path.join(work, "ids.txt"), rng.integers(3, V, 150)[None], fmt="%d")
if fails:
    print("\n".join("FAIL: " + f for f in fails)); sys.exit(1)
print("routing.py = moba route on %d adversarial cases" % len(cases))
PYEOF

RUN=$WORK/run
"$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids.txt" --block-sizes 16,32 --top-k 2,3 \
  --routers moba,moba-kconv,oracle --plain-nll-direct --bootstrap 200 --no-report --out "$RUN" --quiet \
  > "$WORK/replay.out" || fail "moba replay exited $? ($(cat "$WORK/replay.out"))"
grep -q "full_vs_plain pass, dense pass, route_layer0 pass" "$WORK/replay.out" || fail "checks: $(cat "$WORK/replay.out")"
"$MOBA" replay report "$RUN" --quiet || fail "moba replay report exited $?"
# routing on bf16-rounded q/k, pooled in bf16, shared GQA, the older tie rule, kconv weights
# given as text: layer 0 still = moba route
"$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids.txt" --block-sizes 16 --top-k 3 \
  --routers moba,moba-kconv --route-dtype bfloat16 --dump-dtype bfloat16 --gqa shared --tie older --kconv 5 \
  --kconv-weights "$WORK/w5_d8.txt" \
  --no-analyze --no-report --out "$WORK/run_bf16" --quiet > "$WORK/replay_bf16.out" \
  || fail "bf16 replay exited $? ($(cat "$WORK/replay_bf16.out"))"
grep -q "full_vs_plain pass, dense pass, route_layer0 pass" "$WORK/replay_bf16.out" \
  || fail "bf16 checks: $(cat "$WORK/replay_bf16.out")"
for f in run.json replay.csv positions.csv replay.h5 dump.h5 route_check.csv analyze/summary.csv analyze/analysis.h5 \
         report/report.md report/validity.csv report/paired.csv report/rank_correlation.csv report/per_position.csv \
         report/calibration.csv report/calibration_slopes.csv; do
  [ -s "$RUN/$f" ] || fail "missing $f"
done
[ ! -e "$RUN.partial" ] || fail "$RUN.partial left behind"

"$PY" - "$REPO" "$RUN" <<'PYEOF'
import csv, json, os, sys
import numpy as np
repo, run = sys.argv[1:3]
sys.path.insert(0, os.path.join(repo, "experiments", "replay"))
sys.path.insert(0, os.path.join(repo, "experiments", "dump"))
import h5py, llama2c, routing
fails = []
def check(c, m):
    if not c:
        fails.append(m)
rj = json.load(open(os.path.join(run, "run.json")))
ch = rj["checks"]
check(ch["full_vs_plain"]["abs_diff"] <= 1e-5 and ch["full_vs_plain"]["pass"], "full vs plain %r" % ch["full_vs_plain"])
check(ch["dense"]["identical_final_states"] and ch["dense"]["max_abs_dnll"] == 0 and ch["dense"]["max_kl"] == 0,
      "dense %r" % ch["dense"])
check(len(ch["route_layer0"]["configs"]) == 13 and all(c["mismatched_rows"] == 0 for c in ch["route_layer0"]["configs"]),
      "route check %r" % ch["route_layer0"])
for key in ("model", "dump", "token_ids_file"):
    check(len(rj["input"][key]["sha256"]) == 64, "run.json input %s has no sha256" % key)
rows = list(csv.DictReader(open(os.path.join(run, "replay.csv"))))
check(len(rows) == 13 and rows[-1]["config"] == "dense_moba_B32_k5", "replay.csv rows %s" % [r["config"] for r in rows])

# an independent naive forward: full T x T scores, masks from the stored selections
model = llama2c.Model(rj["input"]["model"]["path"])
cfg, w = model.cfg, model.w
f5 = h5py.File(os.path.join(run, "replay.h5"), "r")
tokens = f5["token_ids"][...].astype(np.int64)
T = tokens.size
pos = np.arange(T)
def naive(sel_by_layer, capture=None):
    x = w["tok_embeddings"][tokens]
    for l in range(cfg.n_layers):
        xb = llama2c.rmsnorm(x, w["rms_att"][l])
        q = llama2c.rope_interleaved((xb @ w["wq"][l].T).reshape(T, H, -1).transpose(1, 0, 2), pos)
        k = llama2c.rope_interleaved((xb @ w["wk"][l].T).reshape(T, KV, -1).transpose(1, 0, 2), pos)
        v = (xb @ w["wv"][l].T).reshape(T, KV, -1).transpose(1, 0, 2)
        if capture is not None:
            capture[l] = (q, k)
        att = np.empty_like(q)
        for h in range(H):
            s = q[h] @ k[h // (H // KV)].T / np.sqrt(q.shape[2])
            m = np.tril(np.ones((T, T), bool))
            if sel_by_layer is not None:
                sel, B = sel_by_layer[l]
                blocks = np.zeros((T, routing.block_count(T, B) + 1), bool)
                for j in range(sel.shape[2]):
                    blocks[pos, np.where(sel[h, :, j] >= 0, sel[h, :, j], -1)] = True
                m &= blocks[:, np.arange(T) // B]
            s = np.where(m, s, -np.inf)
            p = np.exp(s - s.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
            att[h] = p @ v[h // (H // KV)]
        x = x + att.transpose(1, 0, 2).reshape(T, -1) @ w["wo"][l].T
        xb = llama2c.rmsnorm(x, w["rms_ffn"][l])
        h1, h3 = xb @ w["w1"][l].T, xb @ w["w3"][l].T
        x = x + (h1 / (1 + np.exp(-h1)) * h3) @ w["w2"][l].T
    lg = llama2c.rmsnorm(x, w["rms_final"]) @ w["wcls"].T
    lp = lg - lg.max(1, keepdims=True); lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    return -lp[np.arange(T - 1), tokens[1:]]
H, KV = cfg.n_heads, cfg.n_kv_heads
nll_full = naive(None)
check(np.max(np.abs(nll_full - f5["full/nll"][...])) < 1e-9, "full NLL differs from a naive forward")
for name, g in f5["configs"].items():
    B, K = int(g.attrs["block_size"]), int(g.attrs["top_k"])
    sels = {l: (g["layers/%d/selected" % l][...].astype(np.int64), B) for l in range(cfg.n_layers)}
    cap = {}
    nll = naive(sels, cap)
    check(np.max(np.abs(nll - g["nll"][...])) < 1e-9, "%s: NLL differs from a naive forward with its selections" % name)
    check(np.allclose(g["dnll"][...], g["nll"][...] - f5["full/nll"][...], atol=1e-12), "%s: dnll != nll - full" % name)
    check(np.all(g["kl"][...] >= 0), "%s: negative KL" % name)
    first = K * B
    check(np.all(g["dnll"][:first] == 0) and np.all(g["kl"][:first] == 0), "%s: change before the first choice" % name)
    if not name.startswith("dense"):
        check(np.any(g["dnll"][first:] != 0), "%s: MoBA changed nothing" % name)
    # routing is online: layer-1 selections follow from the perturbed layer-1 q/k
    spec = routing.RouteSpec(g.attrs["router"], B, K)
    q1, k1 = cap[1]
    def masses(h, t0, t1):
        s = q1[h, t0:t1] @ k1[h // (H // KV)].T / np.sqrt(q1.shape[2])
        s[np.arange(T)[None, :] > np.arange(t0, t1)[:, None]] = -np.inf
        p = np.exp(s - s.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        return routing.block_sums(p, B, routing.block_count(T, B))
    want = routing.route_layer(spec, q1, k1, masses)
    diff = np.any(want != sels[1][0], -1).sum()
    check(diff == 0, "%s: layer-1 selections are not the routing of the perturbed stream (%d rows)" % (name, diff))
v = list(csv.DictReader(open(os.path.join(run, "report", "validity.csv"))))
check(len(v) == 12 and all(r["analyze_kl_mean"] not in ("", "nan") for r in v), "validity.csv lacks analyze proxies")
cal = list(csv.DictReader(open(os.path.join(run, "report", "calibration.csv"))))
check(len(cal) == 2 * 4 * 2 and all(float(r["inflation"]) > 0 for r in cal), "calibration.csv rows %d" % len(cal))
if fails:
    print("\n".join("FAIL: " + f for f in fails)); sys.exit(1)
print("replay: acceptance checks, naive forward and online routing agree")
PYEOF

# refusals: exit 2, nothing left behind
expect_exit2 "missing.bin" \
  "$MOBA" replay --model "$WORK/missing.bin" --token-ids "$WORK/ids.txt" --block-sizes 16 --top-k 2 --out "$WORK/bad"
expect_exit2 "exactly one of --top-k LIST and --budget KEYS" \
  "$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids.txt" --block-sizes 16 --top-k 2 --budget 64 --out "$WORK/bad"
mkdir -p "$WORK/notrun" && touch "$WORK/notrun/x"
expect_exit2 "not empty and not an earlier replay run" \
  "$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids.txt" --block-sizes 16 --top-k 2 --out "$WORK/notrun"
[ -e "$WORK/notrun/x" ] || fail "a foreign --out directory was touched"
R=("$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids.txt" --top-k 2 --no-analyze --no-report)
expect_exit2 "the directory $WORK/nowhere does not exist" "${R[@]}" --block-sizes 16 --out "$WORK/nowhere/run"
[ ! -e "$WORK/nowhere" ] || fail "replay created a missing --out parent"
expect_exit2 "--block-sizes: empty item" "${R[@]}" --block-sizes 16, --out "$WORK/bad"
expect_exit2 "--block-sizes: 16 given twice" "${R[@]}" --block-sizes 16,32,16 --out "$WORK/bad"
expect_exit2 "--max-tokens: 0 is not a positive count" "${R[@]}" --block-sizes 16 --max-tokens 0 --out "$WORK/bad"
printf '1 2 3 100000 5\n' > "$WORK/ids_bad.txt"
expect_exit2 "ids_bad.txt: token 3 (id 100000) is out of the model's range" \
  "$MOBA" replay --model "$WORK/tiny.bin" --token-ids "$WORK/ids_bad.txt" --block-sizes 16 --top-k 2 --out "$WORK/bad"
printf '1 2\n3 4\n' > "$WORK/w_shape.txt"  # [2, 2]: neither --kconv 3 nor the head dim 8
expect_exit2 "the model needs \[3, 8\]" "${R[@]}" --block-sizes 16 --routers moba-kconv \
  --kconv-weights "$WORK/w_shape.txt" --out "$WORK/bad"
"$PY" -c "print('\n'.join(' '.join('nan' if (i, j) == (1, 2) else '0.5' for j in range(8)) for i in range(3)))" \
  > "$WORK/w_nan.txt"
expect_exit2 "a non-finite weight" "${R[@]}" --block-sizes 16 --routers moba-kconv --kconv-weights "$WORK/w_nan.txt" \
  --out "$WORK/bad"
# a header with 0 heads (bytes 12-15): refused as not a llama2.c checkpoint, not a traceback
"$PY" -c "import struct,sys; b=bytearray(open(sys.argv[1],'rb').read()); b[12:16]=struct.pack('<i',0); open(sys.argv[2],'wb').write(b)" \
  "$WORK/tiny.bin" "$WORK/heads0.bin"
expect_exit2 "not a llama2.c v0 checkpoint" \
  "$MOBA" replay --model "$WORK/heads0.bin" --token-ids "$WORK/ids.txt" --block-sizes 16 --top-k 2 --out "$WORK/bad"
[ ! -e "$WORK/bad" ] && [ ! -e "$WORK/bad.partial" ] || fail "refused runs left output behind"
echo "test_replay: ok"
