#pragma once
// The moments of raw scores s_j = q_t . k_j per 16-key segment of a 64-key tile, from a warp's
// mma.sync accumulator tiles (kernels/cuda/mma.cuh's C layout). Shared by the SNR probe's
// moments kernel (analysis/gpu/analyze_gpu_kernels.cuh moments_mma_kernel) and the dense pass
// (kernels/cuda/dense_pass.cu, which can emit them beside its softmax): both compute the
// tile's S = Q K^T by the same m16n8k16 chains (same fragments, each tile's k-steps in order),
// and through this one function give the same bits.
#include <cuda_runtime.h>

#include <cstdint>

namespace moba::kernels::cuda_detail {

// sc[nt][c]: the tile's scores, keys j0 + 8 nt + 2 qd + (c % 2), row g (c < 2) or g + 8
// (c >= 2) of the warp's 16 (g = lane / 4, qd = lane % 4). On return lane qd holds segment qd
// (keys j0 + 16 qd .. + 15) for row g (index 0) and row g + 8 (index 1): the fp32 sum and sum
// of squares (a fixed order: this lane's 4 scores in the order (8 h + e), then its quad's
// partial sums (own + partner) at xor 1 and xor 2) and the largest score with its key (the
// later key on ties). Every lane of the warp must call it (shuffles).
__device__ __forceinline__ void segment_moments16(const float (&sc)[8][4], int64_t j0, int qd, float (&zs)[2],
                                                  float (&zz)[2], float (&zm)[2], int32_t (&zx)[2]) {
  // Per 16-key segment sg and row w (0: g, 1: g + 8), this lane's 4 scores: summed, squared and
  // summed, and their (max, later key on ties), in the order (8 h + e). The keys come in
  // ascending order, so "v >= max" is the later-key tie rule (starting from -inf with key -1,
  // the first score is always taken). The max's key is held as an offset in the segment
  // (8 h + 2 qd + e) until the quad is merged: the comparisons are those of whole keys.
  float ps[4][2], pz[4][2], pm[4][2];
  int32_t px[4][2];
#pragma unroll
  for (int sg = 0; sg < 4; ++sg)
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      const float v0 = sc[2 * sg][2 * w];
      // The sums' chains are spelt out (0 + v0, then + v; fma(v, v, z) from z = 0): left to
      // contraction, v0 * v0 + v1 * v1 may fuse either product and change the bits.
      float s_ = 0.f + v0, z_ = __fmaf_rn(v0, v0, 0.f), m_ = v0;
      int32_t x_ = 2 * qd;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = h == 0 ? 1 : 0; e < 2; ++e) {
          const float v = sc[2 * sg + h][2 * w + e];
          s_ += v, z_ = __fmaf_rn(v, v, z_);
          if (v >= m_) m_ = v, x_ = 8 * h + 2 * qd + e;
        }
      ps[sg][w] = s_, pz[sg][w] = z_, pm[sg][w] = m_, px[sg][w] = x_;
    }
  // Over the quad, transposed: at xor 1 a lane keeps the segments of its lane's parity and
  // sends the others, at xor 2 it keeps segment qd. Each sum is (own + partner) at both levels
  // and the max takes the larger (later key on ties): the bits of a full butterfly per segment.
  const auto take = [](float& m, int32_t& x, float om, int32_t ox) {
    if (om > m || (om == m && ox > x)) m = om, x = ox;
  };
  const bool odd = qd & 1, high = qd & 2;
  float ys[2][2], yz[2][2], ym[2][2];  // [segment pair pp][row]: segment 2 pp + odd after xor 1
  int32_t yx[2][2];
#pragma unroll
  for (int pp = 0; pp < 2; ++pp)
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      // kept: segment 2 pp + odd; sent: the other (selects: no indexing by lane)
      const int e0 = 2 * pp, e1 = 2 * pp + 1;
      ys[pp][w] = (odd ? ps[e1][w] : ps[e0][w]) + __shfl_xor_sync(0xffffffffu, odd ? ps[e0][w] : ps[e1][w], 1);
      yz[pp][w] = (odd ? pz[e1][w] : pz[e0][w]) + __shfl_xor_sync(0xffffffffu, odd ? pz[e0][w] : pz[e1][w], 1);
      ym[pp][w] = odd ? pm[e1][w] : pm[e0][w], yx[pp][w] = odd ? px[e1][w] : px[e0][w];
      take(ym[pp][w], yx[pp][w], __shfl_xor_sync(0xffffffffu, odd ? pm[e0][w] : pm[e1][w], 1),
           __shfl_xor_sync(0xffffffffu, odd ? px[e0][w] : px[e1][w], 1));
    }
#pragma unroll
  for (int w = 0; w < 2; ++w) {
    const float ks_ = high ? ys[1][w] : ys[0][w], ss_ = high ? ys[0][w] : ys[1][w];
    const float kz_ = high ? yz[1][w] : yz[0][w], sz_ = high ? yz[0][w] : yz[1][w];
    const float km_ = high ? ym[1][w] : ym[0][w], sm_ = high ? ym[0][w] : ym[1][w];
    const int32_t kx_ = high ? yx[1][w] : yx[0][w], sx_ = high ? yx[0][w] : yx[1][w];
    zs[w] = ks_ + __shfl_xor_sync(0xffffffffu, ss_, 2);
    zz[w] = kz_ + __shfl_xor_sync(0xffffffffu, sz_, 2);
    zm[w] = km_, zx[w] = kx_;
    take(zm[w], zx[w], __shfl_xor_sync(0xffffffffu, sm_, 2), __shfl_xor_sync(0xffffffffu, sx_, 2));
    zx[w] += static_cast<int32_t>(j0) + 16 * qd;  // lane qd holds segment qd: the key itself
  }
}

}  // namespace moba::kernels::cuda_detail
