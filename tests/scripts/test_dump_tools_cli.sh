#!/usr/bin/env bash
# experiments/dump/dump_hf.py without a model and without torch: a Hub id that is not a local
# folder, a missing folder, missing torch/transformers (blocked with stub modules, so the check
# does not depend on what this machine has installed), missing numpy: each is one line on
# stderr (no traceback), exit 2, no output file. requirements.txt pins the tested torch and
# transformers. npz: `moba info` refuses it with the sentence the docs quote.
# usage: test_dump_tools_cli.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
ROOT=$(cd "$HERE/../.." && pwd)
TOOL="$ROOT/experiments/dump/dump_hf.py"
case "$MOBA" in */*) MOBA=$(realpath "$MOBA") ;; esac
cd "$WORK"
echo "1 2 3 4" >ids.txt

# run_tool NAME EXPECTED_EXIT [env...] -- args: runs dump_hf.py, checks exit code, no traceback
run_tool() {
  local name=$1 want=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  set +e
  env "${envs[@]}" "$PY" "$TOOL" "$@" >"$name.out" 2>"$name.err"
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || { cat "$name.err"; fail "$name: exit $rc, expected $want"; }
  if grep -q "Traceback" "$name.err"; then cat "$name.err"; fail "$name: traceback instead of a message"; fi
  [ ! -e out.h5 ] || fail "$name: output file left behind"
}

# 1. Hub id (not a local folder): the download hint, exit 2.
run_tool hub 2 X=1 -- --model meta-llama/Llama-3.2-1B --token-ids ids.txt --out out.h5
grep -q "huggingface-cli download meta-llama/Llama-3.2-1B --local-dir" hub.err || { cat hub.err; fail "hub: no download hint"; }
grep -q "git clone https://huggingface.co/meta-llama/Llama-3.2-1B" hub.err || { cat hub.err; fail "hub: no git clone hint"; }
[ "$(grep -c 'dump_hf: error:' hub.err)" = 1 ] || fail "hub: expected one error message"

# 2. A missing path that is not a Hub id: plain message.
run_tool missing 2 X=1 -- --model "$WORK/no/such/folder" --token-ids ids.txt --out out.h5
grep -q "no such model folder" missing.err || { cat missing.err; fail "missing: message"; }

# 3. A valid folder, torch and transformers missing (stub modules that fail to import).
mkdir -p model block-torch block-numpy
echo '{"model_type": "llama", "num_hidden_layers": 2}' >model/config.json
for m in torch transformers; do echo "raise ImportError(\"No module named '$m' (blocked by the test)\")" >"block-torch/$m.py"; done
run_tool notorch 2 PYTHONPATH="$WORK/block-torch" -- --model model --token-ids ids.txt --out out.h5
for w in "missing torch" "transformers" "torch 2.11.0" "transformers 5.17.0" "pip install -r" "requirements.txt"; do
  grep -qF "$w" notorch.err || { cat notorch.err; fail "notorch: message lacks '$w'"; }
done

# 4. numpy missing: one line, exit 2 (before argparse).
echo "raise ImportError(\"No module named 'numpy' (blocked by the test)\")" >block-numpy/numpy.py
run_tool nonumpy 2 PYTHONPATH="$WORK/block-numpy" -- --model model --token-ids ids.txt --out out.h5
grep -q "need numpy" nonumpy.err || { cat nonumpy.err; fail "nonumpy: message"; }

# 5. requirements.txt: the tested versions.
REQ="$ROOT/experiments/dump/requirements.txt"
for p in torch==2.11.0 transformers==5.17.0 numpy h5py safetensors; do
  grep -qE "^$p" "$REQ" || fail "requirements.txt lacks $p"
done

# 6. npz: refused by moba with the sentence docs/dump-format.md and experiments/dump/README.md quote.
"$PY" -c "import numpy as np; np.savez('d.npz', q=np.zeros((1, 4, 8), np.float32))"
sentence="npz dumps are not supported yet; convert to HDF5 or safetensors"
expect_exit2 "$sentence" "$MOBA" info d.npz
for doc in "$ROOT/docs/dump-format.md" "$ROOT/experiments/dump/README.md"; do
  grep -qF "$sentence" "$doc" || fail "${doc#"$ROOT/"} does not quote moba's npz refusal"
done
if grep -rniE "npz[^.]*(welcome|supported too|is read)" "$ROOT/docs" "$ROOT/README.md" "$ROOT/experiments/dump" >npz-claims.txt; then
  cat npz-claims.txt; fail "a document claims npz is read"
fi

echo "PASS: dump_hf.py errors are one line with exit 2 (Hub id, missing folder, torch/transformers, numpy); requirements pinned; npz wording consistent"
