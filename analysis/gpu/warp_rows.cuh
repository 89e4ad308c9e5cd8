#pragma once
// Routing + per-position metrics + SNR rows with one warp per query row, for block sizes whose
// routers all pick a fixed budget (every router row kRowFixed: moba, moba-kconv, the score-row
// routers; the oracle). The same outputs as row_kernel (analyze_gpu_kernels.cuh), without its
// block-wide sort:
//
// A fixed-budget router picks, at top-k, the routable blocks of rank < n = min(k - 1, c) in
// the order of a unique 46-bit key (score, tie rule; device_common.cuh sort_key). So a block
// is picked iff its key >= theta(n), the key of rank n - 1, and only the distinct counts n of
// the block size's configurations (at most kMaxCfgPerBlock) need a key each. A warp finds
// them all at once by radix select over the row, re-read from global memory per pass (no
// per-row copy in shared memory, no block barriers): the first digit starts at the highest
// bit in which the row's keys differ, then 8-bit digits, one 256-bin histogram per distinct
// open prefix, until each target's bin holds its key last (the bin's keys then are exactly
// the picks above the target). Typical rows finish in 2-3 passes. Small counts (every n <= 8:
// top-k budgets of a few blocks, as in B4) read each row once instead (warp_pick_small): each
// lane keeps its 8 largest keys, the warp draws the row's largest keys from those lists, and the
// per-class sums and the bands take the picks from that list in the order a pass would.
//
// With the counts sorted ascending (class u: n_u), a block's class is the first u with key >=
// theta(n_u): a configuration with count n_u picks the classes <= u, and its band of nested
// budgets (RowArgs::k_prev) is exactly class u. Sums per class (coverage, oracle hits as
// max(class, oracle class), top-key hits) are kept per lane in shared memory and turned into
// per-configuration sums by one prefix over the classes: every sum in a fixed order (a row's
// bits do not depend on timing), though not row_kernel's order (double sums may differ in the
// last bits). Selections are written in block order by a match over the 32 blocks of a step.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "analysis/gpu/analyze_gpu_kernels.cuh"

namespace moba::analysis::gpu {

constexpr int kWarpRowWarps = 4;  // query rows (warps) per CTA
constexpr unsigned kFull = 0xffffffffu;

// NC: the classes (and configurations) a warp can hold, >= RowArgs::n_cfg.
template <int NC>
struct WarpRowSmemT {
  union {
    struct {
      uint32_t hist[NC][128];  // per open prefix: 256 16-bit counts (< 2^15), two per word
      uint64_t gpre[NC];       // the open prefixes, descending
    } sel;
    struct {
      double cov_o[NC][32];  // [class][lane]: mass of the oracle's picks
      double cov_g[NC][32];  // [class][lane]: mass of the router's picks
      int hit[NC][32];       // [max(class, oracle class)][lane]: picked by both
    } acc;
  } u;
  uint64_t theta_o[NC];  // per class: the oracle's smallest picked key
  uint64_t theta_g[NC];  // the router row's
  int owner[NC];         // per class: the configuration whose band it is, or -1
  int off[NC];           // per configuration: band entries written so far
  int tok[NC];           // per class: top-list keys in its blocks
  int picks[8];          // kSmallSelect: picks_by_block's list (put_picks reads it)
};

__device__ __forceinline__ unsigned lanemask_lt(int lane) { return (1u << lane) - 1u; }

// Row passes read kLoads values per lane before using any (a row is read from global memory
// each pass: independent loads in flight, not one dependent round trip per 32 blocks).
constexpr int kLoads = 8;
// f(v0, v1, b) in steps of 32 blocks: b = lane, lane + 32, ... ascending per lane, with v0 =
// r0[b] and (TWO) v1 = r1[b]; b = -1 and zeros past c. Every lane runs every step, so f may
// use warp-wide collectives; steps wholly past c are not run (each caller's f does nothing
// there). f's code is one copy, not kLoads: the values move down a register a step (7 moves
// an element, 14 with two rows) instead of an unrolled body per load. warp_row_kernel's SASS,
// far beyond the instruction cache, took 254 -> 158 KB with this and warp_select not inlined,
// and its routing rows 10 % less time (kernels/cuda/NOTES.md, fiftieth session).
template <bool TWO, typename F>
__device__ __forceinline__ void for_rows(const float* r0, const float* r1, int64_t c, int lane, F&& f) {
  for (int64_t b0 = 0; b0 < c; b0 += 32 * kLoads) {
    float v0[kLoads], v1[kLoads];
#pragma unroll
    for (int x = 0; x < kLoads; ++x) {
      const int64_t b = b0 + x * 32 + lane;
      v0[x] = b < c ? r0[b] : 0.f;
      v1[x] = TWO && b < c ? r1[b] : 0.f;
    }
#pragma unroll 1
    for (int x = 0; x < kLoads && b0 + x * 32 < c; ++x) {
      const int64_t b = b0 + x * 32 + lane;
      f(v0[0], v1[0], b < c ? b : int64_t{-1});
#pragma unroll
      for (int y = 0; y + 1 < kLoads; ++y) {
        v0[y] = v0[y + 1];
        v1[y] = v1[y + 1];
      }
    }
  }
}
// f(v, b) for one row, as for_rows.
template <typename F>
__device__ __forceinline__ void for_row(const float* row, int64_t c, int lane, F&& f) {
  for_rows<false>(row, nullptr, c, lane, [&](float v, float, int64_t b) { f(v, b); });
}

// theta[u] for the lanes u < n_cls: the key of rank nu - 1 among the keys of blocks b < c of
// `row` (lane u holds its count nu, ascending in u, 1 <= nu <= c); nu == c gives 0 (every
// routable block; real keys are >= 1). Not inlined: the oracle and the gate rows share one copy.
template <int NC>
__device__ __noinline__ void warp_select(WarpRowSmemT<NC>& s, const float* row, int64_t c, bool recent, int n_cls,
                                         int nu, uint64_t* theta) {
  const int lane = threadIdx.x & 31;
  bool open = lane < n_cls && nu < c;
  if (lane < n_cls && nu >= c) theta[lane] = 0;
  if (!__any_sync(kFull, open)) {
    __syncwarp();
    return;
  }
  uint64_t kmax = 0, kmin = ~0ull;
  for_row(row, c, lane, [&](float x, int64_t b) {
    if (b < 0) return;
    const uint64_t k = sort_key(x, b, recent);
    kmax = k > kmax ? k : kmax;
    kmin = k < kmin ? k : kmin;
  });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t x = __shfl_xor_sync(kFull, kmax, o), y = __shfl_xor_sync(kFull, kmin, o);
    kmax = x > kmax ? x : kmax;
    kmin = y < kmin ? y : kmin;
  }
  // c >= 2 here (1 <= nu < c) and keys are unique: kmax != kmin.
  const int hb = 63 - __clzll(static_cast<long long>(kmax ^ kmin));  // highest bit the keys differ in
  int w = min(8, hb + 1), sh = hb + 1 - w;
  uint64_t pre = kmax >> (sh + w);  // the bits above the digit: the same for every key
  int q = nu - 1;                   // the target's rank among the keys of its prefix
  for (;;) {
    // Open targets with equal prefixes share a histogram (prefixes never increase with u).
    const unsigned openm = __ballot_sync(kFull, open);
    if (!openm) break;
    const unsigned below = openm & lanemask_lt(lane);
    const int prevl = below ? 31 - __clz(below) : lane;
    const uint64_t ppre = __shfl_sync(kFull, pre, prevl);
    const bool leader = open && (prevl == lane || ppre != pre);
    const unsigned lm = __ballot_sync(kFull, leader);
    const int ng = __popc(lm), gid = __popc(lm & (lanemask_lt(lane) | (1u << lane))) - 1;
    if (leader) s.u.sel.gpre[gid] = pre;
    for (int x = lane; x < ng * 128; x += 32) (&s.u.sel.hist[0][0])[x] = 0u;
    __syncwarp();
    const int dmask = (1 << w) - 1, up = sh + w;
    const uint64_t gmax = s.u.sel.gpre[0], gmin = s.u.sel.gpre[ng - 1];
    // Blocks past c and keys outside the open prefixes have no bin (after the first digit most
    // keys: the range test settles them without the search).
    for_row(row, c, lane, [&](float v, int64_t b) {
      int bin = -1;
      const uint64_t k = b >= 0 ? sort_key(v, b, recent) : 0ull, hi = k >> up;
      if (b >= 0 && hi <= gmax && hi >= gmin) {
        int lo = 0, hi_g = ng;
        while (lo < hi_g) {  // gpre descending
          const int mid = (lo + hi_g) >> 1;
          const uint64_t gv = s.u.sel.gpre[mid];
          if (gv == hi) {
            bin = mid * 256 + (static_cast<int>(k >> sh) & dmask);
            break;
          }
          if (gv > hi)
            lo = mid + 1;
          else
            hi_g = mid;
        }
      }
      // One atomic per distinct bin of the step (a row's keys often crowd a few bins).
      if (!__any_sync(kFull, bin >= 0)) return;
      const unsigned same = __match_any_sync(kFull, bin);
      if (bin >= 0 && lane == __ffs(same) - 1)
        atomicAdd(&(&s.u.sel.hist[0][0])[bin >> 1], static_cast<uint32_t>(__popc(same)) << ((bin & 1) * 16));
    });
    __syncwarp();
    if (open) {
      // From the top digit down: 16 bins (8 words) per step, then bin by bin in the step that
      // holds rank q (a group's counts sum to <= c < 2^16: the halves cannot carry). Words past
      // the digit's 2^w bins are zero.
      const uint32_t* h = s.u.sel.hist[gid];
      int cum = 0, dsel = 0, cnt = 0, top = (dmask >> 1) | 7;  // the step's highest word
      for (; top >= 7; top -= 8) {
        uint32_t wsum = 0;
#pragma unroll
        for (int x = 0; x < 8; ++x) wsum += h[top - x];
        const int n = static_cast<int>((wsum & 0xffffu) + (wsum >> 16));
        if (q < cum + n) break;
        cum += n;
      }
      for (int dg = 2 * top + 1; dg >= 0; --dg) {
        const uint32_t word = h[dg >> 1];
        cnt = static_cast<int>((dg & 1) ? word >> 16 : word & 0xffffu);
        if (q < cum + cnt) {
          dsel = dg;
          break;
        }
        cum += cnt;
      }
      q -= cum;
      pre = (pre << w) | static_cast<uint64_t>(dsel);
      if (q + 1 == cnt) {  // the target is its bin's last key: the bin's keys are all picks
        open = false;
        theta[lane] = pre << sh;
      }
    }
    __syncwarp();
    if (sh == 0) break;  // unreachable with targets open: a full key's bin holds one key
    w = min(8, sh);
    sh -= w;
  }
  __syncwarp();
}

// The class of key k under theta: the first u with k >= theta[u] (n_cls: none). theta does not
// increase with u (the counts ascend), so most keys of a row, below every threshold (no
// configuration picks them), are settled by one comparison; a picked key's scan stops at the
// last class at the latest.
__device__ __forceinline__ int key_class(uint64_t k, const uint64_t* theta, int n_cls) {
  if (n_cls == 0 || k < theta[n_cls - 1]) return n_cls;
  int u = 0;
  while (k < theta[u]) ++u;
  return u;
}

// Small counts (every class's count nu <= kSmallSelect, as for top-k budgets of a few blocks):
// one pass over the row keeps each lane's kSmallSelect largest keys; the warp then draws the
// row's n_pick (the largest nu) largest keys from those lists one rank at a time: lane r <
// n_pick returns the key of rank r, the others 0. theta as warp_select's (keys are unique: the
// same keys). f(x, b) is called for every routable block in for_row's order, so sums it keeps
// per lane (the SNR pairs) have the bits of a pass of their own.
constexpr int kSmallSelect = 8;
template <typename F>
__device__ uint64_t warp_pick_small(const float* row, int64_t c, bool recent, int n_cls, int nu, int n_pick,
                                    uint64_t* theta, bool pass, F&& f) {
  const int lane = threadIdx.x & 31;
  uint64_t tk[kSmallSelect];  // the lane's largest keys, descending; 0 is below every real key
#pragma unroll
  for (int j = 0; j < kSmallSelect; ++j) tk[j] = 0;
  uint64_t mine = 0;
  if (pass)
    for_row(row, c, lane, [&](float x, int64_t b) {
      if (b < 0) return;
      f(x, b);
      const uint64_t k = sort_key(x, b, recent);
      if (k <= tk[kSmallSelect - 1]) return;
      tk[kSmallSelect - 1] = k;
#pragma unroll
      for (int j = kSmallSelect - 1; j > 0; --j)
        if (tk[j] > tk[j - 1]) {
          const uint64_t y = tk[j];
          tk[j] = tk[j - 1];
          tk[j - 1] = y;
        }
    });
  // Round r: every lane offers its largest remaining key; the largest is the row's rank r.
#pragma unroll
  for (int r = 0; r < kSmallSelect; ++r) {
    if (r >= n_pick) break;  // warp-uniform
    uint64_t m = tk[0];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const uint64_t y = __shfl_xor_sync(kFull, m, o);
      m = y > m ? y : m;
    }
    if (m != 0 && tk[0] == m) {
#pragma unroll
      for (int j = 0; j + 1 < kSmallSelect; ++j) tk[j] = tk[j + 1];
      tk[kSmallSelect - 1] = 0;
    }
    if (lane == r) mine = m;
  }
  // Lane u < n_cls: the key of rank nu - 1; nu == c: every routable block (real keys are >= 1).
  const uint64_t th = __shfl_sync(kFull, mine, lane < n_cls && nu < c ? nu - 1 : 0);
  if (lane < n_cls) theta[lane] = nu < c ? th : 0;
  __syncwarp();
  return mine;
}

// The picks (lane r < n_pick holds the key of rank r) in ascending block order, into the
// warp's shared `out` (WarpRowSmem::picks: as 8 registers live across the row code they cost
// warp_row_kernel 40 bytes of spill): out[r] = block << 4 | class under theta, INT_MAX past n_pick.
constexpr int kPickClassBits = 4;
static_assert(kMaxCfgPerBlock <= (1 << kPickClassBits), "a pick's class");
__device__ __forceinline__ void picks_by_block(uint64_t mine, int n_pick, bool recent, const uint64_t* theta,
                                               int n_cls, int* out) {
  int pbu[kSmallSelect];
#pragma unroll
  for (int r = 0; r < kSmallSelect; ++r) {
    const uint64_t k = __shfl_sync(kFull, mine, r);
    pbu[r] = r < n_pick ? key_block(k, recent) << kPickClassBits | key_class(k, theta, n_cls) : INT_MAX;
  }
#pragma unroll
  for (int x = 0; x < kSmallSelect - 1; ++x)
#pragma unroll
    for (int r = 0; r + 1 < kSmallSelect - x; ++r) {
      const int lo = min(pbu[r], pbu[r + 1]), hi = max(pbu[r], pbu[r + 1]);
      pbu[r] = lo;
      pbu[r + 1] = hi;
    }
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int r = 0; r < kSmallSelect; ++r) out[r] = pbu[r];
  __syncwarp();
}

// Inclusive prefix over the lanes (classes) of x; callers pass 0 from the lanes past their classes.
template <typename V>
__device__ __forceinline__ V lane_prefix(V x, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V y = __shfl_up_sync(kFull, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

// MINB CTAs (4 MINB warps) per SM. Room for NC = 16 configurations takes ~42 KB a CTA, so 5 CTAs
// (96 registers, 8 bytes of spill; 161 uncapped): at 4 (128 registers, no spill) ncu found a
// B = 16 launch latency bound (25 % occupancy, 8.7 cycles per issued instruction), and 5 took 8
// B6 heads' rows 0.79 -> 0.72 s. NC = 8 takes ~21 KB a CTA, so registers alone cap MINB: at 8
// (64 registers, then ~1 KB of spill loads a thread, now ~0.5 KB) the same rows took 0.73 ->
// 0.62 s (analyze_gpu.cu run_rows; kernels/cuda/NOTES.md, forty-eighth session).
template <int WARPS, int NC, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) warp_row_kernel(RowArgs a, int64_t nq) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  WarpRowSmemT<NC>& s = reinterpret_cast<WarpRowSmemT<NC>*>(smem_raw)[warp];
  const int64_t i = static_cast<int64_t>(blockIdx.x) * WARPS + warp;
  if (i >= nq) return;  // whole warps: no block barriers below
  const int64_t t = a.t0 + i, B = a.B, c = t / B, T = a.T;
  const float* mrow = a.mass + i * a.nb;
  const int32_t* top = a.top + i * a.n_top;
  const unsigned lt = lanemask_lt(lane);

  // The top list: keys in the current block; the signal key j* (signal_key).
  int ncur = 0, nval = 0;
  for (int x = lane; x < a.top_n; x += 32) {
    const int32_t j = top[x];
    if (j < 0) continue;
    if (j / B == c)
      ++ncur;
    else
      ++nval;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ncur += __shfl_xor_sync(kFull, ncur, o);
    nval += __shfl_xor_sync(kFull, nval, o);
  }
  const int n_top_cur = ncur, n_top_all = ncur + nval;
  const int64_t j_star = __shfl_sync(kFull, lane == 0 ? signal_key(a, top, i, c) : int64_t{-1}, 0);
  const int64_t b_star = j_star >= 0 ? j_star / B : -1;
  const int32_t planted_b = planted_block(a, t, c);

  // Lane jc < n_cfg: configuration jc's count, its class u (-1: picks nothing), its band.
  const int n_cfg = a.n_cfg;
  const int K = lane < n_cfg ? a.top_k[lane] : 1, kp = lane < n_cfg ? a.k_prev[lane] : 0;
  const int np = static_cast<int>(min(static_cast<int64_t>(K - 1), c));
  bool first = np > 0;
  for (int x = 0; x < n_cfg; ++x) {
    const int npx = __shfl_sync(kFull, np, x);
    if (x < lane && npx == np) first = false;
  }
  int ucfg = 0;
  for (int x = 0; x < n_cfg; ++x) {
    const int npx = __shfl_sync(kFull, np, x);
    const bool fx = __shfl_sync(kFull, first, x);
    if (fx && npx < np) ++ucfg;
  }
  if (np <= 0) ucfg = -1;
  const int n_cls = __popc(__ballot_sync(kFull, first));
  // Lane u < n_cls: the class's count n_u.
  int nu = 0;
  for (int x = 0; x < n_cfg; ++x) {
    const int npx = __shfl_sync(kFull, np, x), ux = __shfl_sync(kFull, ucfg, x);
    const bool fx = __shfl_sync(kFull, first, x);
    if (fx && ux == lane) nu = npx;
  }
  const int lo = kp > 0 ? static_cast<int>(min(static_cast<int64_t>(kp - 1), c)) : 0;
  if (lane < NC) s.owner[lane] = -1;
  __syncwarp();
  if (lane < n_cfg && ucfg >= 0 && lo < np) s.owner[ucfg] = lane;
  __syncwarp();
  const bool choice = c > K - 1;

  // Per-configuration sums from per-class sums: lane u < n_cls holds class u's column sum; the
  // inclusive prefix over classes, read at each configuration's class.
  const auto cfg_value = [&](double col) -> double {
    const double p = lane_prefix(lane < n_cls ? col : 0.0, lane);
    const double v = __shfl_sync(kFull, p, ucfg < 0 ? 0 : ucfg);
    return ucfg < 0 ? 0.0 : v;
  };
  const auto cfg_count = [&](int col) -> int {
    const int p = lane_prefix(lane < n_cls ? col : 0, lane);
    const int v = __shfl_sync(kFull, p, ucfg < 0 ? 0 : ucfg);
    return ucfg < 0 ? 0 : v;
  };
  // Lane u < n_cls: class u's sum over the lanes' columns, from column u on (rotated: the
  // lanes read different banks; a fixed order per class).
  const auto col_sum_d = [&](double (*m)[32]) -> double {
    double x = 0.0;
    if (lane < n_cls)
      for (int l = 0; l < 32; ++l) x += m[lane][(l + lane) & 31];
    return x;
  };
  const auto col_sum_i = [&](int (*m)[32]) -> int {
    int x = 0;
    if (lane < n_cls)
      for (int l = 0; l < 32; ++l) x += m[lane][(l + lane) & 31];
    return x;
  };
  // Top-list keys outside the current block per class of `row` under theta.
  const auto top_classes = [&](const float* row, const uint64_t* theta) -> int {
    if (lane < NC) s.tok[lane] = 0;
    __syncwarp();
    for (int x = lane; x < a.top_n; x += 32) {
      const int32_t j = top[x];
      if (j < 0 || j / B == c) continue;
      const int64_t b = j / B;
      const int u = key_class(sort_key(row[b], b, a.recent), theta, n_cls);
      if (u < n_cls) atomicAdd(&s.tok[u], 1);
    }
    __syncwarp();
    const int v = lane < n_cls ? s.tok[lane] : 0;
    __syncwarp();
    return cfg_count(v);
  };
  const auto write_metrics = [&](float* M, double cov, bool has_choice, double recall, int tok_hits) {
    if (lane < n_cfg) write_position_metrics(M, T, t, B, c, cov, np, has_choice, recall, tok_hits, n_top_all);
  };
  // Band rows of one router slot: lane jc's row (null: not written).
  const auto sel_row = [&](int slot) -> int32_t* {
    if (lane >= n_cfg || !a.sel[lane][slot]) return nullptr;
    return a.sel[lane][slot] + (t - a.sel_t0) * (K - kp);
  };
  const auto band_begin = [&]() {
    if (lane < NC) s.off[lane] = 0;
    __syncwarp();
  };
  // Block b (lane's, or -1) of class u into its owner's band.
  const auto band_put = [&](int32_t* row_of_lane, int64_t b, int u) {
    const int own = b >= 0 && u < n_cls ? s.owner[u] : -1;
    if (!__any_sync(kFull, own >= 0)) return;  // most steps of a small budget: no block to write
    const unsigned m = __match_any_sync(kFull, own);
    int32_t* const dst = reinterpret_cast<int32_t*>(
        __shfl_sync(kFull, reinterpret_cast<unsigned long long>(row_of_lane), own < 0 ? 0 : own));
    if (own >= 0 && dst) dst[s.off[own] + __popc(m & lt)] = static_cast<int32_t>(b);
    __syncwarp();
    if (own >= 0 && lane == __ffs(m) - 1) s.off[own] += __popc(m);
    __syncwarp();
  };
  // The band's tail: the current block for the smallest k, then -1 to k - k_prev entries.
  const auto band_end = [&](int32_t* row_of_lane) {
    for (int jc = 0; jc < n_cfg; ++jc) {
      int32_t* const dst = reinterpret_cast<int32_t*>(
          __shfl_sync(kFull, reinterpret_cast<unsigned long long>(row_of_lane), jc));
      const int kj = __shfl_sync(kFull, K - kp, jc), kpj = __shfl_sync(kFull, kp, jc);
      if (!dst) continue;
      int x = s.off[jc];
      if (kpj == 0) {
        if (lane == 0) dst[x] = static_cast<int32_t>(c);
        ++x;
      }
      for (int y = x + lane; y < kj; y += 32) dst[y] = -1;
    }
    __syncwarp();
  };

  // Small counts (warp_pick_small): each row is read once, and the per-lane sums and the bands
  // take the picks from picks_by_block's list, in the order a pass over the row would add them.
  const int n_pick = __reduce_max_sync(kFull, lane < n_cls ? nu : 0);
  const bool small = n_pick <= kSmallSelect;
  static_assert(sizeof(s.picks) / sizeof(int) == kSmallSelect, "picks_by_block's list");
  const int* const pbu = s.picks;  // picks_by_block
  constexpr int kClassMask = (1 << kPickClassBits) - 1;
  // The picks into the bands (lane r writes pick r) and add(b, u) per pick by the lane of the
  // pass that would have visited it (b % 32), in ascending block order.
  const auto put_picks = [&](int32_t* row_of_lane, auto&& add) {
#pragma unroll
    for (int r = 0; r < kSmallSelect; ++r)
      if (pbu[r] != INT_MAX && ((pbu[r] >> kPickClassBits) & 31) == lane)
        add(pbu[r] >> kPickClassBits, pbu[r] & kClassMask);
    int mine = INT_MAX, pos = 0;
#pragma unroll
    for (int r = 0; r < kSmallSelect; ++r)
      if (r == lane) mine = pbu[r];
    const int my_b = mine >> kPickClassBits, my_u = mine == INT_MAX ? n_cls : mine & kClassMask;
#pragma unroll
    for (int r = 0; r < kSmallSelect; ++r)
      pos += r < lane && pbu[r] != INT_MAX && (pbu[r] & kClassMask) == my_u ? 1 : 0;
    const int own = mine != INT_MAX && my_u < n_cls ? s.owner[my_u] : -1;
    int32_t* const dst = reinterpret_cast<int32_t*>(
        __shfl_sync(kFull, reinterpret_cast<unsigned long long>(row_of_lane), own < 0 ? 0 : own));
    if (own >= 0 && dst) dst[pos] = my_b;
    if (own >= 0) atomicAdd(&s.off[own], 1);
    __syncwarp();
  };

  // ---- The oracle: exact block masses.
  if (small) {
    const uint64_t mine = warp_pick_small(mrow, c, a.recent, n_cls, nu, n_pick, s.theta_o, n_pick > 0,
                                          [](float, int64_t) {});
    picks_by_block(mine, n_pick, a.recent, s.theta_o, n_cls, s.picks);
  } else {
    warp_select(s, mrow, c, a.recent, n_cls, nu, s.theta_o);
  }
  {
    const int tok = top_classes(mrow, s.theta_o);
    int32_t* const srow_o = a.metric[lane < n_cfg ? lane : 0][0] ? sel_row(0) : nullptr;
    band_begin();
    for (int l = 0; l < NC; ++l) s.u.acc.cov_o[l][lane] = 0.0;
    __syncwarp();
    if (small) {
      put_picks(srow_o, [&](int b, int u) { s.u.acc.cov_o[u][lane] += static_cast<double>(mrow[b]); });
    } else {
      for_row(mrow, c, lane, [&](float m, int64_t b) {  // band_put is warp-wide
        int u = n_cls;
        if (b >= 0) {
          u = key_class(sort_key(m, b, a.recent), s.theta_o, n_cls);
          if (u < n_cls) s.u.acc.cov_o[u][lane] += static_cast<double>(m);
        }
        band_put(srow_o, b, u);
      });
    }
    __syncwarp();
    const double covc = cfg_value(col_sum_d(s.u.acc.cov_o)) + static_cast<double>(mrow[c]);
    if (lane < n_cfg) {
      a.oracle_cov[lane][t] = static_cast<float>(covc);
      if (a.metric[lane][0]) {
        write_metrics(a.metric[lane][0], covc, choice, np > 0 ? 1.0 : static_cast<double>(quiet_nan()), tok + n_top_cur);
        if (choice && planted_b >= 0) {
          const int up = key_class(sort_key(mrow[planted_b], planted_b, a.recent), s.theta_o, n_cls);
          if (ucfg >= 0 && up <= ucfg) atomicAdd(&a.planted_hits[a.cfg_index[lane] * kSlots], 1ull);
        }
      }
    }
    band_end(srow_o);
  }

  // ---- The other routers, one score row each (all kRowFixed here).
  for (int si = 0; si < a.n_rows; ++si) {
    const int slot = 1 + si;
    const float* srow = a.scores[si] + i * a.nb;
    const int gi = a.row_gate[si];
    const bool snr = gi >= 0 && a.snr[gi] && c >= 2 && b_star >= 0;
    const float ss = snr ? srow[b_star] : 0.f;
    const uint64_t kstar = snr ? sort_key(ss, b_star, a.recent) : 0ull;
    PairSums p{0.0, 0.0, 0};
    int above = 0;  // keys above b*'s
    // SNR pairs D = s(b*) - s(b) of one routable block (lane's, pass order).
    const auto snr_pair = [&](float x, int64_t b, uint64_t kg) {
      if (!snr || b == b_star) return;
      const double dd = static_cast<double>(ss) - static_cast<double>(x);
      p.s += dd;
      p.s2 += dd * dd;
      p.neg += dd < 0 ? 1 : 0;
      above += kg > kstar ? 1 : 0;
    };
    if (small) {
      const uint64_t mine = warp_pick_small(srow, c, a.recent, n_cls, nu, n_pick, s.theta_g, n_pick > 0 || snr,
                                            [&](float x, int64_t b) { snr_pair(x, b, sort_key(x, b, a.recent)); });
      picks_by_block(mine, n_pick, a.recent, s.theta_g, n_cls, s.picks);
    } else {
      warp_select(s, srow, c, a.recent, n_cls, nu, s.theta_g);
    }
    const int tok = top_classes(srow, s.theta_g);
    int32_t* const rows_g = sel_row(slot);
    band_begin();
    for (int l = 0; l < NC; ++l) {
      s.u.acc.cov_g[l][lane] = 0.0;
      s.u.acc.hit[l][lane] = 0;
    }
    __syncwarp();
    // A pick of the router (class u < n_cls): its mass, and picked by both at level max(u, uo).
    const auto add_pick = [&](float m, int64_t b, int u) {
      s.u.acc.cov_g[u][lane] += static_cast<double>(m);
      const int uh = max(u, key_class(sort_key(m, b, a.recent), s.theta_o, n_cls));
      if (uh < n_cls) s.u.acc.hit[uh][lane] += 1;
    };
    if (small) {
      put_picks(rows_g, [&](int b, int u) { add_pick(mrow[b], b, u); });
    } else {
      for_rows<true>(mrow, srow, c, lane, [&](float m, float x, int64_t b) {  // band_put is warp-wide
        int u = n_cls;
        if (b >= 0) {
          const uint64_t kg = sort_key(x, b, a.recent);
          u = key_class(kg, s.theta_g, n_cls);
          if (u < n_cls) add_pick(m, b, u);
          snr_pair(x, b, kg);
        }
        band_put(rows_g, b, u);
      });
    }
    __syncwarp();
    const double covc = cfg_value(col_sum_d(s.u.acc.cov_g)) + static_cast<double>(mrow[c]);
    const int hits = cfg_count(col_sum_i(s.u.acc.hit));
    if (lane < n_cfg) {
      const double recall = np > 0 ? static_cast<double>(hits) / np : static_cast<double>(quiet_nan());
      write_metrics(a.metric[lane][slot], covc, choice, recall, tok + n_top_cur);
      if (choice && planted_b >= 0) {
        const int up = key_class(sort_key(srow[planted_b], planted_b, a.recent), s.theta_g, n_cls);
        if (ucfg >= 0 && up <= ucfg) atomicAdd(&a.planted_hits[a.cfg_index[lane] * kSlots + slot], 1ull);
      }
    }
    band_end(rows_g);
    if (gi < 0 || !a.snr[gi]) continue;
    // SNR probe of a gate (row_kernel's): pairs D = s(b*) - s(b), b*'s rank, the model's sums.
    SnrRow row{};
    if (snr) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        p.s += __shfl_xor_sync(kFull, p.s, o);
        p.s2 += __shfl_xor_sync(kFull, p.s2, o);
        p.neg += __shfl_xor_sync(kFull, p.neg, o);
        above += __shfl_xor_sync(kFull, above, o);
      }
      const double s_top = warp_dot(a.q + t * a.q_st, a.rkeys[gi] + j_star * a.rk_st, a.d, lane);
      const int rank = above + 1;
      if (lane == 0) row = snr_row(a, gi, i, c, b_star, p, s_top, rank);
      if (lane < n_cfg && c > K - 1 && rank <= K - 1)
        atomicAdd(&a.signal_hits[a.cfg_index[lane] * kMaxGates + gi], 1ull);
    }
    if (lane == 0) a.snr[gi][t] = row;
  }
}

}  // namespace moba::analysis::gpu
