#!/usr/bin/env python3
"""Converts a llama2.c v0 checkpoint (stories15M.bin) into a transformers Llama folder, numpy only.

Writes config.json, generation_config.json and model.safetensors (one file, deterministic bytes).
q_proj/k_proj rows are permuted per head from llama2.c's interleaved RoPE pairs to transformers'
rotate-half order (llama2c.to_rotate_half); everything else maps 1:1
(w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj; the classifier stays tied to the embedding).
No tokenizer is written (tokenizer.bin is not a SentencePiece model): give dump_hf.py token ids,
e.g. from `llama2c.py encode`.

usage: convert_llama2c.py --model stories15M.bin --out DIR [--dtype float16|bfloat16|float32]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama2c  # noqa: E402
import schema  # noqa: E402


def convert(model_path, out_dir, dtype):
    cfg, w = llama2c.load_checkpoint(model_path)
    if not cfg.shared_classifier:
        raise llama2c.CheckpointError("%s: untied classifier; only tied checkpoints are supported" % model_path)

    def enc(a):
        if dtype == "bfloat16":
            return "BF16", schema.float_to_bf16_bits(a)
        if dtype == "float16":
            return "F16", np.ascontiguousarray(a, dtype="<f2")
        return "F32", np.ascontiguousarray(a, dtype="<f4")

    t = {"model.embed_tokens.weight": w["tok_embeddings"], "model.norm.weight": w["rms_final"]}
    for l in range(cfg.n_layers):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = w["rms_att"][l]
        t[p + "self_attn.q_proj.weight"] = llama2c.to_rotate_half(w["wq"][l], cfg.n_heads)
        t[p + "self_attn.k_proj.weight"] = llama2c.to_rotate_half(w["wk"][l], cfg.n_kv_heads)
        t[p + "self_attn.v_proj.weight"] = w["wv"][l]
        t[p + "self_attn.o_proj.weight"] = w["wo"][l]
        t[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        t[p + "mlp.gate_proj.weight"] = w["w1"][l]
        t[p + "mlp.up_proj.weight"] = w["w3"][l]
        t[p + "mlp.down_proj.weight"] = w["w2"][l]
    tensors = [(name,) + enc(t[name]) for name in sorted(t)]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": llama2c.RMS_EPS,
        "rope_theta": llama2c.ROPE_THETA,
        "rope_parameters": {"rope_type": "default", "rope_theta": llama2c.ROPE_THETA},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "bos_token_id": llama2c.BOS,
        "eos_token_id": llama2c.EOS,
        "torch_dtype": dtype,
        "dtype": dtype,
    }
    gen = {"bos_token_id": llama2c.BOS, "eos_token_id": llama2c.EOS}
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-convert-", dir=parent)
    try:
        schema.write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        for name, obj in (("config.json", config), ("generation_config.json", gen)):
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(obj, f, indent=2, sort_keys=True)
                f.write("\n")
        os.chmod(tmp, 0o755)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="llama2.c v0 checkpoint")
    ap.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    ap.add_argument("--dtype", default="float16", choices=schema.DTYPES)
    args = ap.parse_args(argv)
    try:
        cfg = convert(args.model, args.out, args.dtype)
    except llama2c.CheckpointError as e:
        print("convert_llama2c: error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s: %r, %s" % (args.out, cfg, args.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
