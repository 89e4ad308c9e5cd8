// Backend-neutral part of block pooling (kernels/block_pool.h): block count and validation.
#include "kernels/block_pool.h"

namespace moba::kernels {

int64_t block_count(int64_t n_tokens, int64_t block_size) {
  return n_tokens <= 0 ? 0 : (n_tokens + block_size - 1) / block_size;
}

const char* block_pool_can_run(const BlockPoolParams& p) {
  if (!p.k.has_values() && p.k.n_tokens > 0) return "block_pool: k.data is null";
  if (p.k.n_heads < 0 || p.k.n_tokens < 0 || p.k.head_dim < 1) return "block_pool: bad k shape";
  if (p.k.stride_dim != 1) return "block_pool: k rows must be contiguous (stride_dim == 1)";
  if (p.block_size < 1) return "block_pool: block_size must be >= 1";
  if (p.mean == nullptr) return "block_pool: mean output is null";
  return nullptr;
}

}  // namespace moba::kernels
