#!/usr/bin/env python3
"""Times torch SDPA (flash = FlashAttention-2, and cuDNN) on the PERF.md shapes -- causal
forward, bf16, batch 2 x 16 heads x head dim 128 -- in the same device call as `moba bench`,
and prints one table of ratios against the moba bench JSON (--moba FILE).

Timing: CUDA events, 2 warm-ups, median of --reps (fewer at 128K), random inputs.
"""
import argparse
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def sdpa(tokens, reps):
    out = {}
    q, k, v = (torch.randn(2, 16, tokens, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            torch.cuda.reset_peak_memory_stats()
            with sdpa_kernel(backend):
                ms = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), reps)
            out[name] = (ms, torch.cuda.max_memory_allocated() / 2**30)
        except RuntimeError as e:  # backend unavailable
            out[name] = (float("nan"), float("nan"))
            print(f"sdpa {name} at {tokens}: {e}", file=sys.stderr)
    del q, k, v
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moba", required=True, help="moba bench --json output")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json-out")
    ap.add_argument("--baseline", help="a second moba bench --json output (e.g. the previous build's), "
                                       "timed in the same call: its ms and new/base ratio are added per row")
    a = ap.parse_args()
    moba = json.load(open(a.moba))
    basemoba = {}
    if a.baseline:
        for r in json.load(open(a.baseline))["rows"]:
            basemoba[(r["bench"], r["tokens"], r["block_size"], r["top_k"])] = r["total_ms"]
    tokens = sorted({r["tokens"] for r in moba["rows"]})
    base = {}
    for t in tokens:
        base[t] = sdpa(t, a.reps if t < 131072 else 3)
        flops = 4 * 2 * 16 * t * t / 2 * 128
        print(f"sdpa T={t}: flash {base[t]['flash'][0]:.3f} ms ({flops / base[t]['flash'][0] / 1e9:.0f} TFLOP/s), "
              f"cudnn {base[t]['cudnn'][0]:.3f} ms ({flops / base[t]['cudnn'][0] / 1e9:.0f} TFLOP/s)", file=sys.stderr)
    if a.json_out:
        json.dump({str(t): base[t] for t in tokens}, open(a.json_out, "w"))
    print(f"\ndevice: {moba['device']} (torch {torch.__version__}, {torch.cuda.get_device_name()})")
    print(f"{'bench':5} {'T':>7} {'B':>5} {'k':>3} {'moba_ms':>9} {'route%':>7} {'peak_GiB':>8} "
          f"{'flash_ms':>9} {'cudnn_ms':>9} {'x_flash':>8} {'x_cudnn':>8} {'sdpa_GiB':>8}"
          + (f" {'base_ms':>9} {'base_xfl':>8} {'base_xcu':>8} {'new/base':>8}" if basemoba else ""))
    for r in moba["rows"]:
        t = r["tokens"]
        fl, cu = base[t]["flash"], base[t]["cudnn"]
        ms = r["total_ms"]
        print(f"{r['bench']:5} {t:>7} {r['block_size']:>5} {r['top_k']:>3} {ms:>9.3f} "
              f"{100 * r['routing_share']:>6.1f}% {r['peak_gib']:>8.2f} {fl[0]:>9.3f} {cu[0]:>9.3f} "
              f"{fl[0] / ms:>8.2f} {cu[0] / ms:>8.2f} {max(fl[1], cu[1]):>8.2f}"
              + (lambda b: f" {b:>9.3f} {fl[0] / b:>8.2f} {cu[0] / b:>8.2f} {ms / b:>8.3f}" if b else "")(
                  basemoba.get((r["bench"], t, r["block_size"], r["top_k"]))))
    print("x_flash / x_cudnn = SDPA time / moba time (B1: > 1 means MoBA faster; B3: the analysis pass, "
          "goal >= 0.25 vs cuDNN). B3 rows: B column = query chunk, k = number of block sizes.")


if __name__ == "__main__":
    main()
