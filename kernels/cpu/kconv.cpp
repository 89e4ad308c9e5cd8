// CPU reference of the causal depthwise key convolution (kernels/kconv.h).
#include "kernels/kconv.h"

#include <cmath>

#include "kernels/cpu/cpu_common.h"

namespace moba::kernels {

void kconv_cpu(const KconvParams& p) {
  const int64_t n_heads = p.k.n_heads, n_tokens = p.k.n_tokens, d = p.k.head_dim;
  const int W = p.width;
  const double uniform = 1.0 / W;
  const int64_t n_rows = n_heads * n_tokens;
#pragma omp parallel for schedule(static) if (n_rows * d * W > cpu::kMinParallelElementWork)
  for (int64_t row = 0; row < n_rows; ++row) {
    const int64_t h = row / n_tokens, t = row % n_tokens;
    // [W, head_dim] weights of this head, or nullptr for uniform.
    const float* w = p.weights ? p.weights + (p.weights_per_head ? h * W * d : 0) : nullptr;
    float* out = p.out + row * d;  // [n_heads, n_tokens, d]
    const float* cur = p.k.row(h, t);
    for (int64_t c = 0; c < d; ++c) {
      double conv = 0.0;
      for (int l = 0; l < W && l <= t; ++l) {
        const double wl = w ? static_cast<double>(w[l * d + c]) : uniform;
        conv += wl * static_cast<double>(p.k.row(h, t - l)[c]);
      }
      const double silu = conv / (1.0 + std::exp(-conv));
      out[c] = static_cast<float>(static_cast<double>(cur[c]) + silu);
    }
  }
}

}  // namespace moba::kernels
