#!/usr/bin/env python3
"""MoBA replay of a transformers model through its attention interface (torch, GPU or CPU).

The transformers twin of replay.py: registers the attention function "moba_replay" in
transformers' attention interface (as experiments/dump/dump_hf.py registers its recorder), so
each layer hands over post-RoPE q [1, n_q_heads, T, d] and un-repeated k/v [1, n_kv_heads, T, d].
In the chosen layers the routing is routing.py, the same numpy code the numpy replay and the
dump comparisons use (q/k copied to the host as float32, rounded to --route-dtype), and the
attention is a masked softmax over the selected blocks (causal in the current block) computed
in float32 with torch; other layers, and the full-attention reference, use the same function
with the causal mask, so MoBA with every block selected equals it exactly.

--gate-order interleaved permutes head_dim from transformers' rotate-half order to llama2.c's
interleaved order before routing: for a folder converted from (or loadable as) a llama2.c
checkpoint, the gate's float32 channel-order sums are then the numpy path's exactly.

Writes OUT/replay_hf.csv (per configuration: mean NLL, dNLL and output KL over positions with a
choice), OUT/replay_hf.h5 (per-position nll/dnll/kl and each routed layer's selections) and
OUT/run.json. --compare NUMPY_RUN compares with a replay.py run of the same folder and tokens:
selections per layer, full NLL, dNLL; exit 1 when they disagree beyond the tolerances below.

Needs torch and transformers (tested: torch 2.11.0, transformers 5.17.0), numpy, h5py.
"""
import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "experiments", "dump"))

import numpy as np  # noqa: E402

import dump_hf  # noqa: E402  (read_config, require_packages, read_tokens: the dump tool's checks)
import routing  # noqa: E402
import replay  # noqa: E402

ATTN_NAME = "moba_replay"
# --compare tolerances
FULL_NLL_TOLERANCE = 1e-4        # float32 torch vs float64 numpy, mean NLL
LAYER0_ROW_AGREEMENT = 0.999     # layer 0 sees the same tokens: only fp32 near-ties may flip
DNLL_TOLERANCE = (1e-3, 0.05)    # |dNLL_hf - dNLL_numpy| <= abs + rel * |dNLL_numpy|


class State:
    plan = {}        # layer -> RouteSpec
    records = {}     # layer -> selected [n_q_heads, T, k]
    perm = None      # head_dim permutation applied before routing (None: native order)


def interleaved_perm(head_dim):
    """Index array p with x_interleaved = x_rotate_half[..., p]: position 2j + a holds the
    rotate-half channel a * head_dim/2 + j (llama2c.to_interleaved on the head_dim axis)."""
    half = head_dim // 2
    return np.array([a * half + j for j in range(half) for a in range(2)])


def moba_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query [1, n_q_heads, T, d], key/value [1, n_kv_heads,
    T, d] (post-RoPE, before any GQA repeat). Returns (output [1, T, n_q_heads, d], None)."""
    import torch
    layer = getattr(module, "layer_idx", None)
    if layer is None:
        raise RuntimeError("attention module %s has no layer_idx" % type(module).__name__)
    if query.shape[0] != 1:
        raise RuntimeError("moba_replay runs one sequence (batch 1)")
    spec = State.plan.get(layer)
    q, k, v = query[0], key[0], value[0]
    n_q, T, d = q.shape
    group = n_q // k.shape[0]
    scale = scaling if scaling is not None else d ** -0.5
    kr = k.repeat_interleave(group, dim=0).float()
    vr = v.repeat_interleave(group, dim=0).float()
    scores = torch.matmul(q.float(), kr.transpose(-1, -2)) * scale          # [n_q, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if spec is None:
        mask = causal.expand(n_q, T, T)
    else:
        qn = q.detach().float().cpu().numpy()
        kn = k.detach().float().cpu().numpy()
        if State.perm is not None:
            qn, kn = qn[..., State.perm], kn[..., State.perm]
        masses_fn = None
        if spec.router == "oracle":
            p = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
            B = spec.block_size
            nb = routing.block_count(T, B)
            m = torch.nn.functional.pad(p, (0, nb * B - T)).reshape(n_q, T, nb, B).sum(-1).double().cpu().numpy()

            def masses_fn(h, t0, t1):
                return m[h, t0:t1]
        sel = routing.route_layer(spec, qn, kn, masses_fn)                      # [n_q, T, k]
        State.records[layer] = sel
        mask_np = np.stack([routing.token_mask(sel[h], np.arange(T), spec.block_size, T) for h in range(n_q)])
        mask = torch.from_numpy(mask_np).to(q.device)
    p = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    out = torch.matmul(p, vr).to(query.dtype)                                   # [n_q, T, d]
    return out.unsqueeze(0).transpose(1, 2).contiguous(), None


def register():
    from transformers import AttentionInterface
    AttentionInterface.register(ATTN_NAME, moba_attention)
    try:  # the mask builder must know the name; it gets SDPA's (unused here: causality is ours)
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    except ImportError:
        pass


def log_probs(model, input_ids):
    import torch
    with torch.inference_mode():
        logits = model(input_ids=input_ids, use_cache=False).logits[0].double()
    return torch.log_softmax(logits, dim=-1)


def compare(numpy_run, out_dir, rows, h5_path):
    import h5py
    res, ok = [], True
    with h5py.File(os.path.join(numpy_run, "replay.h5"), "r") as fn, h5py.File(h5_path, "r") as fh:
        full_np, full_hf = fn["full/nll"][...], fh["full/nll"][...]
        d_full = abs(float(full_np.mean()) - float(full_hf.mean()))
        ok &= d_full <= FULL_NLL_TOLERANCE
        print("full attention: mean NLL numpy %.6f, transformers %.6f, |diff| %.2e (tolerance %g)"
              % (full_np.mean(), full_hf.mean(), d_full, FULL_NLL_TOLERANCE))
        for name in fh["configs"]:
            if "configs/" + name not in fn:
                continue
            gn, gh = fn["configs/" + name], fh["configs/" + name]
            first = int(gh.attrs["top_k"]) * int(gh.attrs["block_size"])
            agree = {}
            for l in gh["layers"]:
                a, b = gn["layers/%s/selected" % l][...], gh["layers/%s/selected" % l][...]
                agree[int(l)] = float(np.mean(np.all(a.astype(np.int64) == b.astype(np.int64), axis=-1)))
            dn, dh = float(gn["dnll"][first:].mean()), float(gh["dnll"][first:].mean())
            kn, kh = float(gn["kl"][first:].mean()), float(gh["kl"][first:].mean())
            tol = DNLL_TOLERANCE[0] + DNLL_TOLERANCE[1] * abs(dn)
            good = agree.get(0, 1.0) >= LAYER0_ROW_AGREEMENT and abs(dh - dn) <= tol
            ok &= good
            res.append({"config": name, "layer_row_agreement": agree, "dnll_numpy": dn, "dnll_hf": dh,
                        "kl_numpy": kn, "kl_hf": kh, "pass": bool(good)})
            print("%-22s rows agreeing per layer %s  dNLL numpy %+.5f transformers %+.5f  KL %.5f / %.5f  %s"
                  % (name, " ".join("%d:%.4f" % kv for kv in sorted(agree.items())), dn, dh, kn, kh,
                     "ok" if good else "DIFFERENT"))
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"numpy_run": os.path.abspath(numpy_run), "full_nll_abs_diff": d_full, "configs": res,
                   "pass": bool(ok)}, f, indent=1)
    return ok


def run(args):
    config = dump_hf.read_config(args.model)
    n_layers = config["num_hidden_layers"]
    import schema
    layers = schema.parse_layers(args.layers, n_layers)
    dump_hf.require_packages(os.path.join(args.out, "replay_hf.h5"))
    ids = dump_hf.read_tokens(args)
    import h5py
    import torch
    from transformers import AutoModelForCausalLM

    register()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.compute_dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=ATTN_NAME)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype, attn_implementation=ATTN_NAME)
    model.to(device).eval()
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    State.perm = interleaved_perm(head_dim) if args.gate_order == "interleaved" else None
    specs, routers, bs, pairs = replay.resolve_configs(args, len(ids))
    T = len(ids)
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    tgt = input_ids[0, 1:]
    os.makedirs(args.out, exist_ok=True)
    State.plan = {}
    lp_full = log_probs(model, input_ids)
    nll_full = -lp_full[:-1].gather(1, tgt[:, None])[:, 0]
    rows = []
    h5_path = os.path.join(args.out, "replay_hf.h5")
    with h5py.File(h5_path, "w") as f5:
        f5.create_dataset("token_ids", data=np.asarray(ids, dtype=np.int32))
        f5.create_dataset("full/nll", data=nll_full.cpu().numpy())
        for spec in specs:
            State.plan, State.records = {l: spec for l in layers}, {}
            lp = log_probs(model, input_ids)
            nll = -lp[:-1].gather(1, tgt[:, None])[:, 0]
            kl = (lp_full[:-1].exp() * (lp_full[:-1] - lp[:-1])).sum(-1).clamp_min(0)
            dnll = (nll - nll_full).cpu().numpy()
            kl = kl.cpu().numpy()
            first = spec.top_k * spec.block_size
            g = f5.create_group("configs/" + spec.name)
            g.attrs["router"], g.attrs["block_size"], g.attrs["top_k"] = spec.router, spec.block_size, spec.top_k
            g.create_dataset("nll", data=nll.cpu().numpy())
            g.create_dataset("dnll", data=dnll)
            g.create_dataset("kl", data=kl)
            for l, sel in State.records.items():
                g.create_dataset("layers/%d/selected" % l, data=sel.astype(np.int32), compression="gzip")
            row = {"config": spec.name, "router": spec.router, "block_size": spec.block_size, "top_k": spec.top_k,
                   "n_choice": max(0, T - 1 - first), "nll_mean": float(nll.mean()),
                   "dnll_mean": float(dnll[first:].mean()) if first < T - 1 else math.nan,
                   "kl_mean": float(kl[first:].mean()) if first < T - 1 else math.nan}
            rows.append(row)
            print("%-22s dNLL %+.5f  KL %.5f" % (spec.name, row["dnll_mean"], row["kl_mean"]))
    replay.write_csv(os.path.join(args.out, "replay_hf.csv"), list(rows[0]), rows)
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump({"command": "replay_hf", "git_commit": replay.git_label(), "model": os.path.abspath(args.model),
                   "device": device if device == "cpu" else "%s (%s)" % (device, torch.cuda.get_device_name()),
                   "torch": torch.__version__, "n_tokens": T, "layers": layers, "gate_order": args.gate_order,
                   "compute_dtype": args.compute_dtype, "nll_full": float(nll_full.mean()), "configs": rows},
                  f, indent=1)
    print("full attention %.6f nats/token over %d tokens on %s" % (float(nll_full.mean()), T, device))
    if args.compare:
        return 0 if compare(args.compare, args.out, rows, h5_path) else 1
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="MoBA replay of a transformers model through its attention interface")
    ap.add_argument("--model", required=True, help="local transformers model folder (Llama family)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--text")
    g.add_argument("--token-ids")
    ap.add_argument("--llama2c-tokenizer", help="tokenize --text with this llama2.c tokenizer.bin")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--block-sizes", required=True)
    ap.add_argument("--top-k")
    ap.add_argument("--budget", type=int)
    ap.add_argument("--routers", default="moba,oracle")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--tie", default="recent", choices=("recent", "older"))
    ap.add_argument("--gqa", default="per-head", choices=("per-head", "shared"))
    ap.add_argument("--route-dtype", default="float32", choices=routing.DTYPES)
    ap.add_argument("--pool-precision", default="dump", choices=("dump", "fp32"))
    ap.add_argument("--kconv", type=int, default=3, choices=(3, 5))
    ap.add_argument("--kconv-weights")
    ap.add_argument("--gate-order", default="native", choices=("native", "interleaved"),
                    help="head_dim order of q/k for the gate's channel-order sums (interleaved: llama2.c's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compute-dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    ap.add_argument("--compare", help="a replay.py run directory of the same folder and tokens")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (dump_hf.UsageError, replay.UsageError) as e:
        print("replay_hf: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
