"""Independent writers and checkers for the dump I/O script tests (numpy, h5py, stdlib only).

Nothing here shares code with the C++ readers or with experiments/dump: the HDF5 dumps are
written with h5py straight from the schema text (DESIGN.md §2), the safetensors files with
struct + json following the published format (8-byte little-endian header length, JSON
header, byte buffer). `compare` decodes the original independently (bf16 bits -> float32 by
shifting, thd -> htd by transposing) and requires exact equality with what `moba convert
--dtype f32` wrote.

usage:
  io_dumps.py write-h5 OUT --dtype f32|f16|bf16 [--layout htd|thd] [--seed S]
  io_dumps.py write-st OUT --dtype F32|F16|BF16 [--seed S]
  io_dumps.py compare ORIGINAL CONVERTED.h5        (ORIGINAL: .h5 or .safetensors)
  io_dumps.py check-info INFO.json ORIGINAL        (moba info --json output vs the file)
  io_dumps.py write-bad DIR                        (prints "FILE FIELD" per bad file)
  io_dumps.py write-big OUT --tokens T --heads H --head-dim D   (bf16, one head at a time;
                                                  safetensors when OUT ends in .safetensors)
"""
import json
import os
import struct
import sys

import numpy as np

N_LAYERS, N_Q, N_KV, N_TOKENS, HEAD_DIM = 2, 4, 2, 300, 24


def bf16_bits(x):
    """float32 -> bf16 bit patterns, round to nearest even (NaN-free input)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def tensors(seed):
    """{(layer, name): float32 [heads, tokens, head_dim]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(N_LAYERS):
        for name, heads in (("q", N_Q), ("k", N_KV), ("v", N_KV)):
            out[(layer, name)] = (rng.standard_normal((heads, N_TOKENS, HEAD_DIM)) * 2.0).astype(np.float32)
    return out


def write_h5(path, dtype, layout, seed):
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["moba_dump_version"] = np.int64(1)
        f.attrs["model"] = "h5py-%s-%s" % (dtype, layout)
        f.attrs["rope_applied"] = np.bool_(True)  # h5py stores numpy bools as an enum
        f.attrs["source"] = "tests/scripts/io_dumps.py"
        f.attrs["extra_float"] = 0.125
        f.attrs["extra_text"] = "hello"
        f["token_ids"] = np.arange(N_TOKENS, dtype=np.int32) * 7
        for (layer, name), x in tensors(seed).items():
            if dtype == "f32":
                stored = x
            elif dtype == "f16":
                stored = x.astype(np.float16)
            else:
                stored = bf16_bits(x)
            if layout == "thd":
                stored = np.ascontiguousarray(stored.transpose(1, 0, 2))
            d = f.create_dataset("layers/%d/%s" % (layer, name), data=stored,
                                 chunks=(min(64, stored.shape[0]),) + stored.shape[1:] if layer == 1 else None)
            if dtype == "bf16":
                d.attrs["dtype"] = "bfloat16"
            if layout == "thd":
                d.attrs["layout"] = "thd"
        planted = np.full((N_Q, N_TOKENS), -1, dtype=np.int32)
        planted[:, 10:] = np.arange(N_TOKENS - 10) % 5
        f["layers/1/planted"] = planted


ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "I32": ("<i4", 4)}


def write_safetensors_raw(path, named, metadata):
    """named: list of (name, dtype string, shape, bytes). Lays tensors out back to back."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in named:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format allows trailing spaces; align the buffer
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def write_st(path, dtype, seed):
    named = []
    for (layer, name), x in tensors(seed).items():
        if dtype == "BF16":
            blob = bf16_bits(x).astype("<u2").tobytes()
        else:
            blob = x.astype(ST_DTYPES[dtype][0]).tobytes()
        named.append(("layers.%d.%s" % (layer, name), dtype, x.shape, blob))
    named.append(("token_ids", "I32", (N_TOKENS,), (np.arange(N_TOKENS, dtype="<i4") * 7).tobytes()))
    write_safetensors_raw(path, named, {"moba_dump_version": "1", "model": "st-%s" % dtype, "rope_applied": "0",
                                        "extra_text": "hi"})


def read_safetensors(path):
    """Independent parse: {name: float32 or int array}, metadata."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        np_dtype = ST_DTYPES[e["dtype"]][0]
        a = np.frombuffer(data[b:end], dtype=np_dtype).reshape(e["shape"])
        out[name] = bf16_to_f32(a) if e["dtype"] == "BF16" else a
    return out, meta


def decoded_original(path):
    """{(layer, name): float32 [heads, tokens, head_dim]}, token_ids, planted per layer."""
    out, ids, planted = {}, None, {}
    if path.endswith(".safetensors"):
        arrays, _ = read_safetensors(path)
        for name, a in arrays.items():
            parts = name.split(".")
            if parts[0] == "layers" and parts[2] in ("q", "k", "v", "o"):
                out[(int(parts[1]), parts[2])] = np.asarray(a, dtype=np.float32)
        ids = arrays.get("token_ids")
        return out, ids, planted
    import h5py
    with h5py.File(path, "r") as f:
        for layer in f["layers"]:
            for name in ("q", "k", "v", "o"):
                if name not in f["layers"][layer]:
                    continue
                d = f["layers"][layer][name]
                a = d[...]
                if d.attrs.get("dtype") in ("bfloat16", b"bfloat16"):
                    a = bf16_to_f32(a)
                a = a.astype(np.float32)
                if d.attrs.get("layout") in ("thd", b"thd"):
                    a = a.transpose(1, 0, 2)
                out[(int(layer), name)] = np.ascontiguousarray(a)
            if "planted" in f["layers"][layer]:
                planted[int(layer)] = f["layers"][layer]["planted"][...]
        if "token_ids" in f:
            ids = f["token_ids"][...]
    return out, ids, planted


def compare(original, converted):
    import h5py
    want, ids, planted = decoded_original(original)
    n = 0
    with h5py.File(converted, "r") as f:
        got_layers = sorted(int(x) for x in f["layers"])
        assert got_layers == sorted({l for l, _ in want}), "layers %s vs %s" % (got_layers, sorted(want))
        for (layer, name), a in sorted(want.items()):
            d = f["layers/%d/%s" % (layer, name)]
            assert d.dtype == np.float32, "%s: converted dtype %s" % (d.name, d.dtype)
            b = d[...]
            assert b.shape == a.shape, "%s: shape %s vs %s" % (d.name, b.shape, a.shape)
            if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                bad = np.argwhere(a != b)[0]
                raise SystemExit("MISMATCH %s at %s: %r vs %r" % (d.name, tuple(bad), a[tuple(bad)], b[tuple(bad)]))
            n += a.size
        if ids is not None:
            assert np.array_equal(f["token_ids"][...], ids), "token_ids differ"
        for layer, p in planted.items():
            assert np.array_equal(f["layers/%d/planted" % layer][...], p), "planted differs"
    print("exact: %d values in %d tensors" % (n, len(want)))


def check_info(info_json, original):
    with open(info_json) as f:
        info = json.load(f)
    want, ids, _ = decoded_original(original)
    q = want[(0, "q")]
    k = want[(0, "k")]
    expect = {"n_layers": len({l for l, _ in want}), "n_q_heads": q.shape[0], "n_kv_heads": k.shape[0],
              "n_tokens": q.shape[1], "head_dim": q.shape[2], "has_token_ids": ids is not None}
    for key, value in expect.items():
        assert info[key] == value, "info %s = %r, expected %r" % (key, info[key], value)
    print("info matches: %s" % json.dumps(expect))


def write_bad(d):
    """Each bad-input class as a file; prints 'FILE FIELD' (FIELD: text the message must contain)."""
    import h5py

    def root(f):
        f.attrs["moba_dump_version"] = 1
        f.attrs["model"] = "bad"
        f.attrs["rope_applied"] = 1

    def h5(name, build, field):
        p = os.path.join(d, name)
        with h5py.File(p, "w") as f:
            root(f)
            build(f)
        if field:
            print(p, field)
        return p

    z = lambda *s: np.zeros(s, dtype=np.float32)
    good = h5("good_for_truncation.h5", lambda f: [f.create_dataset("layers/0/" + n, data=z(h, 2000, 16))
                                                  for n, h in (("q", 4), ("k", 2), ("v", 2))], "")
    with open(good, "rb") as f:
        raw = f.read()
    p = os.path.join(d, "truncated.h5")
    with open(p, "wb") as f:
        f.write(raw[: len(raw) // 2])
    print(p, "truncated")
    os.remove(good)
    p = os.path.join(d, "not_hdf5.h5")
    with open(p, "w") as f:
        f.write("this is a text file, not a dump\n")
    print(p, "not a dump")

    def qkv(f, q=(4, 50, 8), k=(2, 50, 8), v=(2, 50, 8), layer=0):
        for n, s in (("q", q), ("k", k), ("v", v)):
            if s is not None:
                f["layers/%d/%s" % (layer, n)] = z(*s)

    h5("missing_layers.h5", lambda f: f.create_group("other"), "/layers")
    h5("missing_k.h5", lambda f: qkv(f, k=None), "/layers/0/k")
    h5("wrong_rank.h5", lambda f: qkv(f, q=(4, 400)), "/layers/0/q")
    h5("token_mismatch.h5", lambda f: qkv(f, v=(2, 49, 8)), "/layers/0/v")
    h5("head_dim_mismatch.h5", lambda f: qkv(f, k=(2, 50, 9)), "/layers/0/k")
    h5("gqa.h5", lambda f: qkv(f, q=(5, 50, 8)), "/layers/0/q")

    def f64(f):
        qkv(f)
        del f["layers/0/q"]
        f["layers/0/q"] = np.zeros((4, 50, 8))
    h5("float64.h5", f64, "/layers/0/q")

    def u16(f):
        qkv(f)
        del f["layers/0/k"]
        f["layers/0/k"] = np.zeros((2, 50, 8), dtype=np.uint16)  # no dtype="bfloat16" attribute
    h5("uint16_no_attr.h5", u16, "/layers/0/k")

    def nan(f):
        qkv(f)
        a = z(4, 50, 8)
        a[3, 17, 5] = np.nan
        del f["layers/0/q"]
        f["layers/0/q"] = a
    h5("nan.h5", nan, "head 3, token 17")

    def inf(f):
        qkv(f)
        a = z(2, 50, 8)
        a[1, 2, 0] = np.inf
        del f["layers/0/v"]
        f["layers/0/v"] = a
    h5("inf.h5", inf, "head 1, token 2")

    def huge_value(f):  # finite, but a score of it overflows float32
        qkv(f)
        a = z(2, 50, 8)
        a[0, 9, 4] = 3e38
        del f["layers/0/k"]
        f["layers/0/k"] = a
    h5("huge_value.h5", huge_value, "head 0, token 9, dim 4: beyond +-2^27")

    def bf16_on_f32(f):  # a dtype attribute that contradicts the stored float32
        qkv(f)
        f["layers/0/q"].attrs["dtype"] = "bfloat16"
    h5("bf16_attr_on_f32.h5", bf16_on_f32, "contradicts")

    def unwritten(f):  # a chunked header claiming 2^31 tokens whose chunks were never written
        for n, h in (("q", 2), ("k", 1), ("v", 1)):
            f.create_dataset("layers/0/" + n, shape=(h, 1 << 31, 8), dtype="f4", chunks=(1, 4096, 8))
    h5("unwritten_chunks.h5", unwritten, "never (fully) written")

    def part_written(f):  # a chunked dataset with one chunk of four written
        qkv(f)
        del f["layers/0/v"]
        f.create_dataset("layers/0/v", shape=(2, 50, 8), dtype="f4", chunks=(1, 25, 8))[0, :25] = 1.0
    h5("part_written.h5", part_written, "never (fully) written")

    def huge_version(f):  # found by tests/fuzz: a float attribute far outside int64 range
        qkv(f)
        f.attrs["moba_dump_version"] = np.float64(-1.79769e308)
    h5("huge_version.h5", huge_version, "moba_dump_version")

    def st(name, named, field, meta=None, length=None):
        p = os.path.join(d, name)
        write_safetensors_raw(p, named, meta if meta is not None else {"moba_dump_version": "1", "model": "m",
                                                                        "rope_applied": "1"})
        if length is not None:
            with open(p, "r+b") as f:
                f.write(struct.pack("<Q", length))
        print(p, field)

    blob = lambda *s: np.zeros(s, dtype="<f4").tobytes()
    good_st = [("layers.0.q", "F32", (4, 50, 8), blob(4, 50, 8)), ("layers.0.k", "F32", (2, 50, 8), blob(2, 50, 8)),
               ("layers.0.v", "F32", (2, 50, 8), blob(2, 50, 8))]
    st("header_past_eof.safetensors", good_st, "header", length=1 << 40)
    st("byte_size.safetensors", [good_st[0], ("layers.0.k", "F32", (2, 50, 9), blob(2, 50, 8)), good_st[2]],
       "layers.0.k")
    st("unknown_dtype.safetensors", [good_st[0], good_st[1], ("layers.0.v", "Q4", (2, 50, 8), blob(2, 50, 8))],
       "layers.0.v")
    # Overlap and out of range: rewrite offsets by hand.
    for name, fix, field in (("overlap.safetensors", lambda h: h["layers.0.k"]["data_offsets"].__setitem__(0, 8) or
                              h["layers.0.k"]["data_offsets"].__setitem__(1, 8 + 3200), "layers.0.k"),
                             ("out_of_range.safetensors", lambda h: h["layers.0.v"]["data_offsets"].__setitem__(1, 10 ** 9),
                              "layers.0.v")):
        p = os.path.join(d, name)
        header = {"__metadata__": {"moba_dump_version": "1", "model": "m", "rope_applied": "1"}}
        off, data = 0, b""
        for n, dt, s, b in good_st:
            header[n] = {"dtype": dt, "shape": list(s), "data_offsets": [off, off + len(b)]}
            off += len(b)
            data += b
        fix(header)
        text = json.dumps(header).encode()
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data)
        print(p, field)


def write_big(path, tokens, heads, head_dim):
    """A bf16 dump too big to want in memory; written one head at a time (HDF5, or
    safetensors when path ends in .safetensors)."""
    rng = np.random.default_rng(0)
    if path.endswith(".safetensors"):
        nbytes = heads * tokens * head_dim * 2
        header = {"__metadata__": {"moba_dump_version": "1", "model": "rss-probe", "rope_applied": "1"}}
        for i, name in enumerate(("q", "k", "v")):
            header["layers.0." + name] = {"dtype": "BF16", "shape": [heads, tokens, head_dim],
                                          "data_offsets": [i * nbytes, (i + 1) * nbytes]}
        text = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for _ in range(3 * heads):
                f.write(bf16_bits(rng.standard_normal((tokens, head_dim), dtype=np.float32)).astype("<u2").tobytes())
        return
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["moba_dump_version"] = 1
        f.attrs["model"] = "rss-probe"
        f.attrs["rope_applied"] = 1
        for name in ("q", "k", "v"):
            d = f.create_dataset("layers/0/" + name, shape=(heads, tokens, head_dim), dtype=np.uint16)
            d.attrs["dtype"] = "bfloat16"
            for h in range(heads):
                d[h] = bf16_bits(rng.standard_normal((tokens, head_dim), dtype=np.float32))


def main(argv):
    cmd = argv[1]
    opts = dict(zip(argv[3::2], argv[4::2])) if len(argv) > 3 else {}
    if cmd == "write-h5":
        write_h5(argv[2], opts.get("--dtype", "f32"), opts.get("--layout", "htd"), int(opts.get("--seed", "1")))
    elif cmd == "write-st":
        write_st(argv[2], opts.get("--dtype", "F32"), int(opts.get("--seed", "1")))
    elif cmd == "compare":
        compare(argv[2], argv[3])
    elif cmd == "check-info":
        check_info(argv[2], argv[3])
    elif cmd == "write-bad":
        write_bad(argv[2])
    elif cmd == "write-big":
        write_big(argv[2], int(opts["--tokens"]), int(opts["--heads"]), int(opts["--head-dim"]))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
