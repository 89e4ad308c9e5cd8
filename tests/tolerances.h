#pragma once
// Per-dtype tolerances of the CPU-vs-CUDA comparison (tests/gpu), one row per input dtype:
// `row` for Precision::fast (the pre-phase-2 numerics, kernels/operand.h), `exact_row` for
// Precision::exact (the default of route / analyze; issue 10 item 2's acceptance targets).
// The CPU reference runs on the same values (inputs are drawn, then rounded to the dtype),
// so the differences are only the GPU's arithmetic:
//  - attention (moba_attention, dense_pass o/lse): P is rounded to the 16-bit type before the
//    PV product (as FlashAttention does), fp32 accumulation. The max abs output error must
//    stay within `attn_vs_naive` x the max error of a naive low-precision reference (exact
//    P rounded to the 16-bit type, times V in double; computed by the test on the same
//    inputs) plus `attn_out_abs` x rms(o); lse within an absolute bound (fp32 statistics).
//  - block masses / top-n probabilities: fp32 exp of fp32 scores from exact 16-bit products:
//    small absolute error.
//  - gate scores: fp32 FMA in channel order vs the CPU's fp32 multiply-add; selections must
//    match as sets except where the CPU scores of the disagreeing blocks lie within
//    `gate_tie_rel` x (|q| |kbar|) of each other (the tie contract, DESIGN.md §3).
//  - pooled means: one ulp of the pool dtype (accumulation order).
#include "core/dtype.h"

namespace moba::tolerances {

struct Row {
  double attn_vs_naive;      // max |o_gpu - o_cpu| <= this x naive low-precision error
  double attn_out_abs;       //   + this x rms(o_cpu)
  double attn_lse_abs;       // max |lse_gpu - lse_cpu|
  double mass_abs;           // max |m_gpu - m_cpu| (block mass, top-n probability)
  double gate_tie_rel;       // score gap counted as a tie, relative to |q| |kbar|
  double pool_ulps;          // pooled mean, in ulps of the pool dtype
};

// fp32 views are rounded to bf16 on the device (stated): lse and masses carry that input
// rounding (measured at T=1023, d=64: lse 5.7e-3, output 3.4e-3 = 0.02 rms beyond the naive
// reference, which does not round the inputs).
constexpr Row kF32{2.0, 3e-2, 1e-2, 3e-4, 1e-5, 1.0};
constexpr Row kF16{2.0, 1e-5, 5e-4, 1e-5, 1e-5, 1.0};
constexpr Row kBF16{2.0, 1e-5, 2e-3, 1e-5, 1e-5, 1.0};

constexpr const Row& row(DType t) { return t == DType::f16 ? kF16 : t == DType::bf16 ? kBF16 : kF32; }

// Precision::exact. Metrics: `out_rel` bounds max over (head, query) rows of
// ||o_gpu - o_cpu||_2 / ||o_cpu||_2 (a row the CPU leaves at 0 must be 0); `lse_abs` max
// |lse_gpu - lse_cpu| (nats); `mass_abs` block masses and top-n probabilities (dense pass).
// Expected (kernels/cuda/NOTES.md, "Exact numerics"; u16 = fp16 unit roundoff 2^-11):
//  - f16: products exact (fp16 inputs, fp32 accumulate), P rounded to fp16 (<= 2^-11
//    relative per element): output ~3e-4 row-relative, lse ~1e-5; target 2e-3.
//  - bf16: products exact, P = hi + lo bf16 (2^-16): output ~1e-5, lse ~1e-5; target 2e-3.
//  - f32: fp16x3 (q, k, v as scaled fp16 hi + lo, 2^-22 each; QK^T and PV drop lo.lo):
//    ~2^-21 per product, output ~1e-6 and lse ~2e-6 even at inputs x2.5 (a numpy model of
//    the scheme; bf16 hi + lo measured 8e-5 / 1.4e-4 there, over target); target 1e-4.
// The lse bounds are 10x the fp32 statistics' own noise at these sizes (decisive against
// fast mode, whose bf16 rounding gives ~5e-3).
struct ExactRow {
  double out_rel;   // max row-relative output error
  double lse_abs;   // max |lse_gpu - lse_cpu|
  double mass_abs;  // max |m_gpu - m_cpu|, block masses and top-n probabilities
};
constexpr ExactRow kExactF32{1e-4, 1e-4, 5e-5};
constexpr ExactRow kExactF16{2e-3, 2e-4, 2e-5};
constexpr ExactRow kExactBF16{2e-3, 2e-4, 2e-5};

constexpr const ExactRow& exact_row(DType t) {
  return t == DType::f16 ? kExactF16 : t == DType::bf16 ? kExactBF16 : kExactF32;
}

}  // namespace moba::tolerances
