#!/usr/bin/env bash
# Checks the transformers dump path against the numpy reference, on a machine with torch and
# transformers (the GPU device machine). One run does everything:
#   1. stories15M (transformers folder from convert_llama2c.py) on the 1024 Genesis tokens of the
#      shipped dump: dump_hf.py (float32 compute and storage) vs llama2c.py on the same folder's
#      weights: q.k^T scores and v within --tol per layer and head; plus the NLL of both paths;
#   2. the same in the shipped configuration (bf16 storage) against the shipped dump, whose
#      weights were fp32 rather than this folder's fp16 (reported; bf16 + fp16 rounding level);
#   3. a random GQA Llama (8 q heads, 2 kv heads) built by transformers, both paths;
#   4. safetensors output equals HDF5 output; --text through --llama2c-tokenizer gives the
#      shipped token ids; clear errors (missing folder, short text).
# usage: device_check.sh HF_FOLDER TOKENIZER_BIN OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hf=${1:?usage: device_check.sh HF_FOLDER TOKENIZER_BIN OUT_DIR}
tokbin=${2:?usage}
out=${3:?usage}
mkdir -p "$out"
data=$here/../data
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
tol=1e-3

$PY -c 'import torch, transformers, numpy, h5py; print("torch", torch.__version__, "transformers", transformers.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
$PY -c "import h5py; print(' '.join(map(str, h5py.File('$data/stories15M_genesis_1024.h5')['token_ids'][()])))" > "$out/genesis_ids.txt"

echo "== 1. stories15M, Genesis 1024 tokens, float32: transformers vs numpy on the same weights"
$PY "$here/dump_hf.py" --model "$hf" --token-ids "$out/genesis_ids.txt" --dtype float32 --nll --out "$out/hf_f32.h5"
$PY "$here/llama2c.py" nll --model "$hf" --token-ids "$out/genesis_ids.txt"
$PY "$here/llama2c.py" dump --model "$hf" --token-ids "$out/genesis_ids.txt" --dtype float32 --out "$out/np_f32.h5"
$PY "$here/compare.py" "$out/hf_f32.h5" "$out/np_f32.h5" --tol $tol | tee "$out/compare_stories15M.txt"

echo "== 2. transformers bf16 dump vs the shipped dump (fp32 weights, numpy); bf16 + fp16-weight rounding"
$PY "$here/dump_hf.py" --model "$hf" --text "$data/tinystory.txt" --llama2c-tokenizer "$tokbin" --max-tokens 256 \
  --out "$out/hf_tinystory.h5"
$PY "$here/dump_hf.py" --model "$hf" --token-ids "$out/genesis_ids.txt" --out "$out/hf_bf16.h5"
$PY "$here/compare.py" "$out/hf_bf16.h5" "$data/stories15M_genesis_1024.h5" --tol 1e-2 | tail -n 1
$PY "$here/compare.py" "$out/hf_tinystory.h5" "$data/stories15M_tinystory_256.h5" --tol 1e-2 | tail -n 1

echo "== 3. random GQA Llama (8 q heads, 2 kv heads, head_dim 32), transformers vs numpy"
$PY - "$out/gqa" <<'PYEOF'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg)
with torch.no_grad():  # larger than default init so attention is far from uniform
    for name, p in model.named_parameters():
        if "proj" in name:
            p.mul_(4.0)
model.save_pretrained(sys.argv[1])
print("saved", sys.argv[1])
PYEOF
$PY -c "import random; random.seed(1); print(' '.join(str(random.randrange(512)) for _ in range(300)))" > "$out/gqa_ids.txt"
$PY "$here/dump_hf.py" --model "$out/gqa" --token-ids "$out/gqa_ids.txt" --dtype float32 --out "$out/gqa_hf.h5"
$PY "$here/llama2c.py" dump --model "$out/gqa" --token-ids "$out/gqa_ids.txt" --dtype float32 --out "$out/gqa_np.h5"
$PY "$here/compare.py" "$out/gqa_hf.h5" "$out/gqa_np.h5" --tol $tol | tee "$out/compare_gqa.txt"

echo "== 4. safetensors output, tokenizer and errors"
$PY "$here/dump_hf.py" --model "$hf" --token-ids "$out/genesis_ids.txt" --layers 0,5 --out "$out/hf_bf16.safetensors"
$PY "$here/compare.py" "$out/hf_bf16.safetensors" "$out/hf_bf16.h5" --tol 0 | tail -n 1
$PY "$here/dump_hf.py" --model "$hf" --text "$data/tinystory.txt" --llama2c-tokenizer "$tokbin" --max-tokens 100000 --out "$out/x.h5" || echo "exit $? (expected 2)"
$PY "$here/dump_hf.py" --model "$out/no-such-model" --token-ids "$out/gqa_ids.txt" --out "$out/x.h5" || echo "exit $? (expected 2)"
[ ! -e "$out/x.h5" ] && echo "no partial output left"
echo "device_check: done"
