#pragma once
// Block pooling (DESIGN.md §3): per KV head h and key block b, the mean of the keys at
// positions [b*block_size, min((b+1)*block_size, n_tokens)) — the last block may be partial
// and its mean is over its real length — plus, optionally, the per-channel min and max of
// the same keys (bounds for Quest-style routers).
//
// Precision: the mean is accumulated in fp32 or wider (the CPU reference sums in double,
// divides in double and rounds once to fp32), then rounded to `pool_dtype` with round_to():
// `--pool-precision dump` passes the dump's dtype (what the MoBA reference does: mean in
// the input dtype), `fp32` passes DType::f32 (kept as is). Backends may differ by one ulp of
// `pool_dtype` (accumulation order). min/max are input values, exact, never rounded.
//
// Preconditions: block_pool_can_run(p) == nullptr. Backends trust the params after that.
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/operand.h"

namespace moba::kernels {

struct BlockPoolParams {
  Operand k;                       // [n_kv_heads, n_tokens, head_dim] keys; stride_dim == 1
  int64_t block_size = 0;          // B >= 1
  DType pool_dtype = DType::f32;   // the mean is rounded to this dtype (f32 = fp32 mean)
  float* mean = nullptr;           // out [n_kv_heads, n_blocks, head_dim] contiguous; required
  float* min = nullptr;            // out [n_kv_heads, n_blocks, head_dim] contiguous; optional
  float* max = nullptr;            // out [n_kv_heads, n_blocks, head_dim] contiguous; optional
};

// n_blocks = ceil(n_tokens / block_size); 0 when n_tokens == 0. block_size must be >= 1.
int64_t block_count(int64_t n_tokens, int64_t block_size);

// nullptr when the op can run, else a static string naming the problem.
const char* block_pool_can_run(const BlockPoolParams& p);
// CPU reference; OpenMP over (head, block range).
void block_pool_cpu(const BlockPoolParams& p);

#ifdef MOBA_HAVE_CUDA
// Same params with device pointers. Returns nullptr or a static message naming the failed
// CUDA call; `stream` is a cudaStream_t (nullptr = default stream). Asynchronous.
const char* block_pool_cuda(const BlockPoolParams& p, void* stream = nullptr);
#endif

}  // namespace moba::kernels
