"""Dump schema v1 (docs/dump-format.md) for the Python tools: a deterministic writer (HDF5 or
safetensors), a reader, bf16 conversion and per-tensor checksums.

Tensors are head-major: q [n_q_heads, n_tokens, head_dim], k and v [n_kv_heads, n_tokens, head_dim].
bf16 is stored as uint16 with the dataset attribute dtype = "bfloat16" (HDF5) or as "BF16"
(safetensors). Conversion to bf16 is float32 round-to-nearest-even, the same as torch's cast.

Determinism: the same tensors give the same bytes in every dataset, and the HDF5 writer turns off
object timestamps, so repeated runs with one HDF5 library give identical files. Compare tensors
(tensor_checksums), not file bytes, across machines: another HDF5 or zlib version may lay out or
compress a file differently. Writes go to a temporary file beside the
target that is renamed into place only when complete; on error nothing is left behind.
"""
import hashlib
import json
import os
import struct
import tempfile

import numpy as np

DTYPES = ("bfloat16", "float16", "float32")
SCHEMA_VERSION = 1


class DumpError(Exception):
    """Bad tensors or a file that is not a schema-v1 dump; the message names file and dataset."""


def parse_layers(spec, n_layers):
    """'all' or comma-separated decimal indices -> sorted list, each in [0, n_layers)."""
    if spec in (None, "", "all"):
        return list(range(n_layers))
    try:
        layers = sorted({int(s) for s in spec.split(",")})
    except ValueError:
        raise DumpError("--layers %r: expected 'all' or comma-separated integers" % spec)
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise DumpError("--layers %r: layer %d out of range, the model has %d layers" % (spec, bad[0], n_layers))
    return layers


def float_to_bf16_bits(x):
    """float array -> uint16 bf16 bit patterns, via float32, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_float(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _encode(x, dtype):
    """-> (array to store, its on-disk dtype name)."""
    if dtype == "bfloat16":
        return float_to_bf16_bits(x), "bfloat16"
    if dtype == "float16":
        return np.ascontiguousarray(x, dtype="<f2"), "float16"
    return np.ascontiguousarray(x, dtype="<f4"), "float32"


def _check_layers(layers, token_ids):
    if not layers:
        raise DumpError("no layers to write")
    shapes = None
    for l, (q, k, v) in sorted(layers.items()):
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t.ndim != 3:
                raise DumpError("layer %d %s: rank %d, expected [heads, n_tokens, head_dim]" % (l, name, t.ndim))
            if not np.all(np.isfinite(t)):
                raise DumpError("layer %d %s: contains NaN or Inf" % (l, name))
        if k.shape != v.shape:
            raise DumpError("layer %d: k %s and v %s differ in shape" % (l, k.shape, v.shape))
        if q.shape[1:] != k.shape[1:]:
            raise DumpError("layer %d: q %s and k %s disagree on n_tokens/head_dim" % (l, q.shape, k.shape))
        if q.shape[0] % k.shape[0]:
            raise DumpError("layer %d: n_q_heads %d not a multiple of n_kv_heads %d" % (l, q.shape[0], k.shape[0]))
        if shapes is not None and shapes != (q.shape, k.shape):
            raise DumpError("layer %d: shapes %s differ from the other layers' %s" % (l, (q.shape, k.shape), shapes))
        shapes = (q.shape, k.shape)
    if token_ids is not None and len(token_ids) != shapes[0][1]:
        raise DumpError("token_ids has %d entries, tensors have %d tokens" % (len(token_ids), shapes[0][1]))


def write_dump(path, layers, token_ids=None, model="", source=None, dtype="bfloat16", rope_applied=1):
    """layers: {layer index: (q, k, v)} float arrays, head-major. Format from the extension:
    .h5/.hdf5 -> HDF5, .safetensors -> safetensors."""
    if dtype not in DTYPES:
        raise DumpError("dtype %r: expected one of %s" % (dtype, ", ".join(DTYPES)))
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".h5", ".hdf5", ".safetensors"):
        raise DumpError("%s: unknown output format (use .h5, .hdf5 or .safetensors)" % path)
    _check_layers(layers, token_ids)
    if token_ids is not None:
        token_ids = np.asarray(token_ids, dtype="<i4")
    out_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-dump-", suffix=ext, dir=out_dir)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if ext == ".safetensors":
            _write_safetensors(tmp, layers, token_ids, model, source, dtype, rope_applied)
        else:
            _write_hdf5(tmp, layers, token_ids, model, source, dtype, rope_applied)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_hdf5(path, layers, token_ids, model, source, dtype, rope_applied):
    import h5py

    def no_times(plist):
        # object timestamps are the only run-to-run difference in an HDF5 file; without them
        # the same tensors give the same file bytes (for one HDF5 library version)
        plist.set_obj_track_times(False)
        plist.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
        return plist

    fcpl = no_times(h5py.h5p.create(h5py.h5p.FILE_CREATE))
    gcpl = no_times(h5py.h5p.create(h5py.h5p.GROUP_CREATE))

    def group(parent, name):
        return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))

    with h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)) as f:
        f.attrs["moba_dump_version"] = np.int32(SCHEMA_VERSION)
        f.attrs["model"] = model
        f.attrs["rope_applied"] = np.int32(rope_applied)
        if source:
            f.attrs["source"] = source
        if token_ids is not None:
            f.create_dataset("token_ids", data=token_ids, track_times=False)
        grp = group(f, "layers")
        for l in sorted(layers):
            g = group(grp, str(l))
            for name, t in zip(("q", "k", "v"), layers[l]):
                data, dname = _encode(t, dtype)
                # one chunk per head: a head is one contiguous slice, compressed on its own
                ds = g.create_dataset(name, data=data, chunks=(1,) + data.shape[1:],
                                      compression="gzip", compression_opts=9, shuffle=True,
                                      track_times=False)
                if dname == "bfloat16":
                    ds.attrs["dtype"] = "bfloat16"


_ST_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "int32": "I32"}
_ST_NUMPY = {"BF16": ("<u2", "bfloat16"), "F16": ("<f2", "float16"), "F32": ("<f4", "float32"),
             "I32": ("<i4", "int32")}


def write_safetensors(path, tensors, metadata):
    """tensors: [(name, safetensors dtype "BF16"|"F16"|"F32"|"I32", array)] written in this order
    (bf16 given as uint16 bits); metadata: {str: str}. Header keys sorted: deterministic bytes."""
    header, off = {"__metadata__": metadata}, 0
    for name, st, data in tensors:
        header[name] = {"dtype": st, "shape": list(data.shape), "data_offsets": [off, off + data.nbytes]}
        off += data.nbytes
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, data in tensors:
            f.write(np.ascontiguousarray(data).tobytes())


def read_safetensors(path):
    """-> (metadata dict, {name: (raw array, dtype name)}); bf16 comes back as uint16 bits."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
        (n,) = struct.unpack_from("<Q", blob, 0)
        header = json.loads(blob[8:8 + n])
    except (OSError, struct.error, ValueError) as e:
        raise DumpError("%s: not a readable safetensors file (%s)" % (path, e))
    base = 8 + n
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_NUMPY:
            raise DumpError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        npd, dname = _ST_NUMPY[info["dtype"]]
        a, b = info["data_offsets"]
        if base + b > len(blob):
            raise DumpError("%s: tensor %s runs past the end of the file" % (path, name))
        tensors[name] = (np.frombuffer(blob[base + a:base + b], dtype=npd).reshape(info["shape"]), dname)
    return meta, tensors


def _write_safetensors(path, layers, token_ids, model, source, dtype, rope_applied):
    tensors = []
    for l in sorted(layers):
        for name, t in zip(("q", "k", "v"), layers[l]):
            data, dname = _encode(t, dtype)
            tensors.append(("layers.%d.%s" % (l, name), _ST_DTYPE[dname], data))
    if token_ids is not None:
        tensors.append(("token_ids", "I32", token_ids))
    meta = {"moba_dump_version": str(SCHEMA_VERSION), "model": model, "rope_applied": str(rope_applied)}
    if source:
        meta["source"] = source
    write_safetensors(path, tensors, meta)


def read_dump(path):
    """-> (attrs dict, token_ids or None, {layer: {"q"|"k"|"v": (raw stored array, dtype name)}})."""
    if not os.path.isfile(path):
        raise DumpError("%s: no such file" % path)
    if path.lower().endswith(".safetensors"):
        return _read_safetensors(path)
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DumpError("%s: not an HDF5 file (%s)" % (path, e))
    with f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        token_ids = f["token_ids"][()] if "token_ids" in f else None
        if "layers" not in f:
            raise DumpError("%s: no group /layers" % path)
        layers = {}
        for name, g in f["layers"].items():
            layers[int(name)] = {}
            for t in ("q", "k", "v"):
                if t not in g:
                    raise DumpError("%s: /layers/%s has no dataset %s" % (path, name, t))
                ds = g[t]
                dt = ds.attrs.get("dtype", None)
                dt = dt.decode() if isinstance(dt, bytes) else dt
                layers[int(name)][t] = (ds[()], dt if dt == "bfloat16" else str(ds.dtype))
    return attrs, token_ids, layers


def _read_safetensors(path):
    attrs, tensors = read_safetensors(path)
    token_ids, layers = None, {}
    for name, stored in tensors.items():
        if name == "token_ids":
            token_ids = stored[0]
            continue
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "layers" or parts[2] not in ("q", "k", "v"):
            raise DumpError("%s: unexpected tensor name %s" % (path, name))
        layers.setdefault(int(parts[1]), {})[parts[2]] = stored
    return attrs, token_ids, layers


def as_float32(stored):
    """(raw stored array, dtype name) -> float32 array."""
    arr, dname = stored
    return bf16_bits_to_float(arr) if dname == "bfloat16" else np.asarray(arr, dtype=np.float32)


def tensor_checksums(path):
    """[(dataset name, dtype, shape, sha256 of the little-endian C-order tensor bytes)], one per
    tensor, in a fixed order: token_ids, then layers ascending, q, k, v."""
    _, token_ids, layers = read_dump(path)
    rows = []

    def row(name, arr, dname):
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        rows.append((name, dname, "x".join(str(s) for s in arr.shape), hashlib.sha256(data).hexdigest()))

    if token_ids is not None:
        row("token_ids", token_ids, "int32")
    for l in sorted(layers):
        for t in ("q", "k", "v"):
            arr, dname = layers[l][t]
            row("layers/%d/%s" % (l, t), arr, dname)
    return rows
