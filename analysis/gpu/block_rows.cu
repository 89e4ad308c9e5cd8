// Block-score rows and their selection on the device (analysis/gpu/block_rows.h).
#include "analysis/gpu/block_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "analysis/gpu/device_common.cuh"
#include "analysis/gpu/device_util.cuh"

namespace moba::analysis::gpu {
namespace {

// ---- gate scores (kernels/gate_topk.h gate_scores_tile_cpu): s(t, b) = q_t . kbar_b ----------
struct ScoreArgs {
  const float* q = nullptr;  // row t at q + (t / q_div) * q_st
  int64_t q_st = 0;
  int64_t q_div = 1;         // minference-bs: B (q holds the mean query of each query block)
  const float* kbar = nullptr;  // [nb, d]
  int d = 0;
  int64_t t0 = 0, nq = 0, n_cols = 0, stride = 0;  // columns b < n_cols; row stride of `scores`
  float* scores = nullptr;                         // [nq, stride]
  // > 0: the block size whose rows read these scores. Row t reads its routable blocks b < t / B
  // only, so a tile no row of which reaches its first column is left out (left unwritten).
  int64_t causal_block = 0;
};

// A tile of rows [t0 + i0, t0 + i0 + kTileQ) and columns [b0, b0 + kTileK) that no row reads.
__device__ __forceinline__ bool tile_unread(int64_t causal_block, int64_t t0, int64_t i0, int64_t b0) {
  return causal_block > 0 && b0 >= (t0 + i0 + kTileQ - 1) / causal_block;
}
// Row-major tiles of d + 4 floats a row: head dims are multiples of 8 on the GPU
// (head_dim_unsupported), so a row is a whole number of 128-bit words, an odd number of them,
// and the 8 rows a quarter-warp reads at once fall in distinct bank groups.
inline __host__ __device__ int gate_ld(int d) { return d + 4; }
__global__ void __launch_bounds__(256) gate_scores_kernel(ScoreArgs a) {
  extern __shared__ float4 sm4[];
  float* const sm = reinterpret_cast<float*>(sm4);
  const int ld = gate_ld(a.d);
  float* qs = sm;
  float* ks = qs + kTileQ * ld;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTileQ, b0 = static_cast<int64_t>(blockIdx.x) * kTileK;
  if (tile_unread(a.causal_block, a.t0, i0, b0)) return;  // the whole CTA
  // The tiles in 128-bit words (rows of q and kbar start 16-byte aligned: launch_gate_scores):
  // rows ty + 16 u, words w = tx, tx + 16, ...; a word's eight loads issued before its stores.
  // (Element by element with a division by d each, the loads were two thirds of the kernel's
  // stall samples: kernels/cuda/NOTES.md, fiftieth session.)
  const int n4 = a.d / 4;
  const float4 zero4 = make_float4(0.f, 0.f, 0.f, 0.f);
  const float4* qr[4];
  const float4* kr[4];
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int64_t i = i0 + ty + 16 * u, b = b0 + ty + 16 * u, t = a.t0 + i;
    qr[u] = i < a.nq ? reinterpret_cast<const float4*>(a.q + (a.q_div == 1 ? t : t / a.q_div) * a.q_st) : nullptr;
    kr[u] = b < a.n_cols ? reinterpret_cast<const float4*>(a.kbar + b * a.d) : nullptr;
  }
  for (int w = tx; w < n4; w += 16) {
    float4 qv[4], kv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      qv[u] = qr[u] ? qr[u][w] : zero4;
      kv[u] = kr[u] ? kr[u][w] : zero4;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      *reinterpret_cast<float4*>(qs + (ty + 16 * u) * ld + 4 * w) = qv[u];
      *reinterpret_cast<float4*>(ks + (ty + 16 * u) * ld + 4 * w) = kv[u];
    }
  }
  __syncthreads();
  // The thread's rows ty + 16 u and columns tx + 16 v; per score a multiply then an add in
  // channel order (the CPU's bits under -ffp-contract=off: both backends select on the same
  // numbers), 4 channels a step from 128-bit loads.
  float acc[4][4];
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) acc[u][v] = 0.f;
  for (int c = 0; c < a.d; c += 4) {
    float4 qv[4], kv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      qv[u] = *reinterpret_cast<const float4*>(qs + (ty + 16 * u) * ld + c);
      kv[u] = *reinterpret_cast<const float4*>(ks + (tx + 16 * u) * ld + c);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        acc[u][v] = __fadd_rn(acc[u][v], __fmul_rn(qv[u].x, kv[v].x));
        acc[u][v] = __fadd_rn(acc[u][v], __fmul_rn(qv[u].y, kv[v].y));
        acc[u][v] = __fadd_rn(acc[u][v], __fmul_rn(qv[u].z, kv[v].z));
        acc[u][v] = __fadd_rn(acc[u][v], __fmul_rn(qv[u].w, kv[v].w));
      }
  }
  store_score_tile(acc, i0 + ty, b0 + tx, 16, a.nq, a.n_cols, a.stride, a.scores);
}

// ---- block-score routers' rows (analysis/router.h block_score_row, per head) ----------------
// quest: s(t, b) = sum_ch max(q_ch kmin_b,ch, q_ch kmax_b,ch), fp32, multiply then add in
// channel order (the CPU's bits). Tiles as gate_scores_kernel's, with two key tiles.
struct QuestArgs {
  const float* q = nullptr;  // row t at q + t * q_st
  int64_t q_st = 0;
  const float *kmin = nullptr, *kmax = nullptr;  // [nb, d]
  int d = 0;
  int64_t t0 = 0, nq = 0, n_cols = 0, stride = 0;
  float* scores = nullptr;  // [nq, stride]
  int64_t causal_block = 0;  // as ScoreArgs
};
__global__ void __launch_bounds__(256) quest_scores_kernel(QuestArgs a) {
  extern __shared__ float sm[];
  const int ld = a.d + 1;
  float* qs = sm;                 // [64][d + 1]
  float* lo = qs + kTileQ * ld;   // [64][d + 1]
  float* hi = lo + kTileK * ld;   // [64][d + 1]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTileQ, b0 = static_cast<int64_t>(blockIdx.x) * kTileK;
  if (tile_unread(a.causal_block, a.t0, i0, b0)) return;  // the whole CTA
  for (int e = tid; e < kTileQ * a.d; e += 256) {
    const int r = e / a.d, c = e % a.d;
    qs[r * ld + c] = i0 + r < a.nq ? a.q[(a.t0 + i0 + r) * a.q_st + c] : 0.f;
    lo[r * ld + c] = b0 + r < a.n_cols ? a.kmin[(b0 + r) * a.d + c] : 0.f;
    hi[r * ld + c] = b0 + r < a.n_cols ? a.kmax[(b0 + r) * a.d + c] : 0.f;
  }
  __syncthreads();
  float acc[4][4];
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) acc[u][v] = 0.f;
  for (int c = 0; c < a.d; ++c) {
    float qv[4], lv[4], hv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      qv[u] = qs[(ty * 4 + u) * ld + c];
      lv[u] = lo[(tx * 4 + u) * ld + c];
      hv[u] = hi[(tx * 4 + u) * ld + c];
    }
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const float x = __fmul_rn(qv[u], lv[v]), y = __fmul_rn(qv[u], hv[v]);
        acc[u][v] = __fadd_rn(acc[u][v], x < y ? y : x);  // std::max(x, y)
      }
  }
  store_score_tile(acc, i0 + ty * 4, b0 + tx * 4, 1, a.nq, a.n_cols, a.stride, a.scores);
}

// minference-bs' mean queries: qbar[m, ch] for query blocks m in [m_begin, m_end), the mean of
// q over [m B, min((m + 1) B, T)) summed in double in token order, divided in double and
// rounded once to fp32. One thread per (block, channel).
__global__ void query_block_mean_kernel(const float* q /* [T, d] */, int64_t T, int d, int64_t B, int64_t m_begin,
                                        int64_t m_end, float* qbar /* [nb, d] */) {
  const int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t m = m_begin + x / d, ch = x % d;
  if (m >= m_end) return;
  const int64_t u0 = m * B, u1 = min((m + 1) * B, T);
  double acc = 0.0;
  for (int64_t u = u0; u < u1; ++u) acc += static_cast<double>(q[u * d + ch]);
  qbar[m * d + ch] = static_cast<float>(acc / static_cast<double>(u1 - u0));
}

// sink-window: row[b] = b, block 0 at +inf, for b < n_cols.
__global__ void sink_window_scores_kernel(int64_t nq, int64_t n_cols, int64_t stride, float* scores) {
  const int64_t n = nq * n_cols;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / n_cols, b = x % n_cols;
    scores[i * stride + b] = b == 0 ? __int_as_float(0x7f800000) : static_cast<float>(b);
  }
}

// nsa-shared (analysis/router.h block_score_row): adds one head's probabilities p(t, b) =
// softmax over the routable blocks b < c of scale * s(t, b) to the group's running sum, in the
// CPU's arithmetic (router.cpp softmax_routable): the max over the non-NaN scores, e = exp(scale
// * s - max) (0 for NaN scores or a non-finite max), their sum in block order on one thread,
// p = e / sum when sum > 0, acc = acc + p in double, heads in order. On the group's last head
// the sum is rounded once to fp32 over the head's scores (the row the selector reads). One CTA
// per query of the chunk; e is computed twice (for the sum, then for p) instead of stored.
struct NsaArgs {
  int64_t t0 = 0, B = 0, stride = 0;  // stride: row length of scores and acc
  double scale = 1.0;                 // 1 / sqrt(d)
  float* scores = nullptr;            // [nq, stride]: the head's gate scores; on `last`, the row
  double* acc = nullptr;              // [nq, stride]: the sum over the heads so far
  bool first = false, last = false;
};
constexpr int kNsaTile = 2048;  // e values summed per pass of thread 0
__global__ void __launch_bounds__(256) nsa_accumulate_kernel(NsaArgs a) {
  using Reduce = cub::BlockReduce<double, 256>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ double tile[kNsaTile];
  __shared__ double bcast;
  const int tid = threadIdx.x;
  const int64_t i = blockIdx.x, c = (a.t0 + i) / a.B;
  if (c == 0) return;  // the whole CTA
  float* s = a.scores + i * a.stride;
  double* acc = a.acc + i * a.stride;
  double mx = -INFINITY;
  for (int64_t b = tid; b < c; b += 256)
    if (!isnan(s[b])) mx = fmax(mx, __dmul_rn(a.scale, static_cast<double>(s[b])));
  mx = Reduce(temp).Reduce(mx, DoubleMaxOp());
  if (tid == 0) bcast = mx;
  __syncthreads();
  mx = bcast;
  const bool finite = isfinite(mx);
  // No contraction: the CPU multiplies, then subtracts.
  const auto e_of = [&](int64_t b) {
    const float x = s[b];
    return isnan(x) || !finite ? 0.0 : exp(__dsub_rn(__dmul_rn(a.scale, static_cast<double>(x)), mx));
  };
  double sum = 0.0;  // thread 0's
  for (int64_t b0 = 0; b0 < c; b0 += kNsaTile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kNsaTile), c - b0));
    for (int x = tid; x < n; x += 256) tile[x] = e_of(b0 + x);
    __syncthreads();
    if (tid == 0)
      for (int x = 0; x < n; ++x) sum += tile[x];
    __syncthreads();
  }
  if (tid == 0) bcast = sum;
  __syncthreads();
  sum = bcast;
  for (int64_t b = tid; b < c; b += 256) {
    const double p = sum > 0.0 ? e_of(b) / sum : e_of(b);
    const double v = a.first ? p : __dadd_rn(acc[b], p);  // the CPU's 0.0 + p is p (p >= 0)
    if (a.last)
      s[b] = static_cast<float>(v);
    else
      acc[b] = v;
  }
}

// GQA shared's group sums (group_sum_cuda), one thread per (query, block).
__global__ void group_sum_kernel(const float* src, int64_t head_stride, int64_t n_heads, int64_t t0, int64_t nq,
                                 int64_t B, int64_t nb, float* sum, double* mean) {
  const int64_t n = nq * nb;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / nb, b = x % nb;
    if (b > (t0 + i) / B) continue;
    float s = 0.0f;
    double m = 0.0;
    for (int64_t h = 0; h < n_heads; ++h) {
      const float v = src[h * head_stride + x];
      s = __fadd_rn(s, v);
      m = __dadd_rn(m, static_cast<double>(v));
    }
    sum[x] = s;
    if (mean) mean[x] = m / static_cast<double>(n_heads);
  }
}

// The selector on one row per CTA: blockIdx.x the query of the chunk, blockIdx.y the row.
template <int THREADS, int IPT>
__global__ void __launch_bounds__(THREADS) select_kernel(SelectRowsArgs a) {
  using RK = RowKernel<THREADS, IPT>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  typename RK::Smem& sm = *reinterpret_cast<typename RK::Smem*>(smem_raw);
  const int64_t i = blockIdx.x, r = blockIdx.y, t = a.t0 + i, c = t / a.B;
  const float* row = a.rows + r * a.row_stride + i * a.nb;
  int blk[IPT];
  rank_row<THREADS, IPT>(sm, row, c, a.recent, sm.grank, blk);
  int npick = static_cast<int>(min(static_cast<int64_t>(a.top_k - 1), c));
  if (a.mode != kRowFixed)
    npick = mass_budget<THREADS, IPT>(sm, a.mode, row, a.mass ? a.mass + i * a.nb : nullptr, sm.grank, blk, c,
                                      a.score_scale, a.tau, npick);
  for (int x = 0; x < a.n_copies; ++x)
    write_selection<THREADS, IPT>(sm, sm.grank, c, 0, npick, true, a.top_k,
                                  a.sel + ((r * a.n_copies + x) * a.T + t) * a.top_k);
}

template <int THREADS, int IPT>
void launch_select(const SelectRowsArgs& a, int64_t nq, int n_rows) {
  const size_t smem = sizeof(typename RowKernel<THREADS, IPT>::Smem);
  allow_smem(reinterpret_cast<const void*>(select_kernel<THREADS, IPT>), smem);
  select_kernel<THREADS, IPT><<<dim3(static_cast<unsigned>(nq), static_cast<unsigned>(n_rows)), THREADS, smem>>>(a);
  ck_launch("select rows");
}

void launch_gate_scores(const ScoreArgs& s, const dim3& grid) {
  if (s.d % 8 != 0) throw std::logic_error("gate scores: head dim " + std::to_string(s.d) + " (head_dim_unsupported)");
  const auto aligned16 = [](const float* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!aligned16(s.q) || !aligned16(s.kbar) || s.q_st % 4 != 0)
    throw std::logic_error("gate scores: q and kbar rows must start 16-byte aligned");
  const size_t smem = static_cast<size_t>(kTileQ + kTileK) * gate_ld(s.d) * sizeof(float);
  allow_smem(reinterpret_cast<const void*>(gate_scores_kernel), smem);
  gate_scores_kernel<<<grid, 256, smem>>>(s);
  ck_launch("gate scores");
}

}  // namespace

void score_rows_cuda(const ScoreRowSource& src, int64_t head, int64_t t0, int64_t nq, float* scores) {
  const RouterKind kind = src.kind;
  const int64_t B = src.block_size, nb = src.n_blocks, T = src.n_tokens, hd = src.head_dim;
  const int64_t n_cols = std::min((t0 + nq - 1) / B, nb);
  if (n_cols <= 0) return;
  const int d = static_cast<int>(hd);
  const float* qh = src.q + head * T * hd;
  const dim3 grid(static_cast<unsigned>((n_cols + kTileK - 1) / kTileK), static_cast<unsigned>((nq + kTileQ - 1) / kTileQ));
  if (kind == RouterKind::sink_window) {
    const int64_t n = nq * n_cols;
    sink_window_scores_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096)), 256>>>(nq, n_cols, nb,
                                                                                                        scores);
    ck_launch("sink-window scores");
    return;
  }
  if (kind == RouterKind::quest) {
    QuestArgs s;
    s.q = qh, s.q_st = hd, s.d = d;
    s.kmin = src.keys, s.kmax = src.keys + nb * hd;
    s.t0 = t0, s.nq = nq, s.n_cols = n_cols, s.stride = nb;
    s.scores = scores;
    s.causal_block = B;
    const size_t smem = static_cast<size_t>(kTileQ + 2 * kTileK) * (d + 1) * sizeof(float);
    allow_smem(reinterpret_cast<const void*>(quest_scores_kernel), smem);
    quest_scores_kernel<<<grid, 256, smem>>>(s);
    ck_launch("quest scores");
    return;
  }
  ScoreArgs s;
  s.q = qh, s.q_st = hd, s.d = d;
  s.t0 = t0, s.nq = nq, s.n_cols = n_cols, s.stride = nb;
  s.scores = scores;
  s.kbar = src.keys;
  if (kind == RouterKind::minference_bs) {
    const int64_t m0 = t0 / B, m1 = (t0 + nq - 1) / B + 1, n = (m1 - m0) * hd;
    query_block_mean_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(qh, T, d, B, m0, m1, src.qbar);
    ck_launch("minference-bs mean queries");
    s.q = src.qbar, s.q_div = B;
  }
  s.causal_block = B;  // every reader (the row kernels, nsa_accumulate_kernel) stops at b < t / B
  if (kind != RouterKind::nsa_shared) {
    launch_gate_scores(s, grid);
    return;
  }
  NsaArgs n;
  n.t0 = t0, n.B = B, n.stride = nb;
  n.scale = 1.0 / std::sqrt(static_cast<double>(hd));  // block_score_row's scale
  n.scores = scores, n.acc = src.nsa_sum;
  for (int64_t h = 0; h < src.n_heads; ++h) {
    s.q = src.q + h * T * hd;
    launch_gate_scores(s, grid);
    n.first = h == 0, n.last = h == src.n_heads - 1;
    nsa_accumulate_kernel<<<static_cast<unsigned>(nq), 256>>>(n);
    ck_launch("nsa-shared row");
  }
}

void group_sum_cuda(const float* src, int64_t head_stride, int64_t n_heads, int64_t t0, int64_t nq, int64_t B,
                    int64_t nb, float* sum, double* mean) {
  const int64_t n = nq * nb;
  group_sum_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096)), 256>>>(src, head_stride, n_heads,
                                                                                             t0, nq, B, nb, sum, mean);
  ck_launch("group sum");
}

void select_rows_cuda(const SelectRowsArgs& a, int64_t nq, int n_rows) {
  by_row_tier((a.t0 + nq - 1) / a.B, [&](auto threads, auto ipt) {
    launch_select<decltype(threads)::value, decltype(ipt)::value>(a, nq, n_rows);
  });
}

std::string head_dim_unsupported(int64_t head_dim) {
  if (head_dim <= 128 && head_dim % 8 == 0) return "";
  return "head dim " + std::to_string(head_dim) + " (the GPU kernels take multiples of 8 up to 128)";
}

std::string row_blocks_unsupported(int64_t block_size, int64_t n_blocks) {
  if (n_blocks - 1 <= kMaxRowBlocks) return "";
  return "block size " + std::to_string(block_size) + " gives " + std::to_string(n_blocks) +
         " blocks (the GPU row sort takes up to " + std::to_string(kMaxRowBlocks + 1) + ")";
}

}  // namespace moba::analysis::gpu
