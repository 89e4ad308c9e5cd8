// Backend-neutral part of the dense pass (kernels/dense_pass.h): validation.
#include "kernels/dense_pass.h"

#include <cmath>

namespace moba::kernels {

const char* dense_pass_can_run(const DensePassParams& p) {
  if (!p.q.has_values() || !p.k.has_values()) return "dense_pass: q or k data is null";
  if (p.q.stride_dim != 1 || p.k.stride_dim != 1) return "dense_pass: q/k rows must be contiguous";
  if (p.q.n_heads < 1 || p.k.n_heads < 1 || p.q.head_dim < 1) return "dense_pass: bad q/k shape";
  if (p.q.n_heads % p.k.n_heads != 0) return "dense_pass: n_q_heads must be a multiple of n_kv_heads";
  if (p.k.n_tokens != p.q.n_tokens || p.k.head_dim != p.q.head_dim)
    return "dense_pass: q and k disagree on n_tokens or head_dim";
  if (p.out) {
    if (!p.v.has_values() || p.v.stride_dim != 1) return "dense_pass: out requested without a contiguous-row v";
    if (p.v.n_heads != p.k.n_heads || p.v.n_tokens != p.k.n_tokens || p.v.head_dim != p.k.head_dim)
      return "dense_pass: v disagrees with k";
  }
  if (p.query_begin < 0 || p.query_count < 0 || p.query_begin + p.query_count > p.q.n_tokens)
    return "dense_pass: query range outside [0, n_tokens)";
  if (p.lse == nullptr) return "dense_pass: lse is null";
  if (p.n_block_sizes < 0 || p.n_block_sizes > kDensePassMaxBlockSizes)
    return "dense_pass: n_block_sizes outside [0, kDensePassMaxBlockSizes]";
  for (int i = 0; i < p.n_block_sizes; ++i) {
    if (p.block_sizes[i] < 1) return "dense_pass: block size must be >= 1";
    if (p.block_mass[i] == nullptr) return "dense_pass: block_mass output is null";
  }
  if (p.top_n < 0) return "dense_pass: top_n must be >= 0";
  if (p.top_n > 0 && p.top_index == nullptr) return "dense_pass: top_index is null";
  if (p.query_tile < 0 || p.key_tile < 0) return "dense_pass: tile sizes must be >= 0";
  if (!(p.softmax_scale >= 0.0f) || std::isinf(p.softmax_scale)) return "dense_pass: bad softmax_scale";
  return nullptr;
}

}  // namespace moba::kernels
