// CUDA block pooling (kernels/block_pool.h): per (KV head, block) the mean of the block's
// keys, summed in double like the CPU reference (then one rounding to fp32 and to
// pool_dtype), plus optional per-channel min / max.
#include "kernels/block_pool.h"

#include <algorithm>

#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

// grid (n_blocks, n_heads); threads over channels.
// mean/min/max: [n_heads, n_blocks, head_dim] contiguous.
__global__ void block_pool_kernel(DevTensor k, int64_t n_tokens, int64_t head_dim,
                                  int64_t block_size, ElemKind pool_kind, float* __restrict__ mean,
                                  float* __restrict__ mn, float* __restrict__ mx) {
  const int64_t b = blockIdx.x, h = blockIdx.y, n_blocks = gridDim.x;
  const int64_t t0 = b * block_size, t1 = min(t0 + block_size, n_tokens);
  const int64_t out = (h * n_blocks + b) * head_dim;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
    double acc = 0.0;
    float lo = k.load(h, t0, c), hi = lo;
    for (int64_t t = t0; t < t1; ++t) {
      const float x = k.load(h, t, c);
      acc += x;
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
    mean[out + c] = round_to_kind(pool_kind, static_cast<float>(acc / static_cast<double>(t1 - t0)));
    if (mn) mn[out + c] = lo;
    if (mx) mx[out + c] = hi;
  }
}

const char* launch_block_pool(const BlockPoolParams& p, const DevTensor& k, cudaStream_t stream) {
  const int64_t n_blocks = block_count(p.k.n_tokens, p.block_size);
  if (n_blocks == 0 || p.k.n_heads == 0) return nullptr;
  if (n_blocks > 0x7fffffff || p.k.n_heads > 65535) return "block_pool_cuda: grid too large";
  const int threads = static_cast<int>(std::min<int64_t>(128, (p.k.head_dim + 31) / 32 * 32));
  block_pool_kernel<<<dim3(static_cast<unsigned>(n_blocks), static_cast<unsigned>(p.k.n_heads)),
                      threads, 0, stream>>>(k, p.k.n_tokens, p.k.head_dim, p.block_size,
                                            kind_of(p.pool_dtype), p.mean, p.min, p.max);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* block_pool_cuda(const BlockPoolParams& p, void* stream) {
  if (const char* e = block_pool_can_run(p)) return e;
  if (p.k.raw16 && p.k.dtype == DType::f32) return "block_pool_cuda: raw 16-bit k needs dtype f16 or bf16";
  DevTensor k{p.k.data, p.k.raw16, p.k.raw16 ? kind_of(p.k.dtype) : kF32, p.k.stride_head, p.k.stride_token};
  return launch_block_pool(p, k, static_cast<cudaStream_t>(stream));
}

}  // namespace moba::kernels
