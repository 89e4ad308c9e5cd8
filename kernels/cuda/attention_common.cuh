#pragma once
// Fragment-level pieces shared by the tensor-core kernels (gate_topk_mma.cu, dense_pass.cu,
// moba_attention.cu), in the style of FlashAttention's softmax.h: __forceinline__ device
// functions over mma.m16n8k16 fragments (layouts in mma.cuh). With g = lane / 4 and
// qd = lane % 4, each thread holds fragment rows g and g + 8 of its warp's 16-row tile; the
// four lanes of a quad (same g) share those rows.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/constants.h"
#include "kernels/cuda/mma.cuh"

namespace moba::kernels::cuda_detail {

// Host side, shared by the attention entries: the params' softmax scale (0 = 1 / sqrt(head_dim))
// in log2 units, as the kernels' exp2 takes it.
template <typename Params>
float softmax_scale_log2(const Params& p) {
  return softmax_scale_or_default(p) * kLog2e;
}

// A fragments of Q [16 x D] (row-major, 16-bit) for rows q0 (fragment row g) and q1 (row
// g + 8): qa[kk] covers channels [16 kk, 16 kk + 16). A null row, and channels >= d, read as 0.
// Rows must be 4-byte aligned.
// The rows' addresses are taken once (row + 2 qd), every load at a constant offset from them.
// d: int64_t, or std::integral_constant<int64_t, D> where d = D (the bound then drops out).
template <int D, typename Dd>
__device__ __forceinline__ void load_q_fragments_to(uint32_t (&qa)[D / 16][4], const uint16_t* q0, const uint16_t* q1,
                                                    Dd d, int qd) {
  const uint16_t* const p0 = q0 ? q0 + 2 * qd : nullptr;
  const uint16_t* const p1 = q1 ? q1 + 2 * qd : nullptr;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int c0 = kk * 16 + 2 * qd, c1 = c0 + 8;
    qa[kk][0] = (p0 && c0 < d) ? __ldg(reinterpret_cast<const uint32_t*>(p0 + kk * 16)) : 0u;
    qa[kk][1] = (p1 && c0 < d) ? __ldg(reinterpret_cast<const uint32_t*>(p1 + kk * 16)) : 0u;
    qa[kk][2] = (p0 && c1 < d) ? __ldg(reinterpret_cast<const uint32_t*>(p0 + kk * 16 + 8)) : 0u;
    qa[kk][3] = (p1 && c1 < d) ? __ldg(reinterpret_cast<const uint32_t*>(p1 + kk * 16 + 8)) : 0u;
  }
}
// The entries: a runtime bound (any integer type, compared as int64_t), or the constant D.
template <int D>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qa)[D / 16][4], const uint16_t* q0, const uint16_t* q1,
                                                 int64_t d, int qd) {
  load_q_fragments_to<D>(qa, q0, q1, d, qd);
}
template <int D>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qa)[D / 16][4], const uint16_t* q0, const uint16_t* q1,
                                                 std::integral_constant<int64_t, D> d, int qd) {
  load_q_fragments_to<D>(qa, q0, q1, d, qd);
}

// Max / sum of both rows' values over the quad (every lane of the quad gets the result).
__device__ __forceinline__ void quad_allreduce_max(float& x0, float& x1) {
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, o));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, o));
  }
}
__device__ __forceinline__ void quad_allreduce_sum(float& x0, float& x1) {
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    x0 += __shfl_xor_sync(0xffffffffu, x0, o);
    x1 += __shfl_xor_sync(0xffffffffu, x1, o);
  }
}

// Online-softmax rescale of the output accumulator [16 x D] (C fragments): row g by al0,
// row g + 8 by al1.
template <int D>
__device__ __forceinline__ void rescale_o(float (&acc)[D / 8][4], float al0, float al1) {
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) {
    acc[nd][0] *= al0; acc[nd][1] *= al0; acc[nd][2] *= al1; acc[nd][3] *= al1;
  }
}

// One online-softmax step over KEYS keys (C fragments `sc`, scaled to log2 units, masked keys
// at -inf) for rows g and g + 8, whose maxima over these keys are mx0 / mx1 (per lane; reduced
// over the quad here). The running (max, sum) ml0 / ml1 advance; the output accumulator must be
// rescaled by the returned (al0, al1); P relative to the new max, times ps, is packed as A
// fragments: pa (the 16-bit P), or with SPLIT pa + pl (hi + lo, pack_split) for mma_pv_split.
template <typename M, bool SPLIT, int KEYS>
__device__ __forceinline__ float2 softmax_step(const float (&sc)[KEYS / 8][4], float mx0, float mx1, float2& ml0,
                                               float2& ml1, uint32_t (&pa)[KEYS / 16][4],
                                               uint32_t (&pl)[SPLIT ? KEYS / 16 : 1][4], float ps) {
  quad_allreduce_max(mx0, mx1);
  const float m0 = fmaxf(ml0.x, mx0), m1 = fmaxf(ml1.x, mx1);
  const float u0 = m0 == -INFINITY ? 0.f : m0, u1 = m1 == -INFINITY ? 0.f : m1;
  const float al0 = exp2f(ml0.x - u0), al1 = exp2f(ml1.x - u1);
  float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < KEYS / 8; ++nt) {
    const float p00 = exp2f(sc[nt][0] - u0), p01 = exp2f(sc[nt][1] - u0);
    const float p10 = exp2f(sc[nt][2] - u1), p11 = exp2f(sc[nt][3] - u1);
    sum0 += p00 + p01;
    sum1 += p10 + p11;
    if constexpr (!SPLIT) {
      pa[nt / 2][(nt % 2) * 2 + 0] = M::pack(p00, p01);
      pa[nt / 2][(nt % 2) * 2 + 1] = M::pack(p10, p11);
    } else {
      pack_split<M>(p00 * ps, p01 * ps, pa[nt / 2][(nt % 2) * 2 + 0], pl[nt / 2][(nt % 2) * 2 + 0]);
      pack_split<M>(p10 * ps, p11 * ps, pa[nt / 2][(nt % 2) * 2 + 1], pl[nt / 2][(nt % 2) * 2 + 1]);
    }
  }
  quad_allreduce_sum(sum0, sum1);
  ml0 = make_float2(m0, ml0.y * al0 + sum0);
  ml1 = make_float2(m1, ml1.y * al1 + sum1);
  return make_float2(al0, al1);
}

// S += Q K^T for the first N8 n8 tiles of keys (sc[nt], nt < N8) of a K tile in shared
// memory (`ks`: the tile's first key row, keys as rows, row stride ld elements). The k-steps
// are the outer loop and the tiles' accumulation chains interleave (a tile-outer loop waits
// out every MMA's latency); each tile's k-steps run in order, so the bits are a tile-outer
// loop's. X3 (fp32 split as hi + lo, `qa_lo` / `ks_lo` the lo parts): hi.lo and lo.hi before
// hi.hi in each k-step.
template <typename M, int D, int N8, bool X3, int NT, int QL>
__device__ __forceinline__ void mma_qk(float (&sc)[NT][4], const uint32_t (&qa)[D / 16][4],
                                       const uint32_t (&qa_lo)[QL][4], const uint16_t* ks, const uint16_t* ks_lo,
                                       int ld, int g, int qd) {
  static_assert(N8 <= NT && (!X3 || QL == D / 16), "mma_qk: tiles or lo fragments");
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int nt = 0; nt < N8; ++nt) {
      const int off = (nt * 8 + g) * ld + 2 * qd + kk * 16;
      const uint32_t b0 = *reinterpret_cast<const uint32_t*>(ks + off);
      const uint32_t b1 = *reinterpret_cast<const uint32_t*>(ks + off + 8);
      if constexpr (X3) {
        M::run(sc[nt], qa[kk], *reinterpret_cast<const uint32_t*>(ks_lo + off),
               *reinterpret_cast<const uint32_t*>(ks_lo + off + 8));
        M::run(sc[nt], qa_lo[kk], b0, b1);
      }
      M::run(sc[nt], qa[kk], b0, b1);
    }
}

// O += P V over the keys [row0, row0 + 8 n8) of a V tile in shared memory (`vs`, keys as
// rows, row stride ld elements; ldmatrix.trans gives the B fragments). P holds KSTEPS 16-key
// A fragments (pa[k16], packed by M::pack); steps with 2 k16 >= n8 are skipped (n8 is even),
// and so are steps whose bit in k16_mask is clear (warp-uniform: P is zero there).
template <typename M, int D, int KSTEPS>
__device__ __forceinline__ void mma_pv(float (&acc)[D / 8][4], const uint32_t (&pa)[KSTEPS][4], const uint16_t* vs,
                                       int ld, int row0, int n8, int lane, uint32_t k16_mask = ~0u) {
#pragma unroll
  for (int k16 = 0; k16 < KSTEPS; ++k16) {
    if (2 * k16 >= n8) break;
    if (!((k16_mask >> k16) & 1u)) continue;
    const uint16_t* vrow = vs + (row0 + k16 * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * ld + (lane / 16) * 8;
#pragma unroll
    for (int nd = 0; nd < D / 8; nd += 2) {
      uint32_t r[4];
      ldmatrix_x4_trans(r, vrow + nd * 8);
      M::run(acc[nd], pa[k16], r[0], r[1]);
      M::run(acc[nd + 1], pa[k16], r[2], r[3]);
    }
  }
}

// The exact-numerics PV step (NOTES.md, "Exact numerics"): P = ph + pl (pack_split), so
// O += pl V + ph V, and with VLO (fp32 values split as V = V + V_lo, `vs_lo` the lo tile of
// the same layout) also ph V_lo: 2 or 3 products per step instead of mma_pv's one. The small
// terms are accumulated first. k16_mask as mma_pv's.
template <typename M, int D, int KSTEPS, bool VLO>
__device__ __forceinline__ void mma_pv_split(float (&acc)[D / 8][4], const uint32_t (&ph)[KSTEPS][4],
                                             const uint32_t (&pl)[KSTEPS][4], const uint16_t* vs,
                                             const uint16_t* vs_lo, int ld, int row0, int n8, int lane,
                                             uint32_t k16_mask = ~0u) {
#pragma unroll
  for (int k16 = 0; k16 < KSTEPS; ++k16) {
    if (2 * k16 >= n8) break;
    if (!((k16_mask >> k16) & 1u)) continue;
    const int off = (row0 + k16 * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * ld + (lane / 16) * 8;
#pragma unroll
    for (int nd = 0; nd < D / 8; nd += 2) {
      uint32_t r[4];
      if constexpr (VLO) {
        ldmatrix_x4_trans(r, vs_lo + off + nd * 8);
        M::run(acc[nd], ph[k16], r[0], r[1]);
        M::run(acc[nd + 1], ph[k16], r[2], r[3]);
      }
      ldmatrix_x4_trans(r, vs + off + nd * 8);
      M::run(acc[nd], pl[k16], r[0], r[1]);
      M::run(acc[nd + 1], pl[k16], r[2], r[3]);
      M::run(acc[nd], ph[k16], r[0], r[1]);
      M::run(acc[nd + 1], ph[k16], r[2], r[3]);
    }
  }
}

}  // namespace moba::kernels::cuda_detail
