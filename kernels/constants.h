#pragma once
// Numeric constants and the softmax-scale default shared by the CPU and CUDA backends
// (usable in device code: plain constexpr scalars and an inline host function).
#include <cmath>
#include <cstdint>
#include <limits>

namespace moba::kernels {

constexpr float kLn2 = 0.69314718055994531f;    // ln 2: log2-domain values -> natural log
constexpr float kLog2e = 1.4426950408889634f;   // log2 e: natural-log scale -> log2 domain
constexpr float kQuietNaN = std::numeric_limits<float>::quiet_NaN();  // bits 0x7fc00000

// The softmax scale of an attention op: `softmax_scale` when > 0, else 1 / sqrt(head_dim)
// (computed in double, rounded once to fp32).
inline float softmax_scale_or_default(float softmax_scale, int64_t head_dim) {
  return softmax_scale > 0.0f ? softmax_scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}
template <typename Params>
float softmax_scale_or_default(const Params& p) {
  return softmax_scale_or_default(p.softmax_scale, p.q.head_dim);
}

}  // namespace moba::kernels
