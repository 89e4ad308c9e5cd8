#pragma once
// Block-mass row writers of dense_pass.cu: one warp (32 lanes) writes one query's row of
// n_blocks floats, 16-byte aligned float4 stores in the body, scalar head and tail.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/mma.cuh"

namespace moba::kernels::cuda_detail {

// Rewrites one row of log2 masses as masses: entries [0, n_set) become 2^(L - lse2), entries
// [n_set, nb) zero (blocks past the CTA's last key). The warp's 32 lanes, float4 stores, 16
// loads in flight per lane.
static __device__ void finish_mass_row(float* row, int64_t n_set, int64_t nb, float lse2, int lane) {
  auto val = [&](int64_t e, float x) { return e < n_set ? fast_exp2(x - lse2) : 0.f; };
  const int64_t head = min(nb, static_cast<int64_t>((4 - ((reinterpret_cast<uintptr_t>(row) >> 2) & 3)) & 3));
  if (lane < head) row[lane] = val(lane, lane < n_set ? row[lane] : 0.f);
  const int64_t n4 = (nb - head) / 4;
  float4* v4 = reinterpret_cast<float4*>(row + head);
  constexpr int U = 16;
  for (int64_t x0 = 0; x0 < n4; x0 += 32 * U) {
    float4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t x = x0 + u * 32 + lane;
      v[u] = (x < n4 && head + 4 * x < n_set) ? v4[x] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t x = x0 + u * 32 + lane, e = head + 4 * x;
      if (x < n4) v4[x] = make_float4(val(e, v[u].x), val(e + 1, v[u].y), val(e + 2, v[u].z), val(e + 3, v[u].w));
    }
  }
  const int64_t e = head + 4 * n4 + lane;
  if (e < nb) row[e] = val(e, e < n_set ? row[e] : 0.f);
}

// Zeroes row[b0, nb) (blocks past the CTA's last key): scalar head up to 16-byte alignment,
// float4 body, scalar tail.
static __device__ __forceinline__ void zero_mass_tail(float* row, int64_t b0, int64_t nb, int lane) {
  int64_t b = b0;
  const int64_t head = min(nb - b, static_cast<int64_t>((4 - ((reinterpret_cast<uintptr_t>(row + b) >> 2) & 3)) & 3));
  if (lane < head) row[b + lane] = 0.f;
  b += head;
  const int64_t n4 = (nb - b) / 4;
  float4* v4 = reinterpret_cast<float4*>(row + b);
  for (int64_t x = lane; x < n4; x += 32) v4[x] = make_float4(0.f, 0.f, 0.f, 0.f);
  b += 4 * n4;
  if (b + lane < nb) row[b + lane] = 0.f;
}

}  // namespace moba::kernels::cuda_detail
