#!/usr/bin/env bash
# The Python dump tools without the model: the schema-v1 writer (bf16 round-to-nearest-even,
# deterministic bytes, safetensors twin, refusals with nothing left behind), read by `moba info`;
# and the converter's q/k permutation: llama2.c's interleaved RoPE on the original rows and
# transformers' rotate-half RoPE on the permuted rows give the same q.k^T scores.
# usage: test_real_data_tools.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
TOOLS=$(cd "$HERE/../../experiments/dump" && pwd)

"$PY" - "$TOOLS" "$WORK" <<'PYEOF'
import filecmp, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import schema, llama2c
work = sys.argv[2]
fails = []
def check(cond, msg):
    if not cond:
        fails.append(msg)

# bf16 round to nearest even, ties included
x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 1.0 + 2**-9, 3.0e38], dtype=np.float32)
bits = schema.float_to_bf16_bits(x)
check(list(bits) == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x3F80, 0x7F62], "bf16 RNE bits %s" % [hex(b) for b in bits])

# a GQA dump: writer -> reader round trip, deterministic bytes, safetensors twin equal
rng = np.random.default_rng(0)
layers = {l: (rng.standard_normal((4, 37, 16)), rng.standard_normal((2, 37, 16)), rng.standard_normal((2, 37, 16)))
          for l in (0, 3)}
ids = rng.integers(0, 100, 37)
for name in ("a.h5", "b.h5", "a.safetensors"):
    schema.write_dump(os.path.join(work, name), layers, token_ids=ids, model="synthetic", source="test")
check(filecmp.cmp(os.path.join(work, "a.h5"), os.path.join(work, "b.h5"), shallow=False), "HDF5 bytes differ run to run")
for name in ("a.h5", "a.safetensors"):
    attrs, tid, got = schema.read_dump(os.path.join(work, name))
    check(sorted(got) == [0, 3] and np.array_equal(tid, ids), "%s: layers/token_ids" % name)
    for l in layers:
        for i, t in enumerate("qkv"):
            want = schema.bf16_bits_to_float(schema.float_to_bf16_bits(layers[l][i]))
            check(np.array_equal(schema.as_float32(got[l][t]), want), "%s: layer %d %s" % (name, l, t))
check(schema.tensor_checksums(os.path.join(work, "a.h5")) == schema.tensor_checksums(os.path.join(work, "a.safetensors")),
      "HDF5 and safetensors tensor checksums differ")

# refusals leave nothing behind
bad = {0: (np.full((4, 5, 8), np.nan), np.zeros((2, 5, 8)), np.zeros((2, 5, 8)))}
for layers_bad, what in ((bad, "NaN"), ({0: (np.zeros((3, 5, 8)), np.zeros((2, 5, 8)), np.zeros((2, 5, 8)))}, "GQA 3/2")):
    try:
        schema.write_dump(os.path.join(work, "bad.h5"), layers_bad)
        fails.append("%s accepted" % what)
    except schema.DumpError:
        pass
left = [f for f in os.listdir(work) if f.startswith("bad") or f.startswith(".tmp")]
check(not left, "refused writes left %s" % left)

# the converter's permutation: interleaved RoPE (llama2.c) vs rotate-half RoPE (transformers)
n_heads, hd, n_tokens, dim = 3, 16, 50, 24
wq = rng.standard_normal((n_heads * hd, dim))
wk = rng.standard_normal((n_heads * hd, dim))
xs = rng.standard_normal((n_tokens, dim))
pos = np.arange(n_tokens)
def heads(x):
    return x.reshape(n_tokens, n_heads, hd).transpose(1, 0, 2)
q1 = llama2c.rope_interleaved(heads(xs @ wq.T), pos)
k1 = llama2c.rope_interleaved(heads(xs @ wk.T), pos)
def rope_rotate_half(x):
    inv = 10000.0 ** (-np.arange(0, hd, 2) / hd)
    ang = np.concatenate([pos[:, None] * inv] * 2, axis=1)
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)
    return x * np.cos(ang) + rot * np.sin(ang)
q2 = rope_rotate_half(heads(xs @ llama2c.to_rotate_half(wq, n_heads).T))
k2 = rope_rotate_half(heads(xs @ llama2c.to_rotate_half(wk, n_heads).T))
s1, s2 = q1 @ k1.transpose(0, 2, 1), q2 @ k2.transpose(0, 2, 1)
check(np.allclose(s1, s2, rtol=1e-12, atol=1e-9), "scores differ after the permutation: %g" % np.abs(s1 - s2).max())
check(not np.allclose(q1, q2), "the permutation is the identity (test cannot tell)")
check(np.array_equal(llama2c.to_interleaved(llama2c.to_rotate_half(wq, n_heads), n_heads), wq), "permutation not inverted")
for m in fails:
    print("FAIL:", m)
sys.exit(1 if fails else 0)
PYEOF

# the writer's GQA files load in moba
"$MOBA" info --json "$WORK/a.h5" | grep '"n_kv_heads": 2' >/dev/null || { echo "FAIL: moba info a.h5"; "$MOBA" info "$WORK/a.h5"; exit 1; }
"$MOBA" info --json "$WORK/a.safetensors" | grep '"n_q_heads": 4' >/dev/null || { echo "FAIL: moba info a.safetensors"; exit 1; }
echo "PASS: dump tools"
