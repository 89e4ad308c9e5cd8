#pragma once
// Device kernels of the GPU-resident analysis (analysis/gpu/analyze_gpu.h). Each mirrors one
// host stage of analysis/analyze.cpp; the comments name it.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "analysis/gpu/device_common.cuh"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/score_moments.cuh"
#include "kernels/moba_attention.h"

namespace moba::analysis::gpu {

constexpr int kMaxCfgPerBlock = 16;  // configurations (top-k values) per block size
static_assert(kMaxCfgPerBlock <= kMaxRowCfg, "row_kernel's per-configuration sums");
constexpr int kMaxGates = 2;         // moba, moba-kconv
constexpr int kMaxRows = 8;          // routers besides the oracle (every router kind but it)
constexpr int kSlots = 1 + kMaxRows;   // router slot 0: oracle, 1 + si: row si (list order)
constexpr int kMetricCount = 8;        // analysis/summary.h PositionMetric, in enum order
constexpr int kRankBins = 65;          // analysis/snr.h kSnrMaxRank + 1

// One query's SNR contribution (analysis/snr.cpp snr_add_query), reduced in order later.
struct SnrRow {
  double sum_d, sum_d2, delta_mu, excess, var_noise;
  int32_t n_pairs, n_negative, rank;  // rank 0: the query does not count (c < 2)
  int32_t pad;
};

// ---- token-score moments (analysis/snr_probe.cpp KeyPrefix / snr_query_sums) -------------
// Per query i of the chunk (t = t0 + i) and base block m < floor(t / base): the sum and sum of
// squares of s_j = q_t . k_j (fp32 dot, double sums) over the block's keys and, with `mx`,
// the largest s_j and its key (the later key on ties, as find_signal_key). Grid: x = 64-query
// tiles, y = key ranges of `split` keys (a multiple of 64 and of base, so no base block spans
// two CTAs): a chunk's late queries see up to T keys, and one CTA per query tile left most of
// the GPU idle.
struct MomentsArgs {
  const float* q = nullptr;  // row t at q + t * q_st
  int64_t q_st = 0;
  const float* k = nullptr;  // row j at k + j * k_st
  int64_t k_st = 0;
  int d = 0;
  int64_t t0 = 0, nq = 0, base = 1, stride = 0;  // stride: row length of the outputs
  int64_t split = 0;                             // keys per CTA along grid y
  double *sum = nullptr, *sq = nullptr;          // [nq, stride]
  float* mx = nullptr;                           // [nq, stride] or null
  int32_t* arg = nullptr;
};
__global__ void __launch_bounds__(256) moments_kernel(MomentsArgs a) {
  extern __shared__ float sm[];
  const int ld = a.d + 1;
  float* qs = sm;                  // [64][d + 1]
  float* ks = qs + kTileQ * ld;    // [64][d + 1]
  float* ss = ks + kTileK * ld;    // [64][65]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTileQ;
  const int nqt = static_cast<int>(min(static_cast<int64_t>(kTileQ), a.nq - i0));
  for (int e = tid; e < kTileQ * a.d; e += 256) {
    const int r = e / a.d, c = e % a.d;
    qs[r * ld + c] = r < nqt ? a.q[(a.t0 + i0 + r) * a.q_st + c] : 0.f;
  }
  const int64_t t = a.t0 + i0 + tid;
  const int64_t lim = tid < nqt ? (t / a.base) * a.base : 0;  // keys j < lim
  const int64_t j_begin = static_cast<int64_t>(blockIdx.y) * a.split;
  const int64_t j_end = min(((a.t0 + i0 + nqt - 1) / a.base) * a.base, j_begin + a.split);
  if (j_begin >= j_end) return;  // the whole CTA (no __syncthreads passed yet)
  double rs = 0, rq = 0;
  float rmax = -INFINITY;
  int32_t rarg = -1;
  int64_t cur = j_begin / a.base;
  const int64_t out_row = (i0 + tid) * a.stride;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTileK) {
    __syncthreads();
    for (int e = tid; e < kTileK * a.d; e += 256) {
      const int r = e / a.d, c = e % a.d;
      ks[r * ld + c] = j0 + r < j_end ? a.k[(j0 + r) * a.k_st + c] : 0.f;
    }
    __syncthreads();
    float acc[4][4];
    tile_dots(qs, ks, ld, a.d, ty, tx, acc);
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) ss[(ty * 4 + u) * 65 + tx * 4 + v] = acc[u][v];
    __syncthreads();
    if (tid < nqt) {
      const int64_t jn = min(static_cast<int64_t>(kTileK), lim - j0);
      for (int64_t jj = 0; jj < jn; ++jj) {
        const int64_t j = j0 + jj, m = j / a.base;
        if (m != cur) {
          a.sum[out_row + cur] = rs;
          a.sq[out_row + cur] = rq;
          if (a.mx) {
            a.mx[out_row + cur] = rmax;
            a.arg[out_row + cur] = rarg;
          }
          rs = rq = 0;
          rmax = -INFINITY;
          rarg = -1;
          cur = m;
        }
        const float s = ss[tid * 65 + jj];
        rs += s;
        rq += static_cast<double>(s) * s;
        if (s >= rmax) {
          rmax = s;
          rarg = static_cast<int32_t>(j);
        }
      }
    }
  }
  if (tid < nqt && lim > j_begin) {
    a.sum[out_row + cur] = rs;
    a.sq[out_row + cur] = rq;
    if (a.mx) {
      a.mx[out_row + cur] = rmax;
      a.arg[out_row + cur] = rarg;
    }
  }
}

// The same moments on tensor cores, for 16-bit q and k (a 16-bit dump's own values: the
// products are exact, the sums fp32 over 16 keys then double, so s_j differs from the fp32
// dot only in summation order) and base a multiple of 16. CTA: 4 warps x 16 queries, key
// tiles of 64 in shared memory (double-buffered: tile i + 1 is copied by cp.async while tile
// i is reduced), S = Q K^T by mma.sync m16n8k16 (k-steps outer, the 8 tiles' accumulation
// chains interleaved; each tile's k-steps in order: the bits of a tile-outer loop). Each 16-key
// segment is reduced over its quad (sum, sum of squares, max with the later key on ties), the
// tile's 4 segments transposed so that lane qd ends with segment qd; base blocks of 16 keys are
// then stored by the quad's 4 lanes side by side, larger ones accumulated in key order and
// written once complete. Grid as moments_kernel's (x: 64-query tiles, y: key ranges of `split`
// keys).
struct MomentsMmaArgs {
  const uint16_t* q = nullptr;  // the head's rows: t at q + t * d
  const uint16_t* k = nullptr;  // key j at k + j * d
  int d = 0;
  int64_t t0 = 0, nq = 0, base = 16, stride = 0, split = 0;
  double *sum = nullptr, *sq = nullptr;  // [nq, stride]
  float* mx = nullptr;                   // [nq, stride] or null
  int32_t* arg = nullptr;
};
template <int D, typename T16>
__global__ void __launch_bounds__(128) moments_mma_kernel(MomentsMmaArgs a) {
  using namespace moba::kernels::cuda_detail;
  using M = Mma<T16>;
  constexpr int LD = D + 8;
  __shared__ __align__(16) uint16_t ks[2][kTileK * LD];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTileQ, q_end = a.t0 + a.nq;
  const int64_t r0 = a.t0 + i0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two queries
  const bool v0 = r0 < q_end, v1 = r1 < q_end;
  const int64_t lim0 = v0 ? (r0 / a.base) * a.base : 0, lim1 = v1 ? (r1 / a.base) * a.base : 0;
  const int64_t last = min(a.t0 + i0 + kTileQ, q_end) - 1;
  const int64_t j_begin = static_cast<int64_t>(blockIdx.y) * a.split;
  const int64_t j_end = min((last / a.base) * a.base, j_begin + a.split);
  if (j_begin >= j_end) return;  // the whole CTA
  uint32_t qa[D / 16][4];
  load_q_fragments<D>(qa, v0 ? a.q + r0 * a.d : nullptr, v1 ? a.q + r1 * a.d : nullptr, a.d, qd);
  double s0 = 0, s1 = 0, z0 = 0, z1 = 0;  // running base block of row r0 / r1
  float m0 = -INFINITY, m1 = -INFINITY;
  int32_t x0 = -1, x1 = -1;
  const int64_t o0 = (r0 - a.t0) * a.stride, o1 = (r1 - a.t0) * a.stride;
  // Key tile j0 into buffer buf (zero-filled past j_end and d), one cp.async group.
  const auto stage = [&](int64_t j0, int buf) {
    for (int e = tid; e < kTileK * (D / 8); e += 128) {
      const int r = e / (D / 8), c8 = (e % (D / 8)) * 8;
      const bool ok = j0 + r < j_end && c8 < a.d;
      cp_async16(ks[buf] + r * LD + c8, ok ? a.k + (j0 + r) * a.d + c8 : a.k, ok);
    }
    cp_async_commit();
  };
  stage(j_begin, 0);
  int buf = 0;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTileK, buf ^= 1) {
    if (j0 + kTileK < j_end) {  // the next tile lands while this one is reduced
      stage(j0 + kTileK, buf ^ 1);
      cp_async_wait_group<1>();
    } else {
      cp_async_wait_group<0>();
    }
    __syncthreads();
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
    // ldmatrix x4: matrices (n8 tile 2np, dims +0), (2np, +8), (2np + 1, +0), (2np + 1, +8).
    const uint16_t* kaddr = ks[buf] + ((lane / 16) * 8 + lane % 8) * LD + ((lane / 8) % 2) * 8;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t r[4];
        ldmatrix_x4(r, kaddr + np * 16 * LD + kk * 16);
        M::run(sc[2 * np], qa[kk], r[0], r[1]);
        M::run(sc[2 * np + 1], qa[kk], r[2], r[3]);
      }
    __syncthreads();  // every warp's ldmatrix of this buffer done: the next iteration restages it
    float zs[2], zz[2], zm[2];  // segment qd, rows r0 / r1
    int32_t zx[2];
    segment_moments16(sc, j0, qd, zs, zz, zm, zx);
    if (a.base == 16) {  // every segment is a base block: the quad's 4 lanes store a row's 4 side by side
      const int64_t js = j0 + 16 * qd, m = js / 16;
      if (js < j_end && js < lim0) {
        a.sum[o0 + m] = zs[0], a.sq[o0 + m] = zz[0];
        if (a.mx) a.mx[o0 + m] = zm[0], a.arg[o0 + m] = zx[0];
      }
      if (js < j_end && js < lim1) {
        a.sum[o1 + m] = zs[1], a.sq[o1 + m] = zz[1];
        if (a.mx) a.mx[o1 + m] = zm[1], a.arg[o1 + m] = zx[1];
      }
      continue;
    }
    // Larger base blocks: every segment back to every lane, accumulated in key order (double).
#pragma unroll
    for (int sg = 0; sg < 4; ++sg) {
      const int src = (lane & ~3) | sg;
      const float ps0 = __shfl_sync(0xffffffffu, zs[0], src), ps1 = __shfl_sync(0xffffffffu, zs[1], src);
      const float pz0 = __shfl_sync(0xffffffffu, zz[0], src), pz1 = __shfl_sync(0xffffffffu, zz[1], src);
      const float pm0 = __shfl_sync(0xffffffffu, zm[0], src), pm1 = __shfl_sync(0xffffffffu, zm[1], src);
      const int32_t px0 = __shfl_sync(0xffffffffu, zx[0], src), px1 = __shfl_sync(0xffffffffu, zx[1], src);
      const int64_t js = j0 + 16 * sg;  // the segment's first key
      if (js >= j_end) continue;  // (uniform over the CTA)
      const bool end = (js + 16) % a.base == 0;
      const int64_t m = js / a.base;
      if (js < lim0) {
        s0 += ps0, z0 += pz0;
        if (pm0 >= m0) m0 = pm0, x0 = px0;  // later segments hold later keys
        if (end && qd == 0) {
          a.sum[o0 + m] = s0, a.sq[o0 + m] = z0;
          if (a.mx) a.mx[o0 + m] = m0, a.arg[o0 + m] = x0;
        }
      }
      if (js < lim1) {
        s1 += ps1, z1 += pz1;
        if (pm1 >= m1) m1 = pm1, x1 = px1;
        if (end && qd == 1) {
          a.sum[o1 + m] = s1, a.sq[o1 + m] = z1;
          if (a.mx) a.mx[o1 + m] = m1, a.arg[o1 + m] = x1;
        }
      }
      if (end) s0 = s1 = z0 = z1 = 0, m0 = m1 = -INFINITY, x0 = x1 = -1;
    }
  }
}

// Exclusive prefixes over a row's base blocks m < n = floor(t / base): pre_sum[m] = sum of
// blocks < m (m = 0 .. n), likewise pre_sq, and pre_arg[m] = the key of the largest score in
// blocks < m (the later key on ties; -1 for m = 0). One CTA per query.
struct ArgMax {
  float v;
  int32_t j;
};
struct ArgMaxOp {
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return (b.v > a.v || (b.v == a.v && b.j > a.j)) ? b : a;
  }
};
struct PrefixArgs {
  int64_t t0 = 0, base = 1, stride = 0, pre_stride = 0;
  const double *sum = nullptr, *sq = nullptr;
  const float* mx = nullptr;
  const int32_t* arg = nullptr;
  double *pre_sum = nullptr, *pre_sq = nullptr;  // [nq, pre_stride]
  int32_t* pre_arg = nullptr;
};
__global__ void __launch_bounds__(256) prefix_kernel(PrefixArgs a) {
  using ScanD = cub::BlockScan<double2, 256>;
  using ScanA = cub::BlockScan<ArgMax, 256>;
  __shared__ union {
    typename ScanD::TempStorage d;
    typename ScanA::TempStorage a;
  } temp;
  __shared__ double2 carry_d;
  __shared__ ArgMax carry_a;
  const int64_t i = blockIdx.x, t = a.t0 + i, n = t / a.base;
  const double* s = a.sum + i * a.stride;
  const double* q = a.sq + i * a.stride;
  double* ps = a.pre_sum + i * a.pre_stride;
  double* pq = a.pre_sq + i * a.pre_stride;
  if (threadIdx.x == 0) {
    carry_d = make_double2(0, 0);
    carry_a = ArgMax{-INFINITY, -1};
  }
  __syncthreads();
  for (int64_t m0 = 0; m0 < n; m0 += 256) {
    const int64_t m = m0 + threadIdx.x;
    double2 x = m < n ? make_double2(s[m], q[m]) : make_double2(0, 0);
    double2 ex, total;
    ScanD(temp.d).ExclusiveScan(x, ex, make_double2(0, 0),
                               [](const double2& u, const double2& v) { return make_double2(u.x + v.x, u.y + v.y); },
                               total);
    const double2 c = carry_d;
    if (m < n) {
      ps[m] = c.x + ex.x;
      pq[m] = c.y + ex.y;
    }
    __syncthreads();
    if (threadIdx.x == 0) carry_d = make_double2(c.x + total.x, c.y + total.y);
    if (a.pre_arg) {
      const ArgMax y = m < n ? ArgMax{a.mx[i * a.stride + m], a.arg[i * a.stride + m]} : ArgMax{-INFINITY, -1};
      ArgMax ey, ytot;
      ScanA(temp.a).ExclusiveScan(y, ey, ArgMax{-INFINITY, -1}, ArgMaxOp(), ytot);
      const ArgMax ca = carry_a;
      if (m < n) a.pre_arg[i * a.pre_stride + m] = ArgMaxOp()(ca, ey).j;
      __syncthreads();
      if (threadIdx.x == 0) carry_a = ArgMaxOp()(ca, ytot);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    ps[n] = carry_d.x;
    pq[n] = carry_d.y;
    if (a.pre_arg) a.pre_arg[i * a.pre_stride + n] = carry_a.j;
  }
}

// ---- routing + per-position metrics + SNR of one query row at one block size ---------------
// (analysis/analyze.cpp route_query and probe_query). One CTA per query of the chunk. Every
// router's routable blocks are sorted once by (score, tie rule) — a unique 46-bit key per
// block — so every k of the block size reads its selection off the same order: block b is
// picked at top-k iff its rank is < min(k - 1, c); a variable-budget router (moba-threshold,
// oracle-topp) picks the first n(t) <= min(k - 1, c) of that order (select_mass_row).
// Router rows si: every listed router but the oracle, in list order (RowMode: how each selects).
struct RowArgs {
  int64_t t0 = 0, T = 0, B = 0, nb = 0;  // nb: row stride of mass and scores
  int n_cfg = 0;
  int top_k[kMaxCfgPerBlock] = {};
  // Nested budgets: the next smaller k of this block size (0 for the smallest). Selection rows
  // hold the band of ranks [npick(k_prev), npick(k)) — plus the current block for the
  // smallest — in k - k_prev entries, so a block size's bands add up to its largest selection.
  int k_prev[kMaxCfgPerBlock] = {};
  int cfg_index[kMaxCfgPerBlock] = {};         // the plan's configuration index ci of each jc
  int n_rows = 0;
  int row_mode[kMaxRows] = {};                 // RowMode
  int row_gate[kMaxRows] = {};                 // gate index gi (SNR probe), -1 for the others
  bool recent = true;
  double tau = 0.9, score_scale = 1.0;         // variable budget: RoutingOptions::tau, 1/sqrt(d)
  const float* mass = nullptr;                 // [nq, nb]
  const float* scores[kMaxRows] = {};          // [nq, nb]; null for kRowTopp (reads mass)
  const int32_t* top = nullptr;                // [nq, n_top]
  int n_top = 0, top_n = 0;
  // Outputs: per (configuration jc of this block size, slot) the 8 metric arrays ([8][T],
  // null when the router is not listed) and the selection band [window, k - k_prev] (null:
  // not listed).
  float* metric[kMaxCfgPerBlock][kSlots] = {};
  int32_t* sel[kMaxCfgPerBlock][kSlots] = {};  // rows from sel_t0: query t at (t - sel_t0) * (k - k_prev)
  int64_t sel_t0 = 0;                          // the attention window's first query
  float* oracle_cov[kMaxCfgPerBlock] = {};     // [T]: R*_t
  unsigned long long* planted_hits = nullptr;  // [ci * kSlots + slot]
  unsigned long long* signal_hits = nullptr;   // [ci * kMaxGates + gi]
  unsigned long long* sel_count = nullptr;     // [ci * kSlots + slot]: sum of |S_t| over the queries
                                               // with a choice (variable-budget rows only)
  const int32_t* planted = nullptr;            // [T] or null
  // SNR probe: routing-key moments (exclusive prefixes over base blocks) per gate, the signal
  // key fallback of the dump keys, q and the routing keys.
  int64_t base = 1, pre_stride = 0;
  const double* pre_sum[kMaxGates] = {};
  const double* pre_sq[kMaxGates] = {};
  const int32_t* pre_arg = nullptr;
  const float* q = nullptr;                    // row t at q + t * q_st
  int64_t q_st = 0;
  const float* rkeys[kMaxGates] = {};          // row j at rkeys + j * rk_st
  int64_t rk_st = 0;
  int d = 0;
  SnrRow* snr[kMaxGates] = {};                 // [T]
};

// The per-position metrics one router writes for query t (analysis/summary.h PositionMetric;
// M is [8][T], null when the router is not listed): coverage, -ln R, block recall (NaN without
// a choice), token recall, token sparsity and block density of npick blocks plus the current one.
__device__ inline void write_position_metrics(float* M, int64_t T, int64_t t, int64_t B, int64_t c, double cov,
                                              int npick, bool choice, double recall, int tok_hits, int n_top_all) {
  if (!M) return;
  M[0 * T + t] = static_cast<float>(cov);
  M[1 * T + t] = static_cast<float>(-log(fmax(cov, 1e-300)));
  M[2 * T + t] = choice ? static_cast<float>(recall) : quiet_nan();
  M[3 * T + t] = n_top_all > 0 ? static_cast<float>(static_cast<double>(tok_hits) / n_top_all) : quiet_nan();
  const int64_t attended = static_cast<int64_t>(npick) * B + (t - c * B + 1);
  M[6 * T + t] = static_cast<float>(1.0 - static_cast<double>(attended) / static_cast<double>(t + 1));
  M[7 * T + t] = static_cast<float>(static_cast<double>(npick + 1) / static_cast<double>(c + 1));
}

// The SNR probe's row of query i (t = t0 + i) for gate gi (analysis/snr_probe.cpp): the pair
// sums D = s(b*) - s(b) over the other routable blocks, b*'s rank, the signal key's score
// s_top = q_t . k_j* (double) and the model's noise moments from the routing keys' prefixes.
__device__ inline SnrRow snr_row(const RowArgs& a, int gi, int64_t i, int64_t c, int64_t b_star, const PairSums& p,
                                 double s_top, int rank) {
  SnrRow row{};
  const int64_t B = a.B;
  const double* ps = a.pre_sum[gi] + i * a.pre_stride;
  const double* pq = a.pre_sq[gi] + i * a.pre_stride;
  const int64_t m0 = (b_star * B) / a.base, m1 = ((b_star + 1) * B) / a.base, mc = (c * B) / a.base;
  const double sum_signal = ps[m1] - ps[m0], sumsq_signal = pq[m1] - pq[m0];
  const double sum_routable = ps[mc], sumsq_routable = pq[mc];
  const double Bd = static_cast<double>(B), n_noise = static_cast<double>(c - 1) * Bd;
  const double mu_n = (sum_routable - sum_signal) / n_noise;
  const double var_n = fmax(0.0, (sumsq_routable - sumsq_signal) / n_noise - mu_n * mu_n);
  row.sum_d = p.s;
  row.sum_d2 = p.s2;
  row.n_negative = p.neg;
  row.n_pairs = static_cast<int32_t>(c - 1);
  row.delta_mu = s_top - mu_n;
  row.excess = (sum_signal - s_top) - (Bd - 1) * mu_n;
  row.var_noise = var_n;
  row.rank = rank;
  return row;
}

// The signal key j* of row i (query t = a.t0 + i, current block c): the first key of its top
// list below c B, else the argmax over the routable keys (analysis/snr_probe.h
// find_signal_key); -1 where c < 2.
__device__ inline int64_t signal_key(const RowArgs& a, const int32_t* top, int64_t i, int64_t c) {
  if (c < 2) return -1;
  for (int x = 0; x < a.n_top && top[x] >= 0; ++x)
    if (top[x] < c * a.B) return top[x];
  return a.pre_arg ? a.pre_arg[i * a.pre_stride + (c * a.B) / a.base] : -1;
}

// Query t's planted block when it is routable (< c), else -1.
__device__ inline int32_t planted_block(const RowArgs& a, int64_t t, int64_t c) {
  return a.planted && a.planted[t] >= 0 && a.planted[t] / a.B < c ? static_cast<int32_t>(a.planted[t] / a.B) : -1;
}

// q_t . k_j in double over d channels, by one warp (lane-strided, then a butterfly): every lane
// returns the sum.
__device__ inline double warp_dot(const float* qr, const float* kr, int d, int lane) {
  double acc = 0;
  for (int x = lane; x < d; x += 32) acc += static_cast<double>(qr[x]) * static_cast<double>(kr[x]);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc;
}

template <int THREADS, int IPT>
__global__ void __launch_bounds__(THREADS) row_kernel(RowArgs a) {
  using RK = RowKernel<THREADS, IPT>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  typename RK::Smem& sm = *reinterpret_cast<typename RK::Smem*>(smem_raw);
  const int tid = threadIdx.x;
  const int64_t i = blockIdx.x, t = a.t0 + i, B = a.B, c = t / B, T = a.T;
  const float* mrow = a.mass + i * a.nb;
  const int32_t* top = a.top + i * a.n_top;
  if (tid == 0) {
    int nv = 0, ncur = 0;
    for (int x = 0; x < a.top_n; ++x) {
      const int32_t j = top[x];
      if (j < 0) continue;
      const int32_t b = static_cast<int32_t>(j / B);
      if (b == c)
        ++ncur;
      else
        sm.top_block[nv++] = b;
    }
    sm.n_top_valid = nv;
    sm.n_top_cur = ncur;
    sm.j_star = signal_key(a, top, i, c);
  }
  __syncthreads();
  const int n_top_valid = sm.n_top_valid, n_top_cur = sm.n_top_cur, n_top_all = n_top_valid + n_top_cur;
  const int64_t j_star = sm.j_star, b_star = j_star >= 0 ? j_star / B : -1;

  int blk[IPT], cnt[IPT];
  // Ranks one router's row (rank_row); cnt: top-list keys in the block at each rank.
  auto sort_row = [&](const float* row, int16_t* rank) {
    rank_row<THREADS, IPT>(sm, row, c, a.recent, rank, blk);
#pragma unroll
    for (int k = 0; k < IPT; ++k) {
      cnt[k] = 0;
      if (blk[k] >= 0)
        for (int x = 0; x < n_top_valid; ++x) cnt[k] += sm.top_block[x] == blk[k] ? 1 : 0;
    }
  };
  // Per-configuration sums over the picks of this router (ranks < min(k - 1, c, budget)), every
  // configuration in one pass (two barriers in all, not two per configuration): coverage,
  // oracle hits (picks the oracle ranks below min(k - 1, c)), top-key hits. The block's sums
  // land in sm.part_cov / part_rt [jc][0] (hits: oracle << 16 | top keys).
  auto cfg_sums = [&](int budget) {
    const int lane = tid % 32, warp = tid / 32;
    for (int jc = 0; jc < a.n_cfg; ++jc) {
      const int onpick = static_cast<int>(min(static_cast<int64_t>(a.top_k[jc] - 1), c)), npick = min(onpick, budget);
      double cov = 0.0;
      int rt = 0;
#pragma unroll
      for (int k = 0; k < IPT; ++k)
        if (blk[k] >= 0 && tid * IPT + k < npick) {
          cov += mrow[blk[k]];
          rt += (sm.orank[blk[k]] < onpick ? 1 << 16 : 0) + cnt[k];
        }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        cov += __shfl_xor_sync(0xffffffffu, cov, o);
        rt += __shfl_xor_sync(0xffffffffu, rt, o);
      }
      if (lane == 0) sm.part_cov[jc][warp] = cov, sm.part_rt[jc][warp] = rt;
    }
    __syncthreads();
    if (tid < a.n_cfg) {
      double cov = 0.0;
      int rt = 0;
      for (int w = 0; w < THREADS / 32; ++w) cov += sm.part_cov[tid][w], rt += sm.part_rt[tid][w];
      sm.part_cov[tid][0] = cov, sm.part_rt[tid][0] = rt;
    }
    __syncthreads();
  };
  auto write_metrics = [&](float* M, double cov, int npick, bool choice, double recall, int tok_hits) {
    if (tid == 0) write_position_metrics(M, T, t, B, c, cov, npick, choice, recall, tok_hits, n_top_all);
  };
  const int32_t planted_b = planted_block(a, t, c);

  // The oracle: exact block masses.
  sort_row(mrow, sm.orank);
  cfg_sums(INT_MAX);
  for (int jc = 0; jc < a.n_cfg; ++jc) {
    const int K = a.top_k[jc];
    const int npick = static_cast<int>(min(static_cast<int64_t>(K - 1), c));
    const bool choice = c > K - 1;
    const double cov = sm.part_cov[jc][0] + mrow[c];
    const int tok = sm.part_rt[jc][0] & 0xffff;
    if (tid == 0) a.oracle_cov[jc][t] = static_cast<float>(cov);
    if (a.metric[jc][0]) {
      write_metrics(a.metric[jc][0], cov, npick, choice, npick > 0 ? 1.0 : static_cast<double>(quiet_nan()),
                    tok + n_top_cur);
      if (tid == 0 && choice && planted_b >= 0 && sm.orank[planted_b] < npick) atomicAdd(&a.planted_hits[a.cfg_index[jc] * kSlots], 1ull);
      const int kp = a.k_prev[jc], lo = kp > 0 ? static_cast<int>(min(static_cast<int64_t>(kp - 1), c)) : 0;
      write_selection<THREADS, IPT>(sm, sm.orank, c, lo, npick, kp == 0, K - kp, a.sel[jc][0] + (t - a.sel_t0) * (K - kp));
    }
  }

  // The other routers, one row each: gates (moba, moba-kconv) on gate scores, the block-score
  // routers on their rows, oracle-topp on the block masses.
  for (int si = 0; si < a.n_rows; ++si) {
    const int mode = a.row_mode[si], slot = 1 + si;
    const float* srow = mode == kRowTopp ? mrow : a.scores[si] + i * a.nb;
    sort_row(srow, sm.grank);
    int budget = INT_MAX;
    if (mode != kRowFixed) {
      int n_cap = 0;
      for (int jc = 0; jc < a.n_cfg; ++jc) n_cap = max(n_cap, static_cast<int>(min(static_cast<int64_t>(a.top_k[jc] - 1), c)));
      budget = mass_budget<THREADS, IPT>(sm, mode, srow, nullptr, sm.grank, blk, c, a.score_scale, a.tau, n_cap);
    }
    cfg_sums(budget);
    for (int jc = 0; jc < a.n_cfg; ++jc) {
      const int K = a.top_k[jc];
      const int onpick = static_cast<int>(min(static_cast<int64_t>(K - 1), c));  // the oracle's picks
      const int npick = min(onpick, budget);
      const bool choice = c > K - 1;
      const double cov = sm.part_cov[jc][0] + mrow[c];
      const int rt = sm.part_rt[jc][0];
      const double recall = onpick > 0 ? static_cast<double>(rt >> 16) / onpick : static_cast<double>(quiet_nan());
      write_metrics(a.metric[jc][slot], cov, npick, choice, recall, (rt & 0xffff) + n_top_cur);
      if (tid == 0 && choice && planted_b >= 0 && sm.grank[planted_b] < npick)
        atomicAdd(&a.planted_hits[a.cfg_index[jc] * kSlots + slot], 1ull);
      if (tid == 0 && choice && mode != kRowFixed && a.sel_count)
        atomicAdd(&a.sel_count[a.cfg_index[jc] * kSlots + slot], static_cast<unsigned long long>(npick + 1));
      const int kp = a.k_prev[jc];
      const int lo = kp > 0 ? min(static_cast<int>(min(static_cast<int64_t>(kp - 1), c)), budget) : 0;
      write_selection<THREADS, IPT>(sm, sm.grank, c, lo, npick, kp == 0, K - kp,
                                    a.sel[jc][slot] + (t - a.sel_t0) * (K - kp));
    }
    // SNR probe of a gate (c >= 2): pairs D = s(b*) - s(b) over the other routable blocks,
    // b*'s rank, and the model's token-score sums.
    const int gi = a.row_gate[si];
    if (gi < 0 || !a.snr[gi]) continue;
    SnrRow row{};
    if (c >= 2 && b_star >= 0) {
      const float ss = srow[b_star];
      PairSums p{0.0, 0.0, 0};
#pragma unroll
      for (int k = 0; k < IPT; ++k)
        if (blk[k] >= 0 && blk[k] != b_star) {
          const double dd = static_cast<double>(ss) - static_cast<double>(srow[blk[k]]);
          p.s += dd;
          p.s2 += dd * dd;
          p.neg += dd < 0 ? 1 : 0;
        }
      const PairSums r = typename RK::ReduceP(sm.temp.pair).Reduce(p, PairSumsOp());
      // s_top = q_t . k_j* in double over the routing keys (warp 0).
      if (tid < 32) {
        const double acc = warp_dot(a.q + t * a.q_st, a.rkeys[gi] + j_star * a.rk_st, a.d, tid);
        if (tid == 0) sm.s_top = acc;
      }
      if (tid == 0) sm.pairs = r;
      __syncthreads();
      if (tid == 0) {
        const int rank = sm.grank[b_star] + 1;
        row = snr_row(a, gi, i, c, b_star, sm.pairs, sm.s_top, rank);
        for (int jc = 0; jc < a.n_cfg; ++jc) {
          const int K = a.top_k[jc];
          if (c > K - 1 && rank <= K - 1) atomicAdd(&a.signal_hits[a.cfg_index[jc] * kMaxGates + gi], 1ull);
        }
      }
    }
    if (tid == 0) a.snr[gi][t] = row;
    __syncthreads();
  }
}

// Fills v[0, n) with a quiet NaN (positive: sorts after every number).
__global__ void fill_kernel(float* v, int64_t n) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x)
    v[x] = quiet_nan();
}

// ---- output error (analysis/metrics.h output_error), one warp per query ---------------------
// Nested budgets (analysis/gpu/analyze_gpu.cu output_errors): a budget's output is the
// softmax over the union of its block size's bands up to its own, merged band by band from
// moba_attention_cuda's rows (o_i, lse_i): o = sum_i exp(lse_i - L) o_i, L = ln sum_i exp(lse_i).
// One launch takes the bands of one gather pass (k ascending) in turn: the merge of the smaller
// budgets' bands stays in the warp's registers from one band to the next, and `acc`, `lse_acc`
// carry it from one pass to the next (`first`: the pass holds the smallest budget, whose band
// is its whole selection: acc = o_band). Per band, the merged row's relative error and cosine
// against `ref` (o_full), sums in double; every value is the same expression, in the same
// order, as one launch a band would compute (the bits do not depend on the fusion).
// Rows t < skip have no choice at that budget (nor at the larger ones, merged after it): their
// selection is every block, their output o_full: error 0 and cosine 1, nothing read or merged.
struct BandErrorBand {
  const float* o;    // [rows][d] the band's normalised output
  const float* lse;  // [rows]
  float* rel;        // [rows] outputs: relative error, cosine
  float* cos;
  int64_t skip;
};
struct BandErrorArgs {
  BandErrorBand band[kernels::kMaxAttentionBands];
  int n;             // bands of this pass
  bool first;        // band 0 is the smallest budget's
  float* acc;        // [rows][d] the merge so far (read unless `first`, written after the pass)
  float* lse_acc;    // [rows]
  const float* ref;  // [rows][d] o_full
  int64_t T;         // rows
  int d;             // <= kBandErrorMaxD
};
constexpr int kBandErrorMaxD = 128;  // gpu::head_dim_unsupported: the GPU analysis' head dims
// Scheduling, not arithmetic (ncu: the launch waited on each band's loads, one band at a time,
// at two 256-thread CTAs a multiprocessor): o_full's norm and its doubles are taken once a row, the
// next band's row is loaded while this one is measured, the merge carried in from the previous pass
// is loaded at the start, and the weight of the operand that holds the maximum is exp(0) = 1 without
// the call. Every value the row writes is the expression of one launch a band, in its order. A
// measured band's row is read even where its weight is 0 (its lse -inf): the row lies in the
// window's band buffer; rows before a band's skip are still never read.
__global__ void band_errors_kernel(const __grid_constant__ BandErrorArgs a) {
  constexpr int kE = kBandErrorMaxD / 32;  // a lane's channels: lane + 32 e
  const int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (t >= a.T) return;
  const int d = a.d;
  const int64_t r0 = t * d;
  // The first band from j on that the row is measured in (rows before a band's skip have no
  // choice there); a.n: none.
  const auto measured_from = [&](int j) {
    while (j < a.n && t < a.band[j].skip) ++j;
    return j;
  };
  const int j0 = measured_from(0);
  float o[kE] = {}, acc[kE];  // the band's row being measured; the merge of the bands before it
  float l = 0.0f, la = -INFINITY;
  const auto fetch = [&](int j, float (&v)[kE], float& lse) {
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      const int x = lane + 32 * e;
      v[e] = x < d ? a.band[j].o[r0 + x] : 0.0f;
    }
    lse = a.band[j].lse[t];
  };
  if (j0 < a.n) fetch(j0, o, l);
  // The merge of the earlier passes' bands: read unless the row's first band is the smallest
  // budget's (then that band's output is the merge).
  const bool carried = j0 < a.n && !(a.first && j0 == 0);
  double ref[kE], nr = 0;  // o_full's row and its squared norm (the lane's channels, ascending)
#pragma unroll
  for (int e = 0; e < kE; ++e) {
    const int x = lane + 32 * e;
    acc[e] = carried && x < d ? a.acc[r0 + x] : 0.0f;
    ref[e] = x < d ? static_cast<double>(a.ref[r0 + x]) : 0.0;
    if (x < d) nr += ref[e] * ref[e];
  }
  if (carried) la = a.lse_acc[t];
  for (int s = 16; s > 0; s >>= 1) nr += __shfl_xor_sync(0xffffffffu, nr, s);
  for (int j = 0; j < a.n; ++j) {
    const BandErrorBand& b = a.band[j];
    if (t < b.skip) {
      if (lane == 0) b.rel[t] = 0.0f, b.cos[t] = 1.0f;
      continue;
    }
    const int jn = measured_from(j + 1);  // the next band the row is measured in: its row is loaded now
    float on[kE] = {}, ln = 0.0f;
    if (jn < a.n) fetch(jn, on, ln);
    const bool first = a.first && j == 0;
    float wa = 0.0f, wb = 1.0f, L = l;
    if (!first) {
      const float lb = L;
      if (lb == -INFINITY) {  // the band adds nothing to this query (also la = -inf: nothing at all)
        wa = 1.0f, wb = 0.0f, L = la;
      } else if (la != -INFINITY) {
        const double m = fmax(static_cast<double>(la), static_cast<double>(lb)), da = la - m, db = lb - m;
        const double ea = da == 0.0 ? 1.0 : exp(da), eb = db == 0.0 ? 1.0 : exp(db), sum = ea + eb;
        wa = static_cast<float>(ea / sum), wb = static_cast<float>(eb / sum), L = static_cast<float>(m + log(sum));
      }
    }
    double diff = 0, no = 0, dot = 0;
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      if (lane + 32 * e >= d) break;
      const float merged = first ? o[e] : (wb == 0.0f ? acc[e] : wa * acc[e] + wb * o[e]);
      acc[e] = merged;
      const double u = merged, v = ref[e];
      diff += (u - v) * (u - v);
      no += u * u;
      dot += u * v;
    }
    for (int s = 16; s > 0; s >>= 1) {
      diff += __shfl_xor_sync(0xffffffffu, diff, s);
      no += __shfl_xor_sync(0xffffffffu, no, s);
      dot += __shfl_xor_sync(0xffffffffu, dot, s);
    }
    la = L;
    if (lane == 0) {
      b.rel[t] = static_cast<float>(nr > 0 ? sqrt(diff / nr) : sqrt(diff));
      b.cos[t] = static_cast<float>((nr > 0 && no > 0) ? dot / sqrt(nr * no) : (nr == 0 && no == 0 ? 1.0 : 0.0));
    }
#pragma unroll
    for (int e = 0; e < kE; ++e) o[e] = on[e];
    l = ln;
  }
  if (j0 == a.n) return;  // no band measured: the merge stays as it was
#pragma unroll
  for (int e = 0; e < kE; ++e) {
    const int x = lane + 32 * e;
    if (x < d) a.acc[r0 + x] = acc[e];
  }
  if (lane == 0) a.lse_acc[t] = la;
}

// ---- reductions (analysis/metrics.h summarize) ------------------------------------------------
// One job = the finite values of v[begin, end): their count and sum (double, fixed order).
struct MeanJob {
  const float* v;
  int64_t begin, end;
};
struct MeanOut {
  double sum;
  long long n;
};
struct MeanOp {
  __device__ MeanOut operator()(const MeanOut& a, const MeanOut& b) const { return MeanOut{a.sum + b.sum, a.n + b.n}; }
};
__global__ void __launch_bounds__(256) mean_kernel(const MeanJob* jobs, MeanOut* out) {
  using Reduce = cub::BlockReduce<MeanOut, 256>;
  __shared__ typename Reduce::TempStorage temp;
  const MeanJob j = jobs[blockIdx.x];
  MeanOut m{0.0, 0};
  for (int64_t x = j.begin + threadIdx.x; x < j.end; x += 256) {
    const float v = j.v[x];
    if (isfinite(v)) {
      m.sum += v;
      ++m.n;
    }
  }
  const MeanOut r = Reduce(temp).Reduce(m, MeanOp());
  if (threadIdx.x == 0) out[blockIdx.x] = r;
}

// Quantiles (numpy's linear interpolation) of the first n values of each sorted segment, n the
// count of its mean job (mean_kernel's output, read on the device: no host round trip).
struct QuantileJob {
  const float* sorted;    // the segment's sorted values (finite first, NaN last)
  const MeanOut* count;   // n = count->n
};
__global__ void quantile_kernel(const QuantileJob* jobs, int n_jobs, double* out /* [n_jobs, 3] */) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_jobs) return;
  const float* sorted = jobs[j].sorted;
  const long long n = jobs[j].count->n;
  const double qs[3] = {0.05, 0.5, 0.95};
  for (int x = 0; x < 3; ++x) {
    if (n <= 0) {
      out[j * 3 + x] = quiet_nan();
      continue;
    }
    const double pos = qs[x] * static_cast<double>(n - 1);
    const long long lo = static_cast<long long>(floor(pos));
    const long long hi = min(lo + 1, n - 1);
    const double a = sorted[lo], b = sorted[hi];
    out[j * 3 + x] = a + (pos - static_cast<double>(lo)) * (b - a);
  }
}

// SNR rows of one (gate, block size) reduced in query order into SnrStats' sums: CTA x reduces
// rows [x T, (x + 1) T) into out[x] (one CTA per (gate, block size), side by side).
struct SnrTotals {
  double sum_d, sum_d2, delta_mu, excess, var_noise;
  long long n_queries, n_pairs, n_negative;
  long long hist[kRankBins];
};
struct SnrPart {
  double a, b, c, e, f;
  long long q, p, n;
};
struct SnrPartOp {
  __device__ SnrPart operator()(const SnrPart& x, const SnrPart& y) const {
    return SnrPart{x.a + y.a, x.b + y.b, x.c + y.c, x.e + y.e, x.f + y.f, x.q + y.q, x.p + y.p, x.n + y.n};
  }
};
__global__ void __launch_bounds__(256) snr_reduce_kernel(const SnrRow* rows, int64_t T, SnrTotals* out) {
  using Reduce = cub::BlockReduce<SnrPart, 256>;
  rows += static_cast<int64_t>(blockIdx.x) * T;
  out += blockIdx.x;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ unsigned long long hist[kRankBins];
  for (int x = threadIdx.x; x < kRankBins; x += 256) hist[x] = 0;
  __syncthreads();
  SnrPart p{0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t t = threadIdx.x; t < T; t += 256) {
    const SnrRow r = rows[t];
    if (r.rank <= 0) continue;
    p.a += r.sum_d;
    p.b += r.sum_d2;
    p.c += r.delta_mu;
    p.e += r.excess;
    p.f += r.var_noise;
    p.q += 1;
    p.p += r.n_pairs;
    p.n += r.n_negative;
    atomicAdd(&hist[min(r.rank, kRankBins) - 1], 1ull);
  }
  const SnrPart s = Reduce(temp).Reduce(p, SnrPartOp());
  __syncthreads();
  if (threadIdx.x == 0) {
    out->sum_d = s.a;
    out->sum_d2 = s.b;
    out->delta_mu = s.c;
    out->excess = s.e;
    out->var_noise = s.f;
    out->n_queries = s.q;
    out->n_pairs = s.p;
    out->n_negative = s.n;
  }
  for (int x = threadIdx.x; x < kRankBins; x += 256) out->hist[x] = static_cast<long long>(hist[x]);
}

}  // namespace moba::analysis::gpu
