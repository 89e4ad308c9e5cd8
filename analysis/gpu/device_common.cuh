#pragma once
// Device pieces shared by the kernels of analysis/gpu (analyze_gpu_kernels.cuh, block_rows.cu):
// the fp32 tile dot products of the score kernels, and the row selector's sort keys, shared
// memory and steps (rank a row, a variable budget, write a selection).
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "analysis/gpu/block_rows.h"

namespace moba::analysis::gpu {

constexpr int kTieBits = 14;  // block index bits of a sort key: rows of <= 16384 blocks
constexpr uint32_t kTieMask = (1u << kTieBits) - 1;
static_assert(kMaxRowBlocks <= (int64_t{1} << kTieBits), "a sort key's block index");

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

constexpr int kTileQ = 64, kTileK = 64;

// One thread's 4 x 4 dot products of a 64 x 64 tile: rows ty*4 + u of `qs` against rows tx*4 + v
// of `ks` (both [64][ld] in shared memory), over d channels in order, by fused multiply-adds.
__device__ __forceinline__ void tile_dots(const float* qs, const float* ks, int ld, int d, int ty, int tx,
                                          float (&acc)[4][4]) {
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) acc[u][v] = 0.f;
  for (int c = 0; c < d; ++c) {
    float qv[4], kv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      qv[u] = qs[(ty * 4 + u) * ld + c];
      kv[u] = ks[(tx * 4 + u) * ld + c];
    }
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v)
        acc[u][v] = fmaf(qv[u], kv[v], acc[u][v]);
  }
}

// A thread's 4 x 4 scores (rows i0 + step u < nq, columns b0 + step v < n_cols) into scores
// [nq, stride].
__device__ __forceinline__ void store_score_tile(const float (&acc)[4][4], int64_t i0, int64_t b0, int step,
                                                 int64_t nq, int64_t n_cols, int64_t stride, float* scores) {
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int64_t i = i0 + step * u;
    if (i >= nq) continue;
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int64_t b = b0 + step * v;
      if (b < n_cols) scores[i * stride + b] = acc[u][v];
    }
  }
}

struct DoubleMaxOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

// ---- the row selector: every routable block of a row sorted once by (score, tie rule) -----
__device__ __forceinline__ uint64_t sort_key(float x, int64_t b, bool recent) {
  uint32_t u;
  if (isnan(x)) {
    u = 1u;  // below every number
  } else {
    if (x == 0.f) x = 0.f;  // -0 ties with +0
    u = __float_as_uint(x);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  const uint32_t tb = recent ? static_cast<uint32_t>(b) : kTieMask - static_cast<uint32_t>(b);
  return (static_cast<uint64_t>(u) << kTieBits) | tb;
}
__device__ __forceinline__ int key_block(uint64_t key, bool recent) {
  const uint32_t tb = static_cast<uint32_t>(key & kTieMask);
  return static_cast<int>(recent ? tb : kTieMask - tb);
}

struct PairSums {
  double s, s2;
  int neg;
};
struct PairSumsOp {
  __device__ PairSums operator()(const PairSums& a, const PairSums& b) const {
    return PairSums{a.s + b.s, a.s2 + b.s2, a.neg + b.neg};
  }
};

constexpr int kMaxRowCfg = 16;  // configurations per block size a row kernel sums at once
static_assert(kMaxRowBlocks < (1 << 15), "oracle hits and top-key hits share one int (part_rt)");

template <int THREADS, int IPT>
struct RowKernel {
  static constexpr int kCap = THREADS * IPT;
  // 6-bit digits: 8 passes over the 46-bit key instead of 12 (H200, 8 heads x 128K at B = 16,
  // 8 budgets: routing rows 0.941 -> 0.905 s; the order, hence every output, is the same).
  using Sort = cub::BlockRadixSort<uint64_t, THREADS, IPT, cub::NullType, 6>;
  using ReduceP = cub::BlockReduce<PairSums, THREADS>;
  using Scan = cub::BlockScan<int, THREADS>;
  using ReduceD = cub::BlockReduce<double, THREADS>;
  struct Smem {
    union {
      typename Sort::TempStorage sort;
      typename ReduceP::TempStorage pair;
      typename Scan::TempStorage scan;
      typename ReduceD::TempStorage dred;
      double mass[kCap];  // variable budget: per block, then per rank
    } temp;
    int16_t orank[kCap];
    int16_t grank[kCap];
    int32_t top_block[64];
    int n_top_valid, n_top_cur;
    int64_t j_star;
    int rank_star;
    // Per-configuration sums of one router row (row_kernel's cfg_sums): per warp, then the
    // block's at [jc][0].
    double part_cov[kMaxRowCfg][THREADS / 32];
    int part_rt[kMaxRowCfg][THREADS / 32];  // oracle hits << 16 | top-key hits (both < 2^15)
    PairSums pairs;
    double s_top;
    double vb_value;
    int vb_count;
  };
};

// Writes one row of a selection for query t: the blocks ranked in [lo, hi) ascending, then
// (with_current) the current block c, then -1 up to k entries. A whole selection of
// (configuration, router) is lo = 0, hi = its picks, with the current block; a band of nested
// budgets (analysis/gpu/analyze_gpu.cu) the ranks one k adds to the next smaller one.
template <int THREADS, int IPT>
__device__ void write_selection(typename RowKernel<THREADS, IPT>::Smem& sm, const int16_t* rank, int64_t c, int lo,
                                int hi, bool with_current, int K, int32_t* sel_row) {
  const int tid = threadIdx.x;
  int flags = 0;
#pragma unroll
  for (int k = 0; k < IPT; ++k) {
    const int64_t b = static_cast<int64_t>(tid) * IPT + k;
    flags += (b < c && rank[b] >= lo && rank[b] < hi) ? 1 : 0;
  }
  int off = 0;
  typename RowKernel<THREADS, IPT>::Scan(sm.temp.scan).ExclusiveSum(flags, off);
#pragma unroll
  for (int k = 0; k < IPT; ++k) {
    const int64_t b = static_cast<int64_t>(tid) * IPT + k;
    if (b < c && rank[b] >= lo && rank[b] < hi) sel_row[off++] = static_cast<int32_t>(b);
  }
  if (tid == 0) {
    int x = max(hi - lo, 0);
    if (with_current) sel_row[x++] = static_cast<int32_t>(c);
    for (; x < K; ++x) sel_row[x] = -1;
  }
  __syncthreads();
}

// Sorts one row's routable blocks b < c by (score descending, tie rule, NaN last): a unique
// key per block. blk[k]: the block at rank tid * IPT + k (-1 past c); rank[b]: b's rank.
template <int THREADS, int IPT>
__device__ void rank_row(typename RowKernel<THREADS, IPT>::Smem& sm, const float* row, int64_t c, bool recent,
                         int16_t* rank, int (&blk)[IPT]) {
  const int tid = threadIdx.x;
  uint64_t keys[IPT];
#pragma unroll
  for (int k = 0; k < IPT; ++k) {
    const int64_t b = static_cast<int64_t>(tid) * IPT + k;
    keys[k] = b < c ? sort_key(row[b], b, recent) : 0ull;
  }
  __syncthreads();
  typename RowKernel<THREADS, IPT>::Sort(sm.temp.sort).SortDescending(keys, 0, 32 + kTieBits);
  __syncthreads();
#pragma unroll
  for (int k = 0; k < IPT; ++k) {
    blk[k] = keys[k] != 0ull ? key_block(keys[k], recent) : -1;
    if (blk[k] >= 0) rank[blk[k]] = static_cast<int16_t>(tid * IPT + k);
  }
  __syncthreads();
}

// Variable budget (analysis/router.cpp select_mass_row) of the row rank_row just sorted (blk,
// rank): the number of its best-ranked blocks whose masses, added in rank order in double to
// the current block's, first reach tau, at most n_cap. Masses: kRowThreshold the softmax over
// the routable blocks of score * scale (softmax_routable: max subtracted, NaN scores and a
// non-finite max give 0, the sum in block order; the current block adds 0); kRowTopp `mass`
// [c + 1] when given (GQA shared: the group's mean masses), else the row's own block masses,
// from the current block's on. Sums run in the CPU's order on one thread.
template <int THREADS, int IPT>
__device__ int mass_budget(typename RowKernel<THREADS, IPT>::Smem& sm, int mode, const float* srow, const double* mass,
                           const int16_t* rank, const int (&blk)[IPT], int64_t c, double scale, double tau, int n_cap) {
  using RK = RowKernel<THREADS, IPT>;
  const int tid = threadIdx.x;
  // sm.temp.mass[p]: the mass of the block ranked p (moba-threshold: before normalisation).
  const bool threshold = mode == kRowThreshold;
  double mx = -INFINITY;
  if (threshold) {
#pragma unroll
    for (int k = 0; k < IPT; ++k) {
      const int64_t b = static_cast<int64_t>(tid) * IPT + k;
      if (b < c && !isnan(srow[b])) mx = fmax(mx, __dmul_rn(scale, static_cast<double>(srow[b])));
    }
    mx = typename RK::ReduceD(sm.temp.dred).Reduce(mx, DoubleMaxOp());
    if (tid == 0) sm.vb_value = mx;
    __syncthreads();
    mx = sm.vb_value;
    __syncthreads();
  }
#pragma unroll
  for (int k = 0; k < IPT; ++k) {
    if (blk[k] < 0) continue;
    const float x = srow[blk[k]];
    sm.temp.mass[tid * IPT + k] = !threshold                 ? (mass ? mass[blk[k]] : static_cast<double>(x))
                                  : isnan(x) || !isfinite(mx) ? 0.0
                                                              : exp(__dsub_rn(__dmul_rn(scale, static_cast<double>(x)), mx));
  }
  __syncthreads();
  if (tid == 0) {
    double sum = 0.0;  // threshold: the softmax's sum, in block order
    if (threshold)
      for (int64_t b = 0; b < c; ++b) sum += sm.temp.mass[rank[b]];
    const double m_cur = threshold ? 0.0 : mass ? mass[c] : static_cast<double>(srow[c]);
    int m = 0;
    double cum = m_cur;
    if (m_cur < tau)
      while (m < n_cap && cum < tau) {
        const double x = sm.temp.mass[m++];
        cum += threshold && sum > 0.0 ? x / sum : x;
      }
    sm.vb_count = m;
  }
  __syncthreads();
  const int n = sm.vb_count;
  __syncthreads();
  return n;
}

}  // namespace moba::analysis::gpu
