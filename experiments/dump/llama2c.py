#!/usr/bin/env python3
"""Model-free reference path: llama2.c's checkpoint, tokenizer and forward pass in numpy.

Reads llama2.c's v0 checkpoint (`stories15M.bin`) and `tokenizer.bin`, encodes text the way
llama2.c's `encode()` does (BOS = 1, dummy-prefix space, greedy highest-score merges), and runs
llama2.c's forward pass over a whole sequence at once: RMSNorm (eps 1e-5), RoPE (theta 10000,
interleaved pairs x[2i], x[2i+1] per head), causal softmax attention, SwiGLU FFN, final RMSNorm
and the classifier tied to the token embedding.

The arithmetic runs in float64: the same formulas as llama2.c's fp32 code, evaluated more
precisely, so that a bf16 dump made from it does not depend on the BLAS, thread count or CPU
(the fp32/fp64 difference is ~1e-6 relative, far below bf16's 2^-8).

q and k in a dump from this path are in llama2.c's native head-dim order (interleaved RoPE pairs);
a transformers conversion of the same weights gives them in rotate-half order. The two differ by
one permutation of head_dim applied to both q and k, so q.k^T scores (what MoBA's gate sees) and v
are identical.

Command line (run with --help for details):
  llama2c.py encode  --tokenizer T --text FILE                -> token ids, one per line
  llama2c.py nll     --model M --tokenizer T --text FILE      -> mean NLL in nats/token
  llama2c.py generate --model M --tokenizer T --prompt STR    -> greedy continuation
  llama2c.py dump    --model M --tokenizer T (--text F | --token-ids F) --max-tokens N --out D.h5
"""
import argparse
import heapq
import lzma
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schema  # noqa: E402

BOS = 1
EOS = 2
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
HEADER = struct.Struct("<7i")  # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
XZ_MAGIC = b"\xfd7zXZ\x00"


class CheckpointError(Exception):
    """A checkpoint or tokenizer file that is missing, truncated or not llama2.c's format."""


class Config:
    def __init__(self, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len):
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.vocab_size = abs(vocab_size)
        self.shared_classifier = vocab_size > 0
        self.seq_len = seq_len
        self.head_dim = dim // n_heads if n_heads > 0 else 0  # a header of 0 heads is refused by the caller

    def __repr__(self):
        return ("Config(dim=%d, hidden_dim=%d, n_layers=%d, n_heads=%d, n_kv_heads=%d, vocab_size=%d, "
                "seq_len=%d, shared_classifier=%s)" % (self.dim, self.hidden_dim, self.n_layers,
                                                      self.n_heads, self.n_kv_heads, self.vocab_size,
                                                      self.seq_len, self.shared_classifier))


def to_rotate_half(w, n_heads):
    """q/k projection rows [n_heads * head_dim, in] from llama2.c's interleaved RoPE pairs to
    transformers' rotate-half order: per head, new row a * head_dim/2 + j = old row 2j + a."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, hd // 2, 2, -1).transpose(0, 2, 1, 3).reshape(w.shape)


def to_interleaved(w, n_heads):
    """Inverse of to_rotate_half."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, hd // 2, -1).transpose(0, 2, 1, 3).reshape(w.shape)


def load_checkpoint(path):
    """Returns (Config, dict of float32 weight arrays in llama2.c's layout, [out, in] matrices).
    path is a llama2.c v0 checkpoint (fp32 weights, or fp16 weights widened exactly; plain or
    xz-compressed, e.g. stories15M-4k.f16.xz), or a transformers folder written by
    convert_llama2c.py (its q/k rows are permuted back; fp16/bf16 weights are widened exactly).

    Names: tok_embeddings [vocab, dim], and per layer stacked over layers: rms_att [L, dim],
    wq [L, dim, dim], wk/wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
    w1/w3 [L, hidden, dim], w2 [L, dim, hidden]; rms_final [dim]; wcls [vocab, dim].
    """
    if os.path.isdir(path):
        return load_transformers_folder(path)
    payload = None
    try:
        with open(path, "rb") as f:
            magic = f.read(len(XZ_MAGIC))
        if magic == XZ_MAGIC:  # an xz-compressed checkpoint (stories15M-4k.f16.xz)
            import lzma
            with lzma.open(path) as f:
                data = f.read()
            header, payload = data[:HEADER.size], data[HEADER.size:]
        else:
            with open(path, "rb") as f:
                header = f.read(HEADER.size)
    except (OSError, EOFError) as e:
        raise CheckpointError("%s: cannot read checkpoint: %s" % (path, getattr(e, "strerror", None) or e))
    except lzma.LZMAError as e:
        raise CheckpointError("%s: not a valid xz file: %s" % (path, e))
    if len(header) != HEADER.size:
        raise CheckpointError("%s: truncated header (%d bytes)" % (path, len(header)))
    cfg = Config(*HEADER.unpack(header))
    if min(cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.seq_len) <= 0 \
            or cfg.dim % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
        raise CheckpointError("%s: not a llama2.c v0 checkpoint (header %r)" % (path, cfg))
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    L, d, h = cfg.n_layers, cfg.dim, cfg.hidden_dim
    shapes = [
        ("tok_embeddings", (cfg.vocab_size, d)),
        ("rms_att", (L, d)),
        ("wq", (L, d, d)),
        ("wk", (L, kv_dim, d)),
        ("wv", (L, kv_dim, d)),
        ("wo", (L, d, d)),
        ("rms_ffn", (L, d)),
        ("w1", (L, h, d)),
        ("w2", (L, d, h)),
        ("w3", (L, h, d)),
        ("rms_final", (d,)),
        ("freq_cis_real", (cfg.seq_len, cfg.head_dim // 2)),  # unused: RoPE is recomputed
        ("freq_cis_imag", (cfg.seq_len, cfg.head_dim // 2)),
    ]
    if not cfg.shared_classifier:
        shapes.append(("wcls", (cfg.vocab_size, d)))
    need = sum(int(np.prod(s)) for _, s in shapes)
    n_bytes = os.path.getsize(path) - HEADER.size if payload is None else len(payload)
    if n_bytes == 2 * need:  # fp16 weights (stories15M-4k): widened exactly to fp32
        raw = (np.frombuffer(payload, dtype="<f2") if payload is not None
               else np.fromfile(path, dtype="<f2", offset=HEADER.size)).astype(np.float32)
    elif n_bytes == 4 * need:
        raw = (np.frombuffer(payload, dtype="<f4") if payload is not None
               else np.fromfile(path, dtype="<f4", offset=HEADER.size))
    else:
        raise CheckpointError("%s: %d bytes after the header, the header %r implies %d floats "
                              "(%d bytes as fp32, %d as fp16)" % (path, n_bytes, cfg, need, 4 * need, 2 * need))
    weights, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        weights[name] = raw[off:off + n].reshape(shape)
        off += n
    if cfg.shared_classifier:
        weights["wcls"] = weights["tok_embeddings"]
    return cfg, weights


def load_transformers_folder(path):
    """A Llama transformers folder (config.json + model.safetensors, one file) -> load_checkpoint's
    (Config, weights)."""
    import json
    try:
        with open(os.path.join(path, "config.json")) as f:
            c = json.load(f)
        meta, tensors = schema.read_safetensors(os.path.join(path, "model.safetensors"))
    except (OSError, ValueError, schema.DumpError) as e:
        raise CheckpointError("%s: not a converted llama2.c folder (%s)" % (path, e))
    if c.get("model_type") != "llama" or c.get("hidden_act", "silu") != "silu" or c.get("attention_bias") \
            or c.get("mlp_bias") or c.get("rms_norm_eps") != RMS_EPS \
            or (c.get("rope_parameters") or {}).get("rope_theta", c.get("rope_theta")) != ROPE_THETA \
            or (c.get("rope_parameters") or {}).get("rope_type", "default") != "default" \
            or c.get("head_dim", c["hidden_size"] // c["num_attention_heads"]) * c["num_attention_heads"] != c["hidden_size"]:
        raise CheckpointError("%s: only plain Llama folders with llama2.c's constants load here (silu, no biases, "
                              "rms_norm_eps %g, default RoPE theta %g, head_dim = hidden/heads)" % (path, RMS_EPS, ROPE_THETA))
    cfg = Config(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
                 c["num_key_value_heads"], c["vocab_size"] if c.get("tie_word_embeddings") else -c["vocab_size"],
                 c["max_position_embeddings"])

    def get(name):
        if name not in tensors:
            raise CheckpointError("%s: model.safetensors has no tensor %s" % (path, name))
        return schema.as_float32(tensors[name])

    def stack(fmt, fix=None):
        ws = [get("model.layers.%d.%s" % (l, fmt)) for l in range(cfg.n_layers)]
        return np.stack([fix(w) if fix else w for w in ws])

    w = {
        "tok_embeddings": get("model.embed_tokens.weight"),
        "rms_att": stack("input_layernorm.weight"),
        "wq": stack("self_attn.q_proj.weight", lambda x: to_interleaved(x, cfg.n_heads)),
        "wk": stack("self_attn.k_proj.weight", lambda x: to_interleaved(x, cfg.n_kv_heads)),
        "wv": stack("self_attn.v_proj.weight"),
        "wo": stack("self_attn.o_proj.weight"),
        "rms_ffn": stack("post_attention_layernorm.weight"),
        "w1": stack("mlp.gate_proj.weight"),
        "w2": stack("mlp.down_proj.weight"),
        "w3": stack("mlp.up_proj.weight"),
        "rms_final": get("model.norm.weight"),
    }
    w["wcls"] = w["tok_embeddings"] if cfg.shared_classifier else get("lm_head.weight")
    return cfg, w


class Tokenizer:
    """llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length,
    bytes. Ids 3..258 are SentencePiece's byte-fallback tokens (id = byte + 3); they are used only
    for bytes no other piece covers, as in llama2.c where they are spelled "<0xXX>" and never
    match text. (This tokenizer.bin stores them as the bytes themselves, so they are excluded
    from the piece lookup explicitly.)"""

    N_BYTE_TOKENS = 256
    FIRST_BYTE_TOKEN = 3

    def __init__(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CheckpointError("%s: cannot read tokenizer: %s" % (path, e.strerror))
        if len(data) < 4:
            raise CheckpointError("%s: truncated tokenizer" % path)
        self.max_token_length = struct.unpack_from("<i", data, 0)[0]
        self.pieces, self.scores = [], []
        off = 4
        while off < len(data):
            if off + 8 > len(data):
                raise CheckpointError("%s: truncated at byte %d" % (path, off))
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            if n < 0 or off + n > len(data):
                raise CheckpointError("%s: bad piece length %d at byte %d" % (path, n, off - 4))
            self.pieces.append(data[off:off + n])
            self.scores.append(score)
            off += n
        byte_ids = range(self.FIRST_BYTE_TOKEN, self.FIRST_BYTE_TOKEN + self.N_BYTE_TOKENS)
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            if i not in byte_ids and p not in self.lookup:
                self.lookup[p] = i

    @property
    def vocab_size(self):
        return len(self.pieces)

    def encode(self, text, bos=True, eos=False):
        """llama2.c's encode(): dummy-prefix space, one token per UTF-8 character (byte
        fallback otherwise), then repeatedly merge the adjacent pair whose concatenation is the
        highest-scoring piece (leftmost on ties). A heap makes this O(n log n); the result is
        the same as llama2.c's quadratic loop."""
        raw = text.encode("utf-8")
        ids = [BOS] if bos else []
        syms = []
        if raw:
            syms.append(self.lookup[b" "])
        for ch in text:
            b = ch.encode("utf-8")
            if b in self.lookup:
                syms.append(self.lookup[b])
            else:
                syms.extend(self.FIRST_BYTE_TOKEN + x for x in b)
        n = len(syms)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        alive = [True] * n
        ver = [0] * n
        heap = []

        def push(i):
            j = nxt[i] if i >= 0 else n
            if i < 0 or j >= n:
                return
            merged = self.pieces[syms[i]] + self.pieces[syms[j]]
            mid = self.lookup.get(merged)
            if mid is not None:
                heapq.heappush(heap, (-self.scores[mid], i, ver[i], j, ver[j], mid))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, vi, j, vj, mid = heapq.heappop(heap)
            if not (alive[i] and alive[j] and ver[i] == vi and ver[j] == vj and nxt[i] == j):
                continue
            syms[i] = mid
            ver[i] += 1
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            push(prv[i])
            push(i)
        ids.extend(syms[i] for i in range(n) if alive[i])
        if eos:
            ids.append(EOS)
        return ids

    def decode_piece(self, prev_id, tok):
        if self.FIRST_BYTE_TOKEN <= tok < self.FIRST_BYTE_TOKEN + self.N_BYTE_TOKENS:
            return bytes([tok - self.FIRST_BYTE_TOKEN])
        piece = self.pieces[tok]
        if prev_id == BOS and piece.startswith(b" "):
            piece = piece[1:]
        return piece

    def decode(self, ids):
        out, prev = [], None
        for t in ids:
            if t in (BOS, EOS):
                prev = t
                continue
            out.append(self.decode_piece(prev, t))
            prev = t
        return b"".join(out).decode("utf-8", errors="replace")


def rmsnorm(x, w):
    """llama2.c: x / sqrt(mean(x^2) + 1e-5) * w, per row. x [n_tokens, dim]."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * w


def rope_interleaved(x, positions):
    """llama2.c's RoPE on x [n_heads, n_tokens, head_dim]: pair (x[2i], x[2i+1]) of each head is
    rotated by pos * theta^(-2i/head_dim)."""
    head_dim = x.shape[-1]
    freq = ROPE_THETA ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # [head_dim/2]
    angle = positions[:, None].astype(np.float64) * freq[None, :]                   # [n_tokens, head_dim/2]
    cos, sin = np.cos(angle), np.sin(angle)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


class Model:
    def __init__(self, checkpoint_path):
        self.cfg, w32 = load_checkpoint(checkpoint_path)
        self.w = {k: v.astype(np.float64) for k, v in w32.items() if not k.startswith("freq_cis")}

    def forward(self, tokens, capture_layers=None):
        """Runs the whole sequence causally. Returns (h [n_tokens, dim] after the final RMSNorm,
        {layer: (q [n_heads, n_tokens, head_dim], k, v [n_kv_heads, n_tokens, head_dim])}) with
        q and k after RoPE, in llama2.c's head-dim order, for each layer in capture_layers."""
        cfg, w = self.cfg, self.w
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("forward: need a non-empty 1-D token sequence")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise ValueError("forward: token id out of range [0, %d)" % cfg.vocab_size)
        n_tokens, hd = tokens.size, cfg.head_dim
        group = cfg.n_heads // cfg.n_kv_heads
        positions = np.arange(n_tokens)
        causal = np.triu(np.ones((n_tokens, n_tokens), dtype=bool), k=1)
        captured = {}
        x = w["tok_embeddings"][tokens]                                     # [n_tokens, dim]
        for layer in range(cfg.n_layers):
            xb = rmsnorm(x, w["rms_att"][layer])
            q = (xb @ w["wq"][layer].T).reshape(n_tokens, cfg.n_heads, hd).transpose(1, 0, 2)
            k = (xb @ w["wk"][layer].T).reshape(n_tokens, cfg.n_kv_heads, hd).transpose(1, 0, 2)
            v = (xb @ w["wv"][layer].T).reshape(n_tokens, cfg.n_kv_heads, hd).transpose(1, 0, 2)
            q = rope_interleaved(q, positions)                              # [n_heads, n_tokens, hd]
            k = rope_interleaved(k, positions)                              # [n_kv_heads, n_tokens, hd]
            if capture_layers is not None and layer in capture_layers:
                captured[layer] = (q, k, v)
            kr = np.repeat(k, group, axis=0)
            vr = np.repeat(v, group, axis=0)
            scores = q @ kr.transpose(0, 2, 1) / np.sqrt(hd)                # [n_heads, n_tokens, n_tokens]
            scores[:, causal] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            att = (p @ vr).transpose(1, 0, 2).reshape(n_tokens, cfg.dim)
            x = x + att @ w["wo"][layer].T
            xb = rmsnorm(x, w["rms_ffn"][layer])
            h1 = xb @ w["w1"][layer].T
            h3 = xb @ w["w3"][layer].T
            x = x + (h1 / (1.0 + np.exp(-h1)) * h3) @ w["w2"][layer].T
        return rmsnorm(x, w["rms_final"]), captured

    def logits(self, h):
        return h @ self.w["wcls"].T

    def nll(self, tokens, chunk=256):
        """Mean negative log-likelihood (nats/token) of tokens[1:] given the prefix."""
        h, _ = self.forward(tokens)
        total = 0.0
        for s in range(0, len(tokens) - 1, chunk):
            e = min(s + chunk, len(tokens) - 1)
            lg = self.logits(h[s:e])
            m = lg.max(axis=-1)
            lse = m + np.log(np.exp(lg - m[:, None]).sum(axis=-1))
            total += float(np.sum(lse - lg[np.arange(e - s), tokens[s + 1:e + 1]]))
        return total / (len(tokens) - 1)

    def generate(self, tokens, steps):
        """Greedy decoding; stops at BOS/EOS (llama2.c stops at BOS)."""
        tokens = list(tokens)
        for _ in range(steps):
            h, _ = self.forward(tokens)
            nxt = int(np.argmax(self.logits(h[-1])))
            if nxt in (BOS, EOS):
                break
            tokens.append(nxt)
        return tokens


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CheckpointError("%s: cannot read text: %s" % (path, e.strerror))
    except UnicodeDecodeError as e:
        raise CheckpointError("%s: not UTF-8 text (%s)" % (path, e))


def read_token_ids(path):
    """Token ids as whitespace-separated decimal integers."""
    try:
        with open(path) as f:
            return [int(t) for t in f.read().split()]
    except OSError as e:
        raise CheckpointError("%s: cannot read token ids: %s" % (path, e.strerror))
    except ValueError as e:
        raise CheckpointError("%s: not a list of integer token ids: %s" % (path, e))


def tokens_for(args, tok):
    if args.token_ids:
        ids = read_token_ids(args.token_ids)
    else:
        ids = tok.encode(read_text(args.text))
    if args.max_tokens:
        if len(ids) < args.max_tokens:
            src = args.token_ids or args.text
            raise CheckpointError("%s: gives %d tokens, fewer than --max-tokens %d"
                                  % (src, len(ids), args.max_tokens))
        ids = ids[:args.max_tokens]
    return ids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, model=True, source=True):
        if model:
            p.add_argument("--model", required=True, help="llama2.c v0 checkpoint (stories15M.bin)")
        p.add_argument("--tokenizer", required=not source,
                       help="llama2.c tokenizer.bin (needed with --text and for generate)")
        if source:
            g = p.add_mutually_exclusive_group(required=True)
            g.add_argument("--text", help="UTF-8 text file (encoded with BOS = 1)")
            g.add_argument("--token-ids", help="file of whitespace-separated token ids (used as is)")
            p.add_argument("--max-tokens", type=int, default=0,
                           help="keep the first N tokens (BOS included); error if fewer")

    common(sub.add_parser("encode", help="print token ids, one per line"), model=False)
    common(sub.add_parser("nll", help="mean next-token NLL in nats/token"))
    g = sub.add_parser("generate", help="greedy continuation of a prompt")
    common(g, source=False)
    g.add_argument("--prompt", required=True)
    g.add_argument("--steps", type=int, default=64)
    d = sub.add_parser("dump", help="write a schema-v1 dump of post-RoPE q and k, and v")
    common(d)
    d.add_argument("--layers", default="all", help="comma-separated layer indices, or 'all'")
    d.add_argument("--dtype", default="bfloat16", choices=schema.DTYPES)
    d.add_argument("--model-name", default="stories15M (llama2.c)", help="root attribute 'model'")
    d.add_argument("--source", default=None, help="root attribute 'source' (default: the input path)")
    d.add_argument("--out", required=True, help="output .h5/.hdf5 or .safetensors")
    args = ap.parse_args(argv)

    try:
        if getattr(args, "text", None) and not args.tokenizer:
            raise CheckpointError("--text needs --tokenizer")
        tok = Tokenizer(args.tokenizer) if args.tokenizer else None
        if args.cmd == "encode":
            print("\n".join(str(t) for t in tokens_for(args, tok)))
            return 0
        model = Model(args.model)
        if tok and tok.vocab_size != model.cfg.vocab_size:
            raise CheckpointError("%s has %d tokens, %s expects %d"
                                  % (args.tokenizer, tok.vocab_size, args.model, model.cfg.vocab_size))
        if args.cmd == "nll":
            ids = tokens_for(args, tok)
            print("tokens %d  nll %.4f nats/token" % (len(ids), model.nll(ids)))
        elif args.cmd == "generate":
            out = model.generate(tok.encode(args.prompt), args.steps)
            print(tok.decode(out))
        elif args.cmd == "dump":
            ids = tokens_for(args, tok)
            layers = schema.parse_layers(args.layers, model.cfg.n_layers)
            _, cap = model.forward(ids, capture_layers=set(layers))
            schema.write_dump(args.out, {l: cap[l] for l in layers}, token_ids=ids,
                              model=args.model_name, source=args.source or (args.token_ids or args.text),
                              dtype=args.dtype)
            print("wrote %s: %d layers, %d tokens, %s" % (args.out, len(layers), len(ids), args.dtype))
    except (CheckpointError, schema.DumpError) as e:
        print("llama2c: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
