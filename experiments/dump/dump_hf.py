#!/usr/bin/env python3
"""Dumps post-RoPE q and un-repeated k/v of a transformers model into dump schema v1.

Registers an attention function "moba_dump" in transformers' attention interface
(ALL_ATTENTION_FUNCTIONS). Attention layers call it with query [batch, n_q_heads, n_tokens,
head_dim] after RoPE and key/value [batch, n_kv_heads, n_tokens, head_dim] before any GQA repeat;
it records them for the chosen layers and then runs transformers' own SDPA attention, so the
model computes exactly what it computes with attn_implementation="sdpa".

Works for Llama-family decoder folders (GQA included): model types in SUPPORTED_MODEL_TYPES,
checked before anything heavy is loaded. Reads a local model folder only and downloads nothing:
fetch a Hugging Face Hub model first (huggingface-cli download ID --local-dir DIR). Needs torch
and transformers (v4.48 or later; tested versions in requirements.txt beside this file), numpy,
and h5py for HDF5 output. A missing package, a Hub id instead of a folder, or any other bad input
is reported in one line with exit code 2.

Examples:
  dump_hf.py --model DIR --text story.txt --max-tokens 1024 --out dump.h5
  dump_hf.py --model DIR --token-ids ids.txt --layers 0,5 --dtype float32 --out dump.safetensors
  dump_hf.py --model stories15M-hf --text story.txt --llama2c-tokenizer tokenizer.bin --out d.h5
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
INSTALL_HINT = ("install the tested versions with: python3 -m pip install -r %s "
                "(numpy and h5py also come as Debian's python3-numpy python3-h5py)" % REQUIREMENTS)

sys.path.insert(0, HERE)
try:
    import llama2c  # noqa: E402
    import schema  # noqa: E402
except ImportError as e:  # numpy: one line and exit 2, not a traceback
    print("dump_hf: error: %s: the dump tools need numpy; %s" % (e, INSTALL_HINT), file=sys.stderr)
    sys.exit(2)

ATTN_NAME = "moba_dump"
# decoders whose attention layers hand post-RoPE q and un-repeated k/v to the attention interface
# with one call per layer carrying module.layer_idx. Verified: llama (stories15M, and a GQA model
# in the device check); the others share Llama's attention code path in transformers.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class UsageError(Exception):
    pass


# "org/name" or "name": what a Hugging Face Hub id looks like (and a path that does not exist).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def read_config(model_dir):
    if not os.path.isdir(model_dir):
        if os.path.exists(model_dir):
            raise UsageError("%s: is a file, not a model folder (config.json + weights)" % model_dir)
        if HUB_ID.match(model_dir):
            raise UsageError(
                "%s: no such local folder. dump_hf.py reads a local transformers model folder and downloads "
                "nothing; if %s is a Hugging Face Hub id, download it first, e.g.\n"
                "  huggingface-cli download %s --local-dir models/%s\n"
                "  (or: git lfs install && git clone https://huggingface.co/%s models/%s)\n"
                "then pass --model models/%s"
                % (model_dir, model_dir, model_dir, model_dir.split("/")[-1], model_dir,
                   model_dir.split("/")[-1], model_dir.split("/")[-1]))
        raise UsageError("%s: no such model folder" % model_dir)
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError:
        raise UsageError("%s: no config.json (not a transformers model folder)" % model_dir)
    except ValueError as e:
        raise UsageError("%s: not valid JSON (%s)" % (path, e))
    mt = config.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise UsageError("%s: model_type %r (architectures %s) is not supported; supported: %s"
                         % (path, mt, config.get("architectures"), ", ".join(SUPPORTED_MODEL_TYPES)))
    return config


def require_packages(out_path):
    """torch and transformers (with the attention interface), and h5py for HDF5 output, before
    anything is loaded: a missing package is a one-line error with the install hint (exit 2)."""
    import importlib
    missing = []
    for name in ("torch", "transformers"):
        try:
            importlib.import_module(name)
        except (ImportError, OSError) as e:
            missing.append("%s (%s)" % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if missing:
        raise UsageError("missing %s: dump_hf.py needs torch and transformers (tested: torch 2.11.0, "
                         "transformers 5.17.0); %s" % (", ".join(missing), INSTALL_HINT))
    try:
        from transformers import AttentionInterface  # noqa: F401
    except ImportError:
        import transformers
        raise UsageError("transformers %s has no AttentionInterface (needs 4.48 or later, tested 5.17.0); %s"
                         % (getattr(transformers, "__version__", "?"), INSTALL_HINT))
    if out_path.lower().endswith((".h5", ".hdf5")):
        try:
            importlib.import_module("h5py")
        except ImportError as e:
            raise UsageError("missing h5py (%s), needed for HDF5 output %s (or write .safetensors); %s"
                             % (e, out_path, INSTALL_HINT))


def read_tokens(args):
    """Token ids from --token-ids, or --text through the folder's tokenizer (or a llama2.c
    tokenizer.bin), cut to --max-tokens; error when fewer tokens than asked for."""
    if args.token_ids:
        ids, src = llama2c.read_token_ids(args.token_ids), args.token_ids
    else:
        text, src = llama2c.read_text(args.text), args.text
        if args.llama2c_tokenizer:
            ids = llama2c.Tokenizer(args.llama2c_tokenizer).encode(text)
        else:
            from transformers import AutoTokenizer
            try:
                tok = AutoTokenizer.from_pretrained(args.model)
            except (OSError, ValueError) as e:
                raise UsageError("%s: no usable tokenizer in the model folder (%s); give --token-ids "
                                 "or --llama2c-tokenizer" % (args.model, str(e).splitlines()[0]))
            ids = tok(text, add_special_tokens=True)["input_ids"]
    if not ids:
        raise UsageError("%s: no tokens" % src)
    if args.max_tokens:
        if len(ids) < args.max_tokens:
            raise UsageError("%s: gives %d tokens, fewer than --max-tokens %d" % (src, len(ids), args.max_tokens))
        ids = ids[:args.max_tokens]
    return ids


def register_recorder(wanted_layers, captured):
    """Registers ATTN_NAME: records (q, k, v) of each wanted layer as float32 numpy
    [heads, n_tokens, head_dim] (batch 0) into captured[layer], then runs SDPA attention."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def recording_attention(module, query, key, value, *args, **kwargs):
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise RuntimeError("attention module %s has no layer_idx" % type(module).__name__)
        if layer in wanted_layers:
            captured[layer] = tuple(t[0].detach().float().cpu().numpy() for t in (query, key, value))
        return sdpa_attention_forward(module, query, key, value, *args, **kwargs)

    AttentionInterface.register(ATTN_NAME, recording_attention)
    try:  # the mask builder needs to know the new name; SDPA's mask format fits
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    except ImportError:
        pass


def run(args):
    config = read_config(args.model)
    n_layers = config.get("num_hidden_layers")
    if not isinstance(n_layers, int) or n_layers <= 0:
        raise UsageError("%s/config.json: bad num_hidden_layers %r" % (args.model, n_layers))
    layers = schema.parse_layers(args.layers, n_layers)
    require_packages(args.out)
    ids = read_tokens(args)

    import torch
    from transformers import AutoModelForCausalLM

    captured = {}
    register_recorder(set(layers), captured)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.compute_dtype == "float32":  # keep fp32 matmuls exact fp32, not TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    compute_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.compute_dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=compute_dtype, attn_implementation=ATTN_NAME)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=compute_dtype,
                                                     attn_implementation=ATTN_NAME)
    model.to(device).eval()
    vocab = model.get_input_embeddings().weight.shape[0]
    if max(ids) >= vocab or min(ids) < 0:
        raise UsageError("token id out of range [0, %d)" % vocab)
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    with torch.inference_mode():
        out = model(input_ids=input_ids, use_cache=False)
    missing = [l for l in layers if l not in captured]
    if missing:
        raise UsageError("%s: layers %s never called the attention interface (model type %s does not "
                         "dispatch through it)" % (args.model, missing, config.get("model_type")))
    if args.nll and len(ids) > 1:
        logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)
        nll = -logp.gather(1, input_ids[0, 1:, None]).mean().item()
        print("nll %.4f nats/token over %d tokens" % (nll, len(ids) - 1))
    name = args.model_name or os.path.basename(os.path.normpath(args.model))
    schema.write_dump(args.out, {l: captured[l] for l in layers}, token_ids=ids, model=name,
                      source=args.source or (args.text or args.token_ids), dtype=args.dtype)
    q, k, _ = captured[layers[0]]
    print("wrote %s: %d layers, %d q heads, %d kv heads, %d tokens, head_dim %d, %s (computed in %s on %s)"
          % (args.out, len(layers), q.shape[0], k.shape[0], len(ids), q.shape[2], args.dtype,
             args.compute_dtype, device))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True,
                    help="local transformers model folder (config.json + weights); a Hub model must be "
                         "downloaded first: huggingface-cli download ID --local-dir DIR")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="UTF-8 text file, tokenized with the folder's tokenizer (BOS added)")
    g.add_argument("--token-ids", help="file of whitespace-separated token ids, used as is")
    ap.add_argument("--llama2c-tokenizer", help="tokenize --text with this llama2.c tokenizer.bin instead")
    ap.add_argument("--max-tokens", type=int, default=0, help="keep the first N tokens; error if fewer")
    ap.add_argument("--layers", default="all", help="comma-separated layer indices, or 'all'")
    ap.add_argument("--dtype", default="bfloat16", choices=schema.DTYPES, help="stored element type")
    ap.add_argument("--compute-dtype", default="float32", choices=schema.DTYPES, help="model weights/compute")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--model-name", help="root attribute 'model' (default: the folder's name)")
    ap.add_argument("--source", help="root attribute 'source' (default: the input path)")
    ap.add_argument("--nll", action="store_true", help="also print the mean next-token NLL")
    ap.add_argument("--out", required=True, help="output .h5/.hdf5 or .safetensors")
    args = ap.parse_args(argv)
    try:
        run(args)
    except (UsageError, llama2c.CheckpointError, schema.DumpError) as e:
        print("dump_hf: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
