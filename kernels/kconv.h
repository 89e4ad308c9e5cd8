#pragma once
// Causal depthwise key convolution for the `moba-kconv` router (DESIGN.md §3):
//   k'_t = k_t + SiLU( sum_{l=0}^{W-1} w_l (*) k_{t-l} ),   k_{t-l} = 0 for t-l < 0,
// per KV head and channel ((*) is the per-channel product), SiLU(x) = x / (1 + exp(-x)).
// w_0 multiplies the current key, w_{W-1} the oldest. W is 3 or 5. Weights are uniform 1/W
// by default; reading them from a file is the caller's job (pass a pointer).
//
// Output is fp32 and not rounded to the dump dtype. The CPU reference computes each output
// in double and rounds once to fp32.
//
// Preconditions: kconv_can_run(p) == nullptr.
#include <cstdint>

#include "core/tensor.h"

namespace moba::kernels {

struct KconvParams {
  TensorView k;                    // [n_kv_heads, n_tokens, head_dim] keys; stride_dim == 1
  int width = 3;                   // W in {3, 5}
  // nullptr: uniform 1/W. Otherwise [W, head_dim] contiguous shared by every KV head, or,
  // with weights_per_head, [n_kv_heads, W, head_dim] contiguous. Row l multiplies k_{t-l}.
  const float* weights = nullptr;
  bool weights_per_head = false;
  float* out = nullptr;            // out [n_kv_heads, n_tokens, head_dim] contiguous; must not overlap k
};

const char* kconv_can_run(const KconvParams& p);
// CPU reference; OpenMP over (head, token range).
void kconv_cpu(const KconvParams& p);

#ifdef MOBA_HAVE_CUDA
const char* kconv_cuda(const KconvParams& p, void* stream = nullptr);
#endif

}  // namespace moba::kernels
