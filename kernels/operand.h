#pragma once
// One input tensor of an op, as every backend sees it: an fp32 view ([heads, tokens, dim],
// what the CPU reference reads) plus, for the CUDA backend only, the same tensor as raw
// 16-bit device values. Implicitly built from a TensorView (an fp32 operand), so callers
// that hold fp32 views assign them as before.
//
// dtype: f32 — `data` holds the values (the tensor-core ops, moba_attention and dense_pass,
// keep them fp32-accurate under Precision::exact, split into scaled fp16 hi + lo, and round them to
// bf16 under Precision::fast: lossy, stated; block_pool and gate_topk read fp32). f16 / bf16 — the
// values' type: read from `raw16` when it is set (same shape and strides as the view; `data`
// may then be null), otherwise `data` is converted to it (lossless when its values came from
// a dump of that dtype). Validation (*_can_run) needs the values present in either form;
// the CPU reference reads `data` only, so raw16-only operands are for the CUDA entries.
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace moba::kernels {

// How the CUDA tensor-core ops (moba_attention, dense_pass, gate_topk) compute (DESIGN.md §8,
// "Numerics"; kernels/cuda/NOTES.md, "Exact numerics"). The CPU reference ignores it.
//   exact — in the operands' own precision: f16 operands on fp16 tensor cores with P in fp16;
//           bf16 operands on bf16 tensor cores with P split into bf16 hi + lo (two PV
//           products); f32 operands (or a mix of dtypes) split into fp16 hi + lo with a
//           power-of-two scale per tensor, QK^T = hi.hi + hi.lo + lo.hi and P.V the same
//           way ("fp16x3": ~2^-21 per product, fp32-level accuracy);
//           gate_topk on fp32 scores (the scalar kernel).
//   fast  — the pre-phase-2 behaviour: one bf16 (or the operands' 16-bit type) tensor-core
//           product, P rounded to that type, f32 operands rounded to bf16; gate_topk may use
//           its tensor-core kernel (bf16 q).
enum class Precision { exact, fast };
inline const char* precision_name(Precision p) { return p == Precision::fast ? "fast" : "exact"; }

struct Operand : TensorView {
  const uint16_t* raw16 = nullptr;  // device, f16/bf16 bits of `dtype`; CUDA only; optional
  DType dtype = DType::f32;

  Operand() = default;
  Operand(const TensorView& v) : TensorView(v) {}  // NOLINT(google-explicit-constructor): fp32 view
  // A raw 16-bit device operand of `view`'s shape and strides (`data` cleared).
  static Operand device16(const TensorView& view, const uint16_t* raw, DType t) {
    Operand o(view);
    o.data = nullptr;
    o.raw16 = raw;
    o.dtype = t;
    return o;
  }
  // The same values staged elsewhere (e.g. a device copy of the fp32 view): dtype kept.
  Operand with_view(const TensorView& view) const {
    Operand o(view);
    o.raw16 = raw16;
    o.dtype = dtype;
    return o;
  }
  // An fp32 view whose values are representable in `t` (they came from a dump of that dtype).
  static Operand of_dtype(const TensorView& view, DType t) {
    Operand o(view);
    o.dtype = t;
    return o;
  }
  // The values are given (fp32 or raw 16-bit), or the operand is empty (no tokens).
  bool has_values() const { return data != nullptr || raw16 != nullptr; }
};

}  // namespace moba::kernels
