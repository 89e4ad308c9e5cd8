#pragma once
// One input tensor of an op, as every backend sees it: an fp32 view ([heads, tokens, dim],
// what the CPU reference reads) plus, for the CUDA backend only, the same tensor as raw
// 16-bit device values. Implicitly built from a TensorView (an fp32 operand), so callers
// that hold fp32 views assign them as before.
//
// dtype: f32 — `data` holds the values (the tensor-core ops, moba_attention and dense_pass,
// compute them as bf16: lossy, stated; block_pool and gate_topk read fp32). f16 / bf16 — the
// values' type: read from `raw16` when it is set (same shape and strides as the view; `data`
// may then be null), otherwise `data` is converted to it (lossless when its values came from
// a dump of that dtype). Validation (*_can_run) needs the values present in either form;
// the CPU reference reads `data` only, so raw16-only operands are for the CUDA entries.
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace moba::kernels {

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
  // The values are given (fp32 or raw 16-bit), or the operand is empty (no tokens).
  bool has_values() const { return data != nullptr || raw16 != nullptr; }
};

}  // namespace moba::kernels
