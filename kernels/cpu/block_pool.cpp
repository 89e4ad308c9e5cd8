// CPU reference of block pooling (kernels/block_pool.h): plain loops, double accumulation.
#include "kernels/block_pool.h"

#include <algorithm>

#include "kernels/cpu/cpu_common.h"

namespace moba::kernels {

void block_pool_cpu(const BlockPoolParams& p) {
  const int64_t n_heads = p.k.n_heads, n_tokens = p.k.n_tokens, d = p.k.head_dim;
  const int64_t B = p.block_size;
  const int64_t n_blocks = block_count(n_tokens, B);
  const int64_t n_items = n_heads * n_blocks;
#pragma omp parallel if (n_heads * n_tokens * d > cpu::kMinParallelElementWork)
  {
    double* acc = new double[static_cast<size_t>(d)];
#pragma omp for schedule(static)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t h = item / n_blocks, b = item % n_blocks;
      const int64_t t0 = b * B, t1 = std::min(t0 + B, n_tokens);
      float* mean = p.mean + item * d;  // [n_heads, n_blocks, d]: item = h * n_blocks + b
      float* mn = p.min ? p.min + item * d : nullptr;
      float* mx = p.max ? p.max + item * d : nullptr;
      std::fill(acc, acc + d, 0.0);
      const float* first = p.k.row(h, t0);
      for (int64_t c = 0; c < d; ++c) {
        if (mn) mn[c] = first[c];
        if (mx) mx[c] = first[c];
      }
      for (int64_t t = t0; t < t1; ++t) {
        const float* key = p.k.row(h, t);
        for (int64_t c = 0; c < d; ++c) {
          acc[c] += key[c];
          if (mn) mn[c] = std::min(mn[c], key[c]);
          if (mx) mx[c] = std::max(mx[c], key[c]);
        }
      }
      const double len = static_cast<double>(t1 - t0);
      for (int64_t c = 0; c < d; ++c)
        mean[c] = round_to(p.pool_dtype, static_cast<float>(acc[c] / len));
    }
    delete[] acc;
  }
}

}  // namespace moba::kernels
