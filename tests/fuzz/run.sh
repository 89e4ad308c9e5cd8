#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, every library instrumented)
# and runs each for SECONDS (default 30) on its corpus, seeded with small valid inputs. Exits
# non-zero if any target finds something; the reproducer is left in build-fuzz/findings/.
# The targets run side by side, one per core (FUZZ_JOBS, default nproc): each is one
# single-threaded process, so each still gets SECONDS of a core to itself.
# Usage (repo root): tests/fuzz/run.sh [SECONDS] [TARGET ...]
#   targets: fuzz_json fuzz_safetensors fuzz_hdf5_dump fuzz_args (all by default)
# Re-run a finding: build-fuzz/tests/fuzz/TARGET build-fuzz/findings/TARGET-crash-...
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_json fuzz_safetensors fuzz_hdf5_dump fuzz_args)
BUILD=build-fuzz
mkdir -p $BUILD
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DMOBA_FUZZ=ON -DMOBA_SANITIZE=ON -DMOBA_CUDA=OFF -DMOBA_TESTS=OFF -DMOBA_GUI=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >$BUILD/configure.log 2>&1 \
  || { tail -20 $BUILD/configure.log; exit 1; }
cmake --build $BUILD --target "${TARGETS[@]}"

# Seeds: a valid safetensors dump and its JSON header, JSON odds and ends, a few command lines.
SEEDS=$BUILD/seeds
rm -rf $SEEDS && mkdir -p $SEEDS/fuzz_json $SEEDS/fuzz_safetensors $SEEDS/fuzz_hdf5_dump $SEEDS/fuzz_args
$PY - "$SEEDS" <<'PYEOF'
import json, struct, sys, os
seeds = sys.argv[1]
def safetensors(tensors, meta):
    header, data = {"__metadata__": meta}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data, h
f32 = lambda n, x=0.5: struct.pack("<%df" % n, *[x + i / 7 for i in range(n)])
f16 = lambda n: struct.pack("<%de" % n, *[0.25 + i / 9 for i in range(n)])
meta = {"moba_dump_version": "1", "model": "seed", "rope_applied": "1"}
for i, (blob, h) in enumerate([
        safetensors({"layers.0.q": ("F32", [2, 3, 4], f32(24)), "layers.0.k": ("F32", [1, 3, 4], f32(12)),
                     "layers.0.v": ("F32", [1, 3, 4], f32(12, -1))}, meta),
        safetensors({"layers.0.q": ("F16", [1, 2, 2], f16(4)), "layers.0.k": ("F16", [1, 2, 2], f16(4)),
                     "layers.0.v": ("F16", [1, 2, 2], f16(4)), "layers.1.q": ("BF16", [1, 2, 2], b"\x80\x3f" * 4),
                     "layers.1.k": ("BF16", [1, 2, 2], b"\x00\x40" * 4), "layers.1.v": ("BF16", [1, 2, 2], b"\x00\xc0" * 4)},
                    meta)]):
    open(os.path.join(seeds, "fuzz_safetensors", "seed%d" % i), "wb").write(blob)
    open(os.path.join(seeds, "fuzz_json", "header%d" % i), "wb").write(h)
for i, t in enumerate(['{}', '[]', '{"a": [1, -2.5e-3, true, false, null, "x\\u00e9\\n"]}', '18446744073709551615',
                       '{"a":{"b":{"c":[[[[]]]]}}}']):
    open(os.path.join(seeds, "fuzz_json", "text%d" % i), "w").write(t)
for i, argv in enumerate([["d.h5", "--block-sizes", "16,32", "--top-k", "2,4", "--out", "A"],
                          ["--sparsity=0.5,0.75", "--tie", "older", "--gqa", "shared", "--kconv", "5"],
                          ["--layer", "3", "--pool-precision", "fp32", "--kconv-apply", "both", "--quiet"]]):
    open(os.path.join(seeds, "fuzz_args", "argv%d" % i), "wb").write(b"\0".join(a.encode() for a in argv))
open(os.path.join(seeds, "fuzz_hdf5_dump", "zeros"), "wb").write(bytes(64))
PYEOF

mkdir -p $BUILD/findings
# One target: its line of the report in $BUILD/$t.report, "FINDING" in it when it failed.
fuzz_one() {
  local t=$1 log=$BUILD/$1.log report=$BUILD/$1.report
  mkdir -p $BUILD/corpus/$t
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     $BUILD/tests/fuzz/$t -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix=$BUILD/findings/$t- $BUILD/corpus/$t $SEEDS/$t >$log 2>&1; then
    runs=$(grep -m1 -o "stat::number_of_executed_units: *[0-9]*" $log | grep -o "[0-9]*$" || echo "?")
    cov=$(grep -o "cov: [0-9]*" $log | tail -1 || true)
    echo "$t: ${SECS}s, $runs runs, $cov, corpus $(ls $BUILD/corpus/$t | wc -l) inputs, no finding" >$report
  else
    { echo "$t: FINDING (see $log)"; grep -m5 -E "ERROR|SUMMARY|runtime error|terminate" $log || tail -20 $log; } >$report
  fi
}
JOBS=${FUZZ_JOBS:-$(nproc)}
running=0
for t in "${TARGETS[@]}"; do
  rm -f $BUILD/$t.report
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait
status=0
for t in "${TARGETS[@]}"; do
  [ -s $BUILD/$t.report ] || echo "$t: FINDING (no report: see $BUILD/$t.log)" >$BUILD/$t.report
  cat $BUILD/$t.report
  ! grep -q "^$t: FINDING" $BUILD/$t.report || status=1
done
exit $status
