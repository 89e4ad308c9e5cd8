// Backend-neutral part of kconv (kernels/kconv.h): validation.
#include "kernels/kconv.h"

namespace moba::kernels {

const char* kconv_can_run(const KconvParams& p) {
  if (p.k.data == nullptr && p.k.n_tokens > 0) return "kconv: k.data is null";
  if (p.k.n_heads < 0 || p.k.n_tokens < 0 || p.k.head_dim < 1) return "kconv: bad k shape";
  if (p.k.stride_dim != 1) return "kconv: k rows must be contiguous (stride_dim == 1)";
  if (p.width != 3 && p.width != 5) return "kconv: width must be 3 or 5";
  if (p.weights_per_head && p.weights == nullptr) return "kconv: weights_per_head without weights";
  if (p.out == nullptr) return "kconv: out is null";
  return nullptr;
}

}  // namespace moba::kernels
