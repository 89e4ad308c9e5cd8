// CUDA causal depthwise key convolution (kernels/kconv.h): one thread per output element,
// accumulated in double and rounded once to fp32 like the CPU reference.
#include "kernels/kconv.h"

#include <algorithm>

#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

// k [n_heads, n_tokens, head_dim] strided fp32; out contiguous, same shape.
// weights: nullptr (uniform 1/W), [W, head_dim], or [n_heads, W, head_dim] (per_head).
__global__ void kconv_kernel(const float* __restrict__ k, int64_t n_tokens, int64_t head_dim,
                             int64_t stride_head, int64_t stride_token, int width,
                             const float* __restrict__ weights, bool per_head,
                             float* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % head_dim, row = i / head_dim, t = row % n_tokens, h = row / n_tokens;
    const float* w = weights ? weights + (per_head ? h * width * head_dim : 0) : nullptr;
    const float* kh = k + h * stride_head + c;
    double conv = 0.0;
    for (int l = 0; l < width && l <= t; ++l) {
      const double wl = w ? static_cast<double>(w[l * head_dim + c]) : 1.0 / width;
      conv += wl * static_cast<double>(kh[(t - l) * stride_token]);
    }
    const double silu = conv / (1.0 + exp(-conv));
    out[i] = static_cast<float>(static_cast<double>(kh[t * stride_token]) + silu);
  }
}

const char* launch_kconv(const KconvParams& p, cudaStream_t stream) {
  const int64_t n = p.k.n_heads * p.k.n_tokens * p.k.head_dim;
  if (n == 0) return nullptr;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  kconv_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      p.k.data, p.k.n_tokens, p.k.head_dim, p.k.stride_head, p.k.stride_token, p.width,
      p.weights, p.weights_per_head, p.out, n);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* kconv_cuda(const KconvParams& p, void* stream) {
  if (const char* e = kconv_can_run(p)) return e;
  return launch_kconv(p, static_cast<cudaStream_t>(stream));
}

}  // namespace moba::kernels
