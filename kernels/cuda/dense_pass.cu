// CUDA dense streaming pass (kernels/dense_pass.h), v1: flash-style, never T x T.
//
// One CTA per (64-query tile, query head), 4 warps x 16 rows, K/V tiles of 64 keys staged
// in shared memory. Pass 1: QK^T and PV on tensor cores (mma.sync, 16-bit inputs, fp32
// accumulate) with an online softmax -> lse and o_full. Pass 2 (block masses, top-n):
// QK^T again, exact P = exp(s - lse) in fp32, each warp stages its [16 x 64] scores in
// shared memory and one lane per query folds them into the block masses of every block size
// (runs of equal block index, plain read-modify-write: the lane owns the row) and into its
// running top-n list (rank by score, ties to the larger key index).
#include "kernels/dense_pass.h"

#include <algorithm>
#include <cmath>

#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mma.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

constexpr int kWarps = 4;
constexpr int kRows = kWarps * 16;  // queries per CTA
constexpr int kKeys = 64;           // keys per tile
constexpr int kMaxTopN = 64;

struct DenseArgs {
  const uint16_t *q, *k, *v;
  int64_t q_sh, q_st, k_sh, k_st, v_sh, v_st;
  int64_t n_tokens, head_dim, group, q_begin, q_count;
  float scale_log2;
  float* lse;                        // [n_q_heads, q_count]
  float* out;                        // [n_q_heads, q_count, head_dim] optional
  int n_sizes;
  int64_t block_size[kDensePassMaxBlockSizes];
  int64_t n_blocks[kDensePassMaxBlockSizes];
  float* mass[kDensePassMaxBlockSizes];  // [n_q_heads, q_count, n_blocks_i]
  int top_n;
  int32_t* top_index;                // [n_q_heads, q_count, top_n]
  float* top_prob;                   // optional
};

template <int D, typename T16>
__global__ void __launch_bounds__(kWarps * 32) dense_pass_kernel(DenseArgs a) {
  using M = Mma<T16>;
  constexpr int LD = D + 8;
  extern __shared__ uint4 smem_raw[];
  uint16_t* ks = reinterpret_cast<uint16_t*>(smem_raw);        // [kKeys][LD]
  uint16_t* vs = ks + kKeys * LD;                               // [kKeys][LD]
  float* st = reinterpret_cast<float*>(vs + kKeys * LD);        // [kWarps][16][kKeys + 1] scores
  float* top_s = st + kWarps * 16 * (kKeys + 1);                // [kRows][top_n]
  int32_t* top_j = reinterpret_cast<int32_t*>(top_s + kRows * a.top_n);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  const int64_t h = blockIdx.y, kv = h / a.group, d = a.head_dim;
  // Heaviest (latest) tiles first.
  const int64_t tile = gridDim.x - 1 - blockIdx.x;
  const int64_t r_begin = a.q_begin + tile * kRows;
  const int64_t r_end = min(a.q_begin + a.q_count, r_begin + kRows);
  const int64_t t0 = r_begin + warp * 16 + g, t1 = t0 + 8;   // this thread's two rows
  const bool v0 = t0 < r_end, v1 = t1 < r_end;
  const int64_t key_end = r_end;                              // keys [0, r_end)

  uint32_t qa[D / 16][4];
  {
    const uint16_t* q0 = v0 ? a.q + h * a.q_sh + t0 * a.q_st : nullptr;
    const uint16_t* q1 = v1 ? a.q + h * a.q_sh + t1 * a.q_st : nullptr;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c0 = kk * 16 + 2 * qd, c1 = c0 + 8;
      qa[kk][0] = (q0 && c0 < d) ? __ldg(reinterpret_cast<const uint32_t*>(q0 + c0)) : 0u;
      qa[kk][1] = (q1 && c0 < d) ? __ldg(reinterpret_cast<const uint32_t*>(q1 + c0)) : 0u;
      qa[kk][2] = (q0 && c1 < d) ? __ldg(reinterpret_cast<const uint32_t*>(q0 + c1)) : 0u;
      qa[kk][3] = (q1 && c1 < d) ? __ldg(reinterpret_cast<const uint32_t*>(q1 + c1)) : 0u;
    }
  }
  auto stage = [&](int64_t j0, bool with_v) {
    __syncthreads();
    for (int i = tid; i < kKeys * (D / 8); i += blockDim.x) {
      const int r = i / (D / 8), c8 = (i % (D / 8)) * 8;
      const bool ok = j0 + r < key_end && c8 < d;
      copy16(ks + r * LD + c8, a.k + kv * a.k_sh + (j0 + r) * a.k_st + c8, ok);
      if (with_v) copy16(vs + r * LD + c8, a.v + kv * a.v_sh + (j0 + r) * a.v_st + c8, ok);
    }
    __syncthreads();
  };
  // Scaled, causally masked scores of keys [j0, j0 + 64) (log2 units).
  auto scores = [&](int64_t j0, float sc[kKeys / 8][4]) {
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
      const uint16_t* krow = ks + (nt * 8 + g) * LD + 2 * qd;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        M::run(sc[nt], qa[kk], *reinterpret_cast<const uint32_t*>(krow + kk * 16),
               *reinterpret_cast<const uint32_t*>(krow + kk * 16 + 8));
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t j = j0 + nt * 8 + 2 * qd + e;
        sc[nt][e] = (v0 && j <= t0) ? sc[nt][e] * a.scale_log2 : -INFINITY;
        sc[nt][2 + e] = (v1 && j <= t1) ? sc[nt][2 + e] * a.scale_log2 : -INFINITY;
      }
    }
  };

  // Pass 1: online softmax (+ output).
  const bool want_out = a.out != nullptr;
  float acc[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
    stage(j0, want_out);
    float sc[kKeys / 8][4];
    scores(j0, sc);
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      mx0 = fmaxf(mx0, fmaxf(sc[nt][0], sc[nt][1]));
      mx1 = fmaxf(mx1, fmaxf(sc[nt][2], sc[nt][3]));
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o));
    }
    const float u0 = mx0 == -INFINITY ? 0.f : mx0, u1 = mx1 == -INFINITY ? 0.f : mx1;
    const float al0 = exp2f(m0 - u0), al1 = exp2f(m1 - u1);
    float s0 = 0.f, s1 = 0.f;
    uint32_t pa[kKeys / 16][4];
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      const float p00 = exp2f(sc[nt][0] - u0), p01 = exp2f(sc[nt][1] - u0);
      const float p10 = exp2f(sc[nt][2] - u1), p11 = exp2f(sc[nt][3] - u1);
      s0 += p00 + p01;
      s1 += p10 + p11;
      pa[nt / 2][(nt % 2) * 2 + 0] = M::pack(p00, p01);
      pa[nt / 2][(nt % 2) * 2 + 1] = M::pack(p10, p11);
    }
    l0 = l0 * al0 + s0;  // per-thread partial sums; reduced over the quad at the end
    l1 = l1 * al1 + s1;
    m0 = mx0;
    m1 = mx1;
    if (want_out) {
#pragma unroll
      for (int nd = 0; nd < D / 8; ++nd) {
        acc[nd][0] *= al0; acc[nd][1] *= al0; acc[nd][2] *= al1; acc[nd][3] *= al1;
      }
#pragma unroll
      for (int k16 = 0; k16 < kKeys / 16; ++k16) {
        const uint16_t* vrow = vs + (k16 * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + (lane / 16) * 8;
#pragma unroll
        for (int nd = 0; nd < D / 8; nd += 2) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, vrow + nd * 8);
          M::run(acc[nd], pa[k16], r[0], r[1]);
          M::run(acc[nd + 1], pa[k16], r[2], r[3]);
        }
      }
    }
  }
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o);
  }
  const float lse2_0 = m0 + log2f(l0), lse2_1 = m1 + log2f(l1);  // log2 units
  const int64_t row0 = h * a.q_count + (t0 - a.q_begin), row1 = h * a.q_count + (t1 - a.q_begin);
  if (qd == 0) {
    if (v0) a.lse[row0] = lse2_0 * 0.69314718055994531f;
    if (v1) a.lse[row1] = lse2_1 * 0.69314718055994531f;
  }
  if (want_out) {
    const float i0 = 1.f / l0, i1 = 1.f / l1;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
      const int c = nd * 8 + 2 * qd;
      if (c >= d) continue;
      if (v0) *reinterpret_cast<float2*>(a.out + row0 * d + c) = make_float2(acc[nd][0] * i0, acc[nd][1] * i0);
      if (v1) *reinterpret_cast<float2*>(a.out + row1 * d + c) = make_float2(acc[nd][2] * i1, acc[nd][3] * i1);
    }
  }
  if (a.n_sizes == 0 && a.top_n == 0) return;

  // Pass 2: exact probabilities into block masses and top-n. Lane r < 16 owns row r of its warp.
  const int r_own = lane;  // valid when lane < 16
  const int64_t t_own = r_begin + warp * 16 + r_own;
  const bool own = lane < 16 && t_own < r_end;
  const int64_t row_own = h * a.q_count + (t_own - a.q_begin);
  // lse (log2) of the owned row: row r_own's value lives on lane (r_own % 8) * 4 of the quad
  // layout (row g on lanes 4g.., row g + 8 as the second row).
  const float lse_g0 = __shfl_sync(0xffffffffu, lse2_0, (lane % 8) * 4);
  const float lse_g1 = __shfl_sync(0xffffffffu, lse2_1, (lane % 8) * 4);
  const float lse_own = lane < 8 ? lse_g0 : lse_g1;
  if (own)
    for (int i = 0; i < a.n_sizes; ++i) {
      float* mrow = a.mass[i] + row_own * a.n_blocks[i];
      for (int64_t b = 0; b < a.n_blocks[i]; ++b) mrow[b] = 0.f;
    }
  float* my_ts = top_s + (warp * 16 + (lane % 16)) * a.top_n;
  int32_t* my_tj = top_j + (warp * 16 + (lane % 16)) * a.top_n;
  int cnt = 0;
  float* wst = st + warp * 16 * (kKeys + 1);
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
    stage(j0, false);
    float sc[kKeys / 8][4];
    scores(j0, sc);
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        wst[g * (kKeys + 1) + nt * 8 + 2 * qd + e] = sc[nt][e];
        wst[(g + 8) * (kKeys + 1) + nt * 8 + 2 * qd + e] = sc[nt][2 + e];
      }
    __syncwarp();
    if (own) {
      const float* srow = wst + r_own * (kKeys + 1);
      const int nv = static_cast<int>(min(int64_t{kKeys}, t_own + 1 - j0));
      for (int i = 0; i < a.n_sizes; ++i) {
        const int64_t B = a.block_size[i];
        float* mrow = a.mass[i] + row_own * a.n_blocks[i];
        int jj = 0;
        while (jj < nv) {
          const int64_t blk = (j0 + jj) / B;
          const int run_end = static_cast<int>(min(int64_t{nv}, (blk + 1) * B - j0));
          float run = 0.f;
          for (; jj < run_end; ++jj) run += exp2f(srow[jj] - lse_own);
          mrow[blk] += run;
        }
      }
      for (int jj = 0; jj < nv && a.top_n > 0; ++jj) {
        const float sv = srow[jj];
        const int32_t j = static_cast<int32_t>(j0 + jj);
        if (cnt == a.top_n && !(sv > my_ts[cnt - 1] || (sv == my_ts[cnt - 1] && j > my_tj[cnt - 1]))) continue;
        int pos = cnt < a.top_n ? cnt++ : cnt - 1;
        while (pos > 0 && (sv > my_ts[pos - 1] || (sv == my_ts[pos - 1] && j > my_tj[pos - 1]))) {
          my_ts[pos] = my_ts[pos - 1];
          my_tj[pos] = my_tj[pos - 1];
          --pos;
        }
        my_ts[pos] = sv;
        my_tj[pos] = j;
      }
    }
    __syncwarp();
  }
  if (own && a.top_n > 0)
    for (int n = 0; n < a.top_n; ++n) {
      const bool ok = n < cnt;
      a.top_index[row_own * a.top_n + n] = ok ? my_tj[n] : -1;
      if (a.top_prob) a.top_prob[row_own * a.top_n + n] = ok ? exp2f(my_ts[n] - lse_own) : 0.f;
    }
}

template <int D, typename T16>
const char* launch_dense(const DenseArgs& a, int64_t n_q_heads, cudaStream_t stream) {
  const size_t smem = size_t{2} * kKeys * (D + 8) * sizeof(uint16_t) +
                      sizeof(float) * kWarps * 16 * (kKeys + 1) + size_t{8} * kRows * a.top_n;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(dense_pass_kernel<D, T16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  const int64_t n_tiles = (a.q_count + kRows - 1) / kRows;
  dense_pass_kernel<D, T16><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_q_heads)),
                              kWarps * 32, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* dense_pass_cuda(const DensePassParams& p, void* stream_ptr) {
  DensePassParams check = p;
  if (p.q16) check.q.data = reinterpret_cast<const float*>(p.q16);  // presence only
  if (p.k16) check.k.data = reinterpret_cast<const float*>(p.k16);
  if (p.v16) check.v.data = reinterpret_cast<const float*>(p.v16);
  if (const char* e = dense_pass_can_run(check)) return e;
  const int64_t Hq = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim;
  if (d > 128 || d % 8 != 0) return "dense_pass_cuda: head_dim must be a multiple of 8 and <= 128";
  if (p.top_n > kMaxTopN) return "dense_pass_cuda: top_n > 64 not supported";
  if ((p.q16 || p.k16 || p.v16) && p.input_dtype == DType::f32)
    return "dense_pass_cuda: 16-bit inputs need input_dtype f16 or bf16";
  if (p.query_count == 0) return nullptr;
  const int kind = p.input_dtype == DType::f16 ? kF16 : kBF16;
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  Scratch scratch(stream);
  DenseArgs a{};
  // 16-bit operands: given, or converted from the fp32 views (contiguous copies); v only
  // when the output is asked for.
  const char* misaligned = "dense_pass_cuda: 16-bit inputs need 16-byte aligned rows";
  Operand16 q16, k16, v16;
  MOBA_TRY(make_operand_16(p.q, p.q16, kind, scratch, stream, misaligned, &q16));
  MOBA_TRY(make_operand_16(p.k, p.k16, kind, scratch, stream, misaligned, &k16));
  if (p.out) MOBA_TRY(make_operand_16(p.v, p.v16, kind, scratch, stream, misaligned, &v16));
  a.q = q16.data; a.q_sh = q16.stride_head; a.q_st = q16.stride_token;
  a.k = k16.data; a.k_sh = k16.stride_head; a.k_st = k16.stride_token;
  a.v = v16.data; a.v_sh = v16.stride_head; a.v_st = v16.stride_token;
  a.n_tokens = T;
  a.head_dim = d;
  a.group = Hq / p.k.n_heads;
  a.q_begin = p.query_begin;
  a.q_count = p.query_count;
  const float scale = p.softmax_scale > 0.0f ? p.softmax_scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  a.scale_log2 = scale * 1.4426950408889634f;
  a.lse = p.lse;
  a.out = p.out;
  a.n_sizes = p.n_block_sizes;
  for (int i = 0; i < p.n_block_sizes; ++i) {
    a.block_size[i] = p.block_sizes[i];
    a.n_blocks[i] = block_count(T, p.block_sizes[i]);
    a.mass[i] = p.block_mass[i];
  }
  a.top_n = p.top_n;
  a.top_index = p.top_index;
  a.top_prob = p.top_prob;
  if (Hq > 65535) return "dense_pass_cuda: too many heads";
  if (kind == kF16)
    return d <= 64 ? launch_dense<64, __half>(a, Hq, stream) : launch_dense<128, __half>(a, Hq, stream);
  return d <= 64 ? launch_dense<64, __nv_bfloat16>(a, Hq, stream) : launch_dense<128, __nv_bfloat16>(a, Hq, stream);
}

}  // namespace moba::kernels
