#!/usr/bin/env bash
# The acceptance checks of `moba replay` on the real long-context model (ctest label `model`,
# not in default CI): stories15M-4k on a 4096-token window of KJV Genesis (Debian's bible-kjv;
# not the model's held-out evaluation tails), MoBA in all six layers at B = 64, k = 8
# (routers moba, oracle) plus the k*B >= T configuration:
#   1. the full-attention replay's mean NLL equals the plain forward (llama2c.Model.nll) to 1e-5;
#   2. MoBA at k*B >= T equals full attention exactly (identical final states, dNLL 0);
#   3. the layer-0 selections equal `moba route` on the float32 dump of the same window (the
#      run's dump.h5, and a dump written separately with `llama2c.py dump`).
# Needs the checkpoint (MOBA_STORIES15M_4K=path/to/stories15M-4k.f16.xz, default: the team's
# shared data folder beside the clone) and the stories15M tokenizer (fetch_stories15m.sh);
# exits 77 (skipped) without them. About 5 minutes on 2 cores with OpenBLAS.
# usage: replay_4k.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/../scripts/io_common.sh"
ROOT=$(cd "$HERE/../.." && pwd)
MODEL=${MOBA_STORIES15M_4K:-$ROOT/../shared/data/stories15M-4k/stories15M-4k.f16.xz}
[ -f "$MODEL" ] || { echo "SKIP: no stories15M-4k checkpoint at $MODEL (set MOBA_STORIES15M_4K)"; exit 77; }
if ! cache=$("$ROOT/experiments/dump/fetch_stories15m.sh"); then
  echo "SKIP: the stories15M tokenizer is not available (experiments/dump/fetch_stories15m.sh)"; exit 77
fi
command -v bible >/dev/null || { echo "SKIP: 'bible' not found (apt-get install bible-kjv)"; exit 77; }
bible -f Genesis1:1-Genesis50:26 </dev/null | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' > "$WORK/genesis.txt"
export MOBA_PYTHON="$PY"
"$MOBA" replay --model "$MODEL" --tokenizer "$cache/tokenizer.bin" --text "$WORK/genesis.txt" --max-tokens 4096 \
  --block-sizes 64 --budget 512 --routers moba,oracle --plain-nll-direct --no-analyze --no-report \
  --out "$WORK/run" | tee "$WORK/out.txt"
grep -q "full_vs_plain pass, dense pass, route_layer0 pass" "$WORK/out.txt" || fail "acceptance checks: $(cat "$WORK/out.txt")"
"$PY" - "$WORK/run/run.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))["checks"]
fp, d = c["full_vs_plain"], c["dense"]
print("full replay %.8f vs plain forward %.8f (|diff| %.1e); %s: identical final states %s, max |dNLL| %g"
      % (fp["nll_replay_full"], fp["nll_plain"], fp["abs_diff"], d["config"], d["identical_final_states"], d["max_abs_dnll"]))
for r in c["route_layer0"]["configs"]:
    print("layer 0 %s: %d of %d rows differ from moba route" % (r["config"], r["mismatched_rows"], r["rows"]))
PYEOF
# 3 again, with the dump written separately by the dump tool's own command (llama2c.py dump)
"$PY" "$ROOT/experiments/dump/llama2c.py" dump --model "$MODEL" --tokenizer "$cache/tokenizer.bin" \
  --text "$WORK/genesis.txt" --max-tokens 4096 --layers 0 --dtype float32 --out "$WORK/dump_tool.h5"
"$MOBA" route "$WORK/dump_tool.h5" --layer 0 --block-size 64 --top-k 8 --out "$WORK/route.h5" --quiet >/dev/null
"$PY" - "$WORK/route.h5" "$WORK/run/replay.h5" <<'PYEOF'
import sys, h5py, numpy as np
want = h5py.File(sys.argv[1], "r")["selected"][...]
got = h5py.File(sys.argv[2], "r")["configs/moba_B64_k8/layers/0/selected"][...].astype(np.int32)
bad = int(np.any(want != got, axis=-1).sum())
print("layer 0 moba_B64_k8 vs moba route on llama2c.py dump's file: %d of %d rows differ" % (bad, want.shape[0] * want.shape[1]))
sys.exit(1 if bad else 0)
PYEOF
echo "replay_4k: ok"
