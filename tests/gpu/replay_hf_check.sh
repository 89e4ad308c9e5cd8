#!/usr/bin/env bash
# The transformers replay (experiments/replay/replay_hf.py, torch on the GPU) against the numpy
# replay (replay.py) on the same weights and tokens, on a machine with torch + transformers:
#   1. a random-init GQA Llama (4 q heads, 2 kv heads, head_dim 32, 2 layers) built by
#      transformers, 1024 random tokens, routers moba and oracle at B = 32, 64 with k = 4:
#      replay.py (float64, CPU) and replay_hf.py (float32, cuda, --gate-order interleaved, so
#      the gate's float32 channel sums run in llama2.c's order as in the numpy path). Compared:
#      full-attention NLL (1e-4), layer-0 selections (>= 99.9 % of rows identical: only float32
#      near-ties may flip), per-configuration dNLL (1e-3 + 5 %); each path's dNLL is reported.
#   2. optional, a converted real model: HF_FOLDER (convert_llama2c.py of stories15M-4k.f16.xz,
#      fp16, 30 MB) with NUMPY_RUN (a `moba replay` run directory of the same model, whose
#      replay.h5 has the token ids): replay_hf.py on the same tokens and configurations,
#      compared the same way.
# usage (repo root): tests/gpu/replay_hf_check.sh [OUT_DIR [HF_FOLDER NUMPY_RUN]]
# Exit 1 when a comparison fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-/tmp/moba-out}/replay_hf}
HF=${2:-}
NPRUN=${3:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
$PY -c 'import torch, transformers, numpy, h5py; print("torch", torch.__version__, "transformers", transformers.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
rc=0
DEV=$($PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')

echo "== 1. random GQA Llama, 1024 tokens: replay_hf.py ($DEV) vs replay.py (numpy)"
$PY - "$OUT/gqa" <<'PYEOF'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg)
with torch.no_grad():  # larger than the default init so attention is far from uniform
    for name, p in model.named_parameters():
        if "proj" in name:
            p.mul_(4.0)
model.save_pretrained(sys.argv[1])
print("saved", sys.argv[1])
PYEOF
$PY -c "import random; random.seed(2); print(' '.join(str(random.randrange(512)) for _ in range(1024)))" > "$OUT/gqa_ids.txt"
CONF=(--block-sizes 32,64 --top-k 4 --routers moba,oracle)
rm -rf "$OUT/gqa_np" "$OUT/gqa_hf"
$PY experiments/replay/replay.py --model "$OUT/gqa" --token-ids "$OUT/gqa_ids.txt" "${CONF[@]}" \
  --no-analyze --no-report --no-dense-check --out "$OUT/gqa_np"
$PY experiments/replay/replay_hf.py --model "$OUT/gqa" --token-ids "$OUT/gqa_ids.txt" "${CONF[@]}" \
  --gate-order interleaved --device "$DEV" --out "$OUT/gqa_hf" --compare "$OUT/gqa_np" || rc=1

if [ -n "$HF" ] && [ -n "$NPRUN" ]; then
  echo "== 2. $HF on the tokens of $NPRUN: replay_hf.py ($DEV) vs the numpy run"
  $PY -c "import h5py; print(' '.join(map(str, h5py.File('$NPRUN/replay.h5')['token_ids'][()])))" > "$OUT/real_ids.txt"
  BS=$($PY -c "import json; c=json.load(open('$NPRUN/run.json'))['config']; print(','.join(map(str, c['block_sizes'])))")
  BUDGET=$($PY -c "import json; print(json.load(open('$NPRUN/run.json'))['config']['budget'] or '')")
  ROUTERS=$($PY -c "import json; print(','.join(json.load(open('$NPRUN/run.json'))['config']['routers']))")
  KARG=(--budget "$BUDGET"); [ -n "$BUDGET" ] || KARG=(--top-k "$($PY -c "import json; print(','.join(sorted({str(k) for _, k in json.load(open('$NPRUN/run.json'))['config']['configs_B_k']})))")")
  $PY experiments/replay/replay_hf.py --model "$HF" --token-ids "$OUT/real_ids.txt" --block-sizes "$BS" "${KARG[@]}" \
    --routers "$ROUTERS" --gate-order interleaved --device "$DEV" --out "$OUT/real_hf" --compare "$NPRUN" || rc=1
fi
echo "replay_hf_check: done ($([ $rc = 0 ] && echo "all comparisons pass" || echo "a comparison FAILED"))"
exit $rc
