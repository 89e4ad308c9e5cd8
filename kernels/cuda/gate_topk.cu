// CUDA fused gate scores + running top-k (kernels/gate_topk.h). No [n_tokens, n_blocks]
// score matrix exists anywhere.
//
// v2 (bf16 q16, per_head — the benchmarked path): a CTA of 8 warps owns 128 consecutive
// queries of one head; it walks the pooled keys in tiles of 32 blocks, staged in shared memory
// as bf16 hi + lo (kbar = hi + lo + O(2^-18 |kbar|)), and each warp scores its 16 queries on
// tensor cores (mma.sync m16n8k16, q is bf16-exact, two products per element: fp32-level
// scores, within the header's tie tolerance). Selection is warp-cooperative: per query a list
// of the best top_k - 1 (score, index) keys, sorted, in shared memory, and a threshold (the
// list's worst); a tile row costs one ballot against the threshold, and each candidate that
// beats it is inserted with shuffles (rank by ballot, shift by shfl_up).
// Keys are 64-bit: high word the score mapped to an order-preserving unsigned (NaN lowest,
// -0 = +0), low word the tie rule (index + 1 for `recent`, ~index for `older`); 0 = empty.
// v1 (every other input: fp32 / f16 q, `shared` GQA): each thread owns one query, scores a
// tile of 32 pooled keys at a time (fp32 FMA, channel order) and folds them straight into its
// own sorted list of the best top_k - 1 routable blocks (shared memory), ranked by (score,
// index) with the header's tie and NaN rules. Any scan order gives the same set, because the
// ranking is a strict total order.
#include "kernels/gate_topk.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mma.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

constexpr int kThreads = 128;    // queries per CTA
constexpr int kBlockTile = 32;   // pooled keys scored per step
constexpr int kMaxTopK = 129;    // list of top_k - 1 <= 128 entries per query
constexpr int kTileLd = kBlockTile + 4;  // padded kt row: 16-byte aligned, 4-way store conflicts

struct GateArgs {
  DevTensor q;                   // [n_q_heads, n_tokens, head_dim]
  const float* kbar;             // [n_kv_heads, n_blocks, head_dim]
  int64_t n_tokens, head_dim, block_size, n_blocks, n_q_heads, group;
  int top_k;
  bool recent, shared;
  int32_t* selected;             // [n_q_heads, n_tokens, top_k]
  float* selected_scores;        // same, optional
};

// a = (score sa, block ia) ranks strictly before b: NaN last, higher score, then the tie rule.
__device__ __forceinline__ bool ranks_before(float sa, int ia, float sb, int ib, bool recent) {
  const bool na = isnan(sa), nb = isnan(sb);
  if (na != nb) return nb;
  if (!na && sa != sb) return sa > sb;
  return recent ? ia > ib : ia < ib;
}

// grid (ceil(n_tokens / 128), n_routers); one thread per query position.
// dynamic smem: kt [DQ][kTileLd] fp32 (pooled-key tile, channel-major), then the per-thread lists
// ls [top_k - 1][128] fp32 and li [top_k - 1][128] int32 (column per thread: no conflicts).
template <int DQ>
__global__ void __launch_bounds__(kThreads) gate_topk_kernel(GateArgs a) {
  extern __shared__ float smem[];
  const int n_pick_max = a.top_k - 1;
  float* kt = smem;
  float* ls = smem + DQ * kTileLd;
  int* li = reinterpret_cast<int*>(ls + n_pick_max * kThreads);
  const int tid = threadIdx.x;
  const int64_t router = blockIdx.y;
  const int64_t t = int64_t{blockIdx.x} * kThreads + tid;
  const bool valid = t < a.n_tokens;
  const int64_t c = valid ? t / a.block_size : -1;
  const int64_t h_first = a.shared ? router * a.group : router;
  const int n_sum = a.shared ? static_cast<int>(a.group) : 1;
  const int64_t kv = a.shared ? router : router / a.group;
  const int n_pick = valid ? static_cast<int>(min(int64_t{n_pick_max}, c)) : 0;

  float q[DQ];
  auto load_q = [&](int64_t h) {
#pragma unroll
    for (int ch = 0; ch < DQ; ++ch) q[ch] = (valid && ch < a.head_dim) ? a.q.load(h, t, ch) : 0.0f;
  };
  if (n_sum == 1) load_q(h_first);

  int cnt = 0;
  float worst_s = 0.0f;
  int worst_i = -1;
  float cur_score = __int_as_float(0x7fc00000);
  const int64_t t_last = min(a.n_tokens, int64_t{blockIdx.x + 1} * kThreads) - 1;
  const int64_t c_max = t_last / a.block_size;
  for (int64_t b0 = 0; b0 <= c_max; b0 += kBlockTile) {
    __syncthreads();
    for (int i = tid; i < kBlockTile * DQ; i += kThreads) {  // coalesced along channels
      const int ch = i % DQ, bb = i / DQ;
      const int64_t b = b0 + bb;
      kt[ch * kTileLd + bb] =
          (b < a.n_blocks && ch < a.head_dim) ? a.kbar[(kv * a.n_blocks + b) * a.head_dim + ch] : 0.0f;
    }
    __syncthreads();
    if (!valid || b0 > c) continue;
    float s[kBlockTile];
    for (int g = 0; g < n_sum; ++g) {
      if (n_sum > 1) load_q(h_first + g);
      float sg[kBlockTile];
#pragma unroll
      for (int bb = 0; bb < kBlockTile; ++bb) sg[bb] = 0.0f;
#pragma unroll
      for (int ch = 0; ch < DQ; ++ch) {
        const float qc = q[ch];
        const float4* row = reinterpret_cast<const float4*>(kt + ch * kTileLd);
#pragma unroll
        for (int v = 0; v < kBlockTile / 4; ++v) {
          const float4 k4 = row[v];
          sg[4 * v + 0] = fmaf(qc, k4.x, sg[4 * v + 0]);
          sg[4 * v + 1] = fmaf(qc, k4.y, sg[4 * v + 1]);
          sg[4 * v + 2] = fmaf(qc, k4.z, sg[4 * v + 2]);
          sg[4 * v + 3] = fmaf(qc, k4.w, sg[4 * v + 3]);
        }
      }
#pragma unroll
      for (int bb = 0; bb < kBlockTile; ++bb) s[bb] = g == 0 ? sg[bb] : s[bb] + sg[bb];
    }
#pragma unroll
    for (int bb = 0; bb < kBlockTile; ++bb) {
      const int b = static_cast<int>(b0 + bb);
      const float sv = s[bb];
      if (b == c) cur_score = sv;
      if (b >= c || n_pick == 0) continue;
      if (cnt == n_pick && !ranks_before(sv, b, worst_s, worst_i, a.recent)) continue;
      int pos = cnt < n_pick ? cnt++ : cnt - 1;
      while (pos > 0) {
        const float ps = ls[(pos - 1) * kThreads + tid];
        const int pi = li[(pos - 1) * kThreads + tid];
        if (!ranks_before(sv, b, ps, pi, a.recent)) break;
        ls[pos * kThreads + tid] = ps;
        li[pos * kThreads + tid] = pi;
        --pos;
      }
      ls[pos * kThreads + tid] = sv;
      li[pos * kThreads + tid] = b;
      worst_s = ls[(cnt - 1) * kThreads + tid];
      worst_i = li[(cnt - 1) * kThreads + tid];
    }
  }
  if (!valid) return;
  // Ascending block order (insertion sort of <= 128 entries).
  for (int i = 1; i < cnt; ++i) {
    const int bi = li[i * kThreads + tid];
    const float si = ls[i * kThreads + tid];
    int j = i;
    while (j > 0 && li[(j - 1) * kThreads + tid] > bi) {
      li[j * kThreads + tid] = li[(j - 1) * kThreads + tid];
      ls[j * kThreads + tid] = ls[(j - 1) * kThreads + tid];
      --j;
    }
    li[j * kThreads + tid] = bi;
    ls[j * kThreads + tid] = si;
  }
  const float nan = __int_as_float(0x7fc00000);
  for (int g = 0; g < n_sum; ++g) {
    const int64_t off = ((h_first + g) * a.n_tokens + t) * a.top_k;
    for (int j = 0; j < a.top_k; ++j) {
      int32_t b = -1;
      float sv = nan;
      if (j < cnt) {
        b = li[j * kThreads + tid];
        sv = ls[j * kThreads + tid];
      } else if (j == cnt) {
        b = static_cast<int32_t>(c);
        sv = cur_score;
      }
      a.selected[off + j] = b;
      if (a.selected_scores) a.selected_scores[off + j] = sv;
    }
  }
}

template <int DQ>
const char* launch_gate_topk(const GateArgs& a, int64_t n_routers, cudaStream_t stream) {
  const size_t smem = sizeof(float) * DQ * kTileLd + size_t{8} * (a.top_k - 1) * kThreads;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_kernel<DQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  const int64_t n_tiles = (a.n_tokens + kThreads - 1) / kThreads;
  gate_topk_kernel<DQ><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_routers)),
                         kThreads, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}


// ---------------------------------------------------------------- v2: tensor-core scores
constexpr int kW2 = 8;               // warps per CTA, 16 queries each
constexpr int kQ2 = kW2 * 16;        // queries per CTA
constexpr int kTB2 = 32;             // pooled keys per tile
constexpr int kSLd = kTB2 + 9;       // score row stride (floats, odd): conflict-free per-thread rows

struct GateArgs2 {
  const uint16_t* q;             // bf16 [n_q_heads, n_tokens, head_dim]
  int64_t q_sh, q_st;
  const float* kbar;             // [n_kv_heads, n_blocks, head_dim], 16-byte aligned rows
  int64_t n_tokens, head_dim, block_size, n_blocks, group;
  int top_k, m;                  // m = top_k - 1 picks
  bool recent;
  int32_t* selected;
  float* selected_scores;
};

using Key = unsigned long long;

__device__ __forceinline__ Key make_key(float s, int b, bool recent) {
  const uint32_t u = s == 0.0f ? 0u : __float_as_uint(s);  // -0 ranks as +0
  const uint32_t hi = isnan(s) ? 0u : ((u & 0x80000000u) ? ~u : (u | 0x80000000u));
  const uint32_t lo = recent ? static_cast<uint32_t>(b) + 1u : ~static_cast<uint32_t>(b);
  return (static_cast<Key>(hi) << 32) | lo;
}
__device__ __forceinline__ float key_score(Key k) {
  const uint32_t hi = static_cast<uint32_t>(k >> 32);
  if (hi == 0u) return __int_as_float(0x7fc00000);
  return __uint_as_float((hi & 0x80000000u) ? (hi & 0x7fffffffu) : ~hi);
}
__device__ __forceinline__ int key_index(Key k, bool recent) {
  const uint32_t lo = static_cast<uint32_t>(k);
  return recent ? static_cast<int>(lo - 1u) : static_cast<int>(~lo);
}

// 32-bit order key of a score alone (NaN 1, empty 0; -0 = +0): for per-thread lists, whose
// scan order (ascending block) settles ties: `recent` ranks a later equal score first.
__device__ __forceinline__ uint32_t key32(float s) {
  const uint32_t u = s == 0.0f ? 0u : __float_as_uint(s);
  return isnan(s) ? 1u : ((u & 0x80000000u) ? ~u : (u | 0x80000000u));
}

__device__ __forceinline__ uint32_t ldg_u32(const uint16_t* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}

// grid (ceil(n_tokens / 128), n_q_heads), 256 threads. J = list slots per lane (32 J >= m).
// dynamic smem: lists [8][16][32 J] Key, thr [8][16] Key, sc [8][16][kSLd] fp32, cur [8][16]
// fp32, kh / kl [32][D + 8] bf16 (the tile's pooled keys, hi and lo parts).
// RC: the tie rule at compile time for the MC path (1 recent, 0 older; -1: runtime, warp path).
// MC > 0 (top_k - 1 <= MC <= 16, J = 1): selection per thread instead: thread (row r = lane % 16,
// half = lane / 16) keeps the best MC (score, block) of the half-tiles [16 half, 16 half + 16) of
// every tile in registers (branch-free sorted insertion behind a threshold test), and the two
// halves of a row are merged into the warp path's list format at the end.
template <int D, int J, int MC, int RC>
__global__ void __launch_bounds__(kW2 * 32, 2) gate_topk_mma_kernel(GateArgs2 a) {
  using M = Mma<__nv_bfloat16>;
  constexpr int LP = 32 * J;
  constexpr int KLD = D + 8;
  constexpr int NPRE = kTB2 * D / 4 / (kW2 * 32);  // float4 per thread per tile
  constexpr unsigned kFull = 0xffffffffu;
  extern __shared__ uint4 smem_raw[];
  Key* lists = reinterpret_cast<Key*>(smem_raw);
  Key* thr_all = lists + kW2 * 16 * LP;
  float* sc_all = reinterpret_cast<float*>(thr_all + kW2 * 16);
  float* cur_all = sc_all + kW2 * 16 * kSLd;
  uint16_t* kh = reinterpret_cast<uint16_t*>(cur_all + kW2 * 16);
  uint16_t* kl = kh + kTB2 * KLD;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  Key* list = lists + warp * 16 * LP;
  Key* thr = thr_all + warp * 16;
  float* sc = sc_all + warp * 16 * kSLd;
  float* cur = cur_all + warp * 16;

  const int64_t h = blockIdx.y, kv = h / a.group, d = a.head_dim;
  const int64_t t_cta = int64_t{blockIdx.x} * kQ2, t_w = t_cta + warp * 16;
  const int64_t c_max = (min(a.n_tokens, t_cta + kQ2) - 1) / a.block_size;
  const int n_rows = static_cast<int>(max(int64_t{0}, min(int64_t{16}, a.n_tokens - t_w)));
  const int64_t c_wmax = n_rows > 0 ? (t_w + n_rows - 1) / a.block_size : -1;
  const bool recent = a.recent;
  const int m = a.m;
  const int last_j = (max(m, 1) - 1) / 32, last_lane = (max(m, 1) - 1) % 32;  // the list's worst slot
  // Lane r < 16: current block of row t_w + r (-1 past n_tokens); rows read it by shuffle.
  const int c_lane = lane < n_rows ? static_cast<int>((t_w + lane) / a.block_size) : -1;
  // MC path: this thread's row, half and current block; its list (best first, 0 = empty).
  const int my_r = lane & 15, my_half = lane >> 4;
  const int my_c = __shfl_sync(kFull, c_lane, my_r);
  uint32_t lk[MC > 0 ? MC : 1];
  int li[MC > 0 ? MC : 1];
#pragma unroll
  for (int i = 0; i < (MC > 0 ? MC : 1); ++i) {
    lk[i] = 0u;
    li[i] = 0;
  }

  for (int i = lane; i < 16 * LP; i += 32) list[i] = 0ull;
  if (lane < 16) {
    thr[lane] = 0ull;
    cur[lane] = __int_as_float(0x7fc00000);
  }

  // Q fragments of rows t_w + g and t_w + g + 8 (zero past n_tokens / head_dim).
  uint32_t qa[D / 16][4];
  {
    const int64_t t0 = t_w + g, t1 = t_w + g + 8;
    const uint16_t* q0 = t0 < a.n_tokens ? a.q + h * a.q_sh + t0 * a.q_st : nullptr;
    const uint16_t* q1 = t1 < a.n_tokens ? a.q + h * a.q_sh + t1 * a.q_st : nullptr;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c0 = kk * 16 + 2 * qd, c1 = c0 + 8;
      qa[kk][0] = (q0 && c0 < d) ? ldg_u32(q0 + c0) : 0u;
      qa[kk][1] = (q1 && c0 < d) ? ldg_u32(q1 + c0) : 0u;
      qa[kk][2] = (q0 && c1 < d) ? ldg_u32(q0 + c1) : 0u;
      qa[kk][3] = (q1 && c1 < d) ? ldg_u32(q1 + c1) : 0u;
    }
  }

  float4 pre[NPRE];
  auto fetch = [&](int64_t b0) {
#pragma unroll
    for (int r = 0; r < NPRE; ++r) {
      const int i = tid + r * kW2 * 32;
      const int bb = i / (D / 4), c4 = (i % (D / 4)) * 4;
      const int64_t b = b0 + bb;
      pre[r] = (b < a.n_blocks && c4 < d)
                   ? __ldg(reinterpret_cast<const float4*>(a.kbar + (kv * a.n_blocks + b) * d + c4))
                   : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  fetch(0);

  for (int64_t b0 = 0; b0 <= c_max; b0 += kTB2) {
    __syncthreads();  // previous tile consumed
#pragma unroll
    for (int r = 0; r < NPRE; ++r) {
      const int i = tid + r * kW2 * 32;
      const int bb = i / (D / 4), c4 = (i % (D / 4)) * 4;
      const float x[4] = {pre[r].x, pre[r].y, pre[r].z, pre[r].w};
      uint16_t hv[4], lv[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const __nv_bfloat16 hb = __float2bfloat16_rn(x[e]);
        const float rest = isfinite(x[e]) ? x[e] - __bfloat162float(hb) : 0.0f;
        hv[e] = __bfloat16_as_ushort(hb);
        lv[e] = __bfloat16_as_ushort(__float2bfloat16_rn(rest));
      }
      *reinterpret_cast<uint2*>(kh + bb * KLD + c4) =
          make_uint2(hv[0] | (uint32_t{hv[1]} << 16), hv[2] | (uint32_t{hv[3]} << 16));
      *reinterpret_cast<uint2*>(kl + bb * KLD + c4) =
          make_uint2(lv[0] | (uint32_t{lv[1]} << 16), lv[2] | (uint32_t{lv[3]} << 16));
    }
    __syncthreads();
    if (b0 + kTB2 <= c_max) fetch(b0 + kTB2);  // next tile's loads overlap this tile's work
    if (b0 > c_wmax) continue;                   // warp-uniform: all its queries are earlier

    // Scores [16 queries x 32 blocks]: hi and lo products into one fp32 accumulator.
#pragma unroll
    for (int nt = 0; nt < kTB2 / 8; ++nt) {
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      const uint16_t* hrow = kh + (nt * 8 + g) * KLD + 2 * qd;
      const uint16_t* lrow = kl + (nt * 8 + g) * KLD + 2 * qd;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        M::run(acc, qa[kk], *reinterpret_cast<const uint32_t*>(lrow + kk * 16),
               *reinterpret_cast<const uint32_t*>(lrow + kk * 16 + 8));
        M::run(acc, qa[kk], *reinterpret_cast<const uint32_t*>(hrow + kk * 16),
               *reinterpret_cast<const uint32_t*>(hrow + kk * 16 + 8));
      }
      sc[g * kSLd + nt * 8 + 2 * qd] = acc[0];
      sc[g * kSLd + nt * 8 + 2 * qd + 1] = acc[1];
      sc[(g + 8) * kSLd + nt * 8 + 2 * qd] = acc[2];
      sc[(g + 8) * kSLd + nt * 8 + 2 * qd + 1] = acc[3];
    }
    __syncwarp();

    if constexpr (MC > 0) {
      if (b0 <= my_c) {
        const int base = static_cast<int>(b0) + my_half * 16;
        const float* srow = sc + my_r * kSLd + my_half * 16;
        // `before(x, y)`: x (seen later, so the larger block) ranks before y.
        auto before = [](uint32_t x, uint32_t y) { return RC == 1 ? x >= y : x > y; };
        // Candidates above the threshold at the tile's start (routable blocks only) ...
        unsigned cmask = 0;
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          const int bb = base + i;
          if (bb == my_c) cur[my_r] = srow[i];
          if (bb < my_c && before(key32(srow[i]), lk[MC - 1])) cmask |= 1u << i;
        }
        // ... then each in block order against the current threshold: the warp runs the
        // largest per-lane count, not every step where some lane inserts.
        while (cmask) {
          const int i = __ffs(cmask) - 1;
          cmask &= cmask - 1;
          const uint32_t x = key32(srow[i]);
          if (!before(x, lk[MC - 1])) continue;
          bool here[MC];
#pragma unroll
          for (int j = 0; j < MC; ++j) here[j] = before(x, lk[j]);
          // Sorted insertion from the bottom (lk[j - 1] is read before it changes).
#pragma unroll
          for (int j = MC - 1; j > 0; --j) {
            lk[j] = here[j - 1] ? lk[j - 1] : (here[j] ? x : lk[j]);
            li[j] = here[j - 1] ? li[j - 1] : (here[j] ? base + i : li[j]);
          }
          lk[0] = here[0] ? x : lk[0];
          li[0] = here[0] ? base + i : li[0];
        }
      }
      __syncwarp();  // sc rewritten by the next tile
      continue;
    }
    // Selection; lane = block b0 + lane. Pass 1 (16 independent rows, unrolled): record the
    // current block's score and flag the rows with a candidate above their threshold.
    const int b = static_cast<int>(b0) + lane;
    unsigned rows_hit = 0;
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int c = __shfl_sync(kFull, c_lane, r);
      if (b0 > c) continue;  // uniform (c = -1 past n_tokens)
      const float s = sc[r * kSLd + lane];
      if (b == c) cur[r] = s;
      if (m > 0 && __ballot_sync(kFull, (b < c ? make_key(s, b, recent) : 0ull) > thr[r])) rows_hit |= 1u << r;
    }
    // Pass 2: fold each flagged row's candidates into its sorted list: one at a time, or,
    // when there are many (the first tiles), as a batch (bitonic sort + merge).
    while (rows_hit) {
      const int r = __ffs(rows_hit) - 1;
      rows_hit &= rows_hit - 1;
      const int c = __shfl_sync(kFull, c_lane, r);
      const Key key = b < c ? make_key(sc[r * kSLd + lane], b, recent) : 0ull;
      Key th = thr[r];
      unsigned mask = __ballot_sync(kFull, key > th);
      Key L[J];
#pragma unroll
      for (int j = 0; j < J; ++j) L[j] = list[r * LP + j * 32 + lane];
      if (__popc(mask) >= (J == 1 ? 4 : J == 2 ? 6 : 8)) {
        // Sort the row's candidates descending (non-candidates 0), then per list segment
        // j: top 32 of (segment, candidates) = max(segment, reversed candidates), bitonic,
        // sorted by a half-cleaner; the bottom 32 carries on to segment j + 1.
        Key x = key > th ? key : 0ull;
#pragma unroll
        for (int k = 2; k <= 32; k <<= 1)
#pragma unroll
          for (int j = k >> 1; j > 0; j >>= 1) {
            const Key y = __shfl_xor_sync(kFull, x, j);
            x = (((lane & j) == 0) == ((lane & k) == 0)) ? (x > y ? x : y) : (x < y ? x : y);
          }
        Key last = 0ull;
#pragma unroll
        for (int j = 0; j < J; ++j) {
          const Key rv = __shfl_sync(kFull, x, 31 - lane);
          Key hi = L[j] > rv ? L[j] : rv, lo = L[j] > rv ? rv : L[j];
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) {
            const Key y = __shfl_xor_sync(kFull, hi, o);
            hi = (lane & o) == 0 ? (hi > y ? hi : y) : (hi < y ? hi : y);
          }
          L[j] = hi;
          if (j == last_j) last = hi;
          if (j + 1 < J) {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
              const Key y = __shfl_xor_sync(kFull, lo, o);
              lo = (lane & o) == 0 ? (lo > y ? lo : y) : (lo < y ? lo : y);
            }
            x = lo;
          }
        }
        th = __shfl_sync(kFull, last, last_lane);
        mask = 0;
      }
      while (mask) {
        const int src = __ffs(mask) - 1;
        mask &= mask - 1;
        const Key cand = __shfl_sync(kFull, key, src);
        if (cand <= th) continue;  // the threshold rose past it
        int rank = 0;
#pragma unroll
        for (int j = 0; j < J; ++j) rank += __popc(__ballot_sync(kFull, L[j] > cand));
        Key prev[J];
#pragma unroll
        for (int j = 0; j < J; ++j) {
          const Key up = __shfl_up_sync(kFull, L[j], 1);
          const Key carry = j > 0 ? __shfl_sync(kFull, L[j > 0 ? j - 1 : 0], 31) : 0ull;
          prev[j] = lane == 0 ? carry : up;
        }
        Key last = 0ull;
#pragma unroll
        for (int j = 0; j < J; ++j) {
          const int p = j * 32 + lane;
          L[j] = p < rank ? L[j] : (p == rank ? cand : prev[j]);
          if (j == last_j) last = L[j];
        }
        th = __shfl_sync(kFull, last, last_lane);
      }
#pragma unroll
      for (int j = 0; j < J; ++j) list[r * LP + j * 32 + lane] = L[j];
      if (lane == 0) thr[r] = th;
    }
    __syncwarp();  // sc rewritten by the next tile
  }
  __syncwarp();

  if constexpr (MC > 0) {
    // Merge the two half lists of each row into `list` (sorted by the 64-bit key, best first).
    Key* mk = reinterpret_cast<Key*>(sc);  // scratch [2 MC] (sc holds 16 x kSLd >= 64 words)
    for (int r = 0; r < n_rows; ++r) {
      if (my_r == r) {
#pragma unroll
        for (int i = 0; i < MC; ++i) {
          const uint32_t hi = lk[i] == 1u ? 0u : lk[i];  // NaN: high word 0 in the 64-bit key
          const uint32_t lo = recent ? static_cast<uint32_t>(li[i]) + 1u : ~static_cast<uint32_t>(li[i]);
          mk[my_half * MC + i] = lk[i] == 0u ? 0ull : (static_cast<Key>(hi) << 32) | lo;
        }
      }
      __syncwarp();
      if (lane < 2 * MC) {
        const Key mine = mk[lane];
        int rank = 0;
#pragma unroll
        for (int i = 0; i < 2 * MC; ++i) rank += mk[i] > mine;
        if (mine != 0ull) list[r * LP + rank] = mine;
      }
      __syncwarp();
    }
  }

  // Output: picks ascending by block index, then the current block, then -1 padding.
  int* ib = reinterpret_cast<int*>(sc);  // scratch [32 J] (sc holds 16 x kSLd >= 128 words)
  const float nan = __int_as_float(0x7fc00000);
  for (int r = 0; r < n_rows; ++r) {
    const int64_t t = t_w + r;
    const int c = __shfl_sync(kFull, c_lane, r);
    Key L[J];
    int idx[J];
    bool ok[J];
    int cnt = 0;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int p = j * 32 + lane;
      L[j] = list[r * LP + p];
      ok[j] = p < m && L[j] != 0ull;
      idx[j] = ok[j] ? key_index(L[j], recent) : 0x7fffffff;
      cnt += __popc(__ballot_sync(kFull, ok[j]));
      ib[p] = idx[j];
    }
    __syncwarp();
    int pos[J];
#pragma unroll
    for (int j = 0; j < J; ++j) pos[j] = 0;
    for (int i = 0; i < cnt; ++i) {
      const int x = ib[i];
#pragma unroll
      for (int j = 0; j < J; ++j) pos[j] += x < idx[j];
    }
    const int64_t off = (h * a.n_tokens + t) * a.top_k;
#pragma unroll
    for (int j = 0; j < J; ++j)
      if (ok[j]) {
        a.selected[off + pos[j]] = idx[j];
        if (a.selected_scores) a.selected_scores[off + pos[j]] = key_score(L[j]);
      }
    if (lane == 0) {
      a.selected[off + cnt] = static_cast<int32_t>(c);
      if (a.selected_scores) a.selected_scores[off + cnt] = cur[r];
    }
    for (int j = cnt + 1 + lane; j < a.top_k; j += 32) {
      a.selected[off + j] = -1;
      if (a.selected_scores) a.selected_scores[off + j] = nan;
    }
    __syncwarp();  // ib reused by the next row
  }
}

template <int D, int J, int MC, int RC = -1>
const char* launch_gate_topk2(const GateArgs2& a, int64_t n_q_heads, cudaStream_t stream) {
  const size_t smem = sizeof(Key) * (kW2 * 16 * 32 * J + kW2 * 16) + sizeof(float) * (kW2 * 16 * kSLd + kW2 * 16) +
                      sizeof(uint16_t) * 2 * kTB2 * (D + 8);
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_mma_kernel<D, J, MC, RC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_mma_kernel<D, J, MC, RC>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                     cudaSharedmemCarveoutMaxShared));
  const int64_t n_tiles = (a.n_tokens + kQ2 - 1) / kQ2;
  gate_topk_mma_kernel<D, J, MC, RC><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_q_heads)), kW2 * 32,
                               smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

template <int D>
const char* launch_gate_topk2_j(const GateArgs2& a, int64_t n_q_heads, cudaStream_t stream) {
  if (std::getenv("MOBA_GATE_WARP_ONLY") == nullptr) {  // experiments: the warp path for every k
    if (a.m <= 8)
      return a.recent ? launch_gate_topk2<D, 1, 8, 1>(a, n_q_heads, stream) : launch_gate_topk2<D, 1, 8, 0>(a, n_q_heads, stream);
    if (a.m <= 16)
      return a.recent ? launch_gate_topk2<D, 1, 16, 1>(a, n_q_heads, stream)
                      : launch_gate_topk2<D, 1, 16, 0>(a, n_q_heads, stream);
  }
  if (a.m <= 32) return launch_gate_topk2<D, 1, 0>(a, n_q_heads, stream);
  if (a.m <= 64) return launch_gate_topk2<D, 2, 0>(a, n_q_heads, stream);
  return launch_gate_topk2<D, 4, 0>(a, n_q_heads, stream);
}

}  // namespace

const char* gate_topk_cuda(const GateTopkParams& p, void* stream) {
  GateTopkParams check = p;
  if (p.q16) check.q.data = reinterpret_cast<const float*>(p.q16);  // presence only
  if (const char* e = gate_topk_can_run(check)) return e;
  if (p.q16 && p.input_dtype == DType::f32) return "gate_topk_cuda: q16 needs input_dtype f16 or bf16";
  if (p.q.head_dim > 128) return "gate_topk_cuda: head_dim > 128 not supported";
  if (p.top_k > kMaxTopK) return "gate_topk_cuda: top_k > 129 not supported";
  if (p.q.n_tokens == 0) return nullptr;
  GateArgs a;
  a.q = DevTensor{p.q.data, p.q16, p.q16 ? kind_of(p.input_dtype) : kF32, p.q.stride_head, p.q.stride_token};
  a.kbar = p.kbar;
  a.n_tokens = p.q.n_tokens;
  a.head_dim = p.q.head_dim;
  a.block_size = p.block_size;
  a.n_blocks = block_count(p.q.n_tokens, p.block_size);
  a.n_q_heads = p.q.n_heads;
  a.group = p.q.n_heads / p.n_kv_heads;
  a.top_k = p.top_k;
  a.recent = p.tie == TieRule::recent;
  a.shared = p.gqa == GqaMode::shared;
  a.selected = p.selected;
  a.selected_scores = p.selected_scores;
  if (a.n_blocks > 0x7fffffff) return "gate_topk_cuda: too many blocks";
  const int64_t n_routers = a.shared ? p.n_kv_heads : p.q.n_heads;
  const auto s = static_cast<cudaStream_t>(stream);
  // v2 (tensor cores) for bf16 q16 per head; MOBA_GATE_V1 forces v1 (experiments).
  const bool v2 = p.q16 && p.input_dtype == DType::bf16 && !a.shared && p.q.head_dim % 4 == 0 &&
                  p.q.stride_token % 2 == 0 && p.q.stride_head % 2 == 0 &&
                  reinterpret_cast<uintptr_t>(p.q16) % 4 == 0 && reinterpret_cast<uintptr_t>(p.kbar) % 16 == 0 &&
                  std::getenv("MOBA_GATE_V1") == nullptr;
  if (v2) {
    GateArgs2 b;
    b.q = p.q16;
    b.q_sh = p.q.stride_head;
    b.q_st = p.q.stride_token;
    b.kbar = p.kbar;
    b.n_tokens = a.n_tokens;
    b.head_dim = a.head_dim;
    b.block_size = a.block_size;
    b.n_blocks = a.n_blocks;
    b.group = a.group;
    b.top_k = a.top_k;
    b.m = a.top_k - 1;
    b.recent = a.recent;
    b.selected = a.selected;
    b.selected_scores = a.selected_scores;
    if ((a.n_tokens + kQ2 - 1) / kQ2 > 0x7fffffff || p.q.n_heads > 65535) return "gate_topk_cuda: grid too large";
    return p.q.head_dim <= 64 ? launch_gate_topk2_j<64>(b, p.q.n_heads, s) : launch_gate_topk2_j<128>(b, p.q.n_heads, s);
  }
  return p.q.head_dim <= 64 ? launch_gate_topk<64>(a, n_routers, s) : launch_gate_topk<128>(a, n_routers, s);
}

}  // namespace moba::kernels
