// gate_topk, tensor-core kernel (kernels/gate_topk.h; bf16 16-bit q under per-head GQA, the
// benchmarked path). A CTA of 8 warps owns 128 consecutive queries of one head; it walks the
// pooled keys in tiles of 32 blocks, staged in shared memory as bf16 hi + lo (kbar = hi + lo
// + O(2^-18 |kbar|)), and each warp scores its 16 queries on tensor cores (mma.sync
// m16n8k16, q is bf16-exact, two products per element: fp32-level scores, within the
// header's tie tolerance). Selection is warp-cooperative: per query a list of the best
// top_k - 1 (score, index) keys, sorted, in shared memory, and a threshold (the list's
// worst); a tile row costs one ballot against the threshold, and each candidate that beats
// it is inserted with shuffles (rank by ballot, shift by shfl_up). For top_k - 1 <= 16 each
// thread keeps register lists instead (the MC variants; CudaTuning::GatePath::warp_list
// turns them off).
// Keys are 64-bit: high word the score mapped to an order-preserving unsigned (NaN lowest,
// -0 = +0), low word the tie rule (index + 1 for `recent`, ~index for `older`); 0 = empty.
#include <cstdint>

#include "kernels/constants.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/gate_topk_kernels.cuh"
#include "kernels/cuda/mma.cuh"

namespace moba::kernels::cuda_detail {
namespace {

constexpr int kMmaWarps = 8;                      // warps per CTA, 16 queries each
constexpr int kMmaQueries = kMmaWarps * 16;       // queries per CTA
static_assert(kMmaQueries == kGateMmaQueries, "gate_topk_kernels.cuh");
constexpr int kMmaBlockTile = 32;                 // pooled keys per tile
constexpr int kMmaScoreLd = kMmaBlockTile + 9;    // score row stride (floats, odd): conflict-free per-thread rows

using Key = unsigned long long;

__device__ __forceinline__ Key make_key(float s, int b, bool recent) {
  const uint32_t u = s == 0.0f ? 0u : __float_as_uint(s);  // -0 ranks as +0
  const uint32_t hi = isnan(s) ? 0u : ((u & 0x80000000u) ? ~u : (u | 0x80000000u));
  const uint32_t lo = recent ? static_cast<uint32_t>(b) + 1u : ~static_cast<uint32_t>(b);
  return (static_cast<Key>(hi) << 32) | lo;
}
__device__ __forceinline__ float key_score(Key k) {
  const uint32_t hi = static_cast<uint32_t>(k >> 32);
  if (hi == 0u) return kQuietNaN;
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

// grid (ceil(n_tokens / 128), n_q_heads), 256 threads. J = list slots per lane (32 J >= m).
// dynamic smem: lists [8][16][32 J] Key, thr [8][16] Key, sc [8][16][kMmaScoreLd] fp32, cur [8][16]
// fp32, kh / kl [32][D + 8] bf16 (the tile's pooled keys, hi and lo parts).
// RC: the tie rule at compile time for the MC path (1 recent, 0 older; -1: runtime, warp path).
// MC > 0 (top_k - 1 <= MC <= 16, J = 1): selection per thread instead: thread (row r = lane % 16,
// half = lane / 16) keeps the best MC (score, block) of the half-tiles [16 half, 16 half + 16) of
// every tile in registers (branch-free sorted insertion behind a threshold test), and the two
// halves of a row are merged into the warp path's list format at the end.
template <int D, int J, int MC, int RC>
__global__ void __launch_bounds__(kMmaWarps * 32, 2) gate_topk_mma_kernel(GateMmaArgs a) {
  using M = Mma<__nv_bfloat16>;
  constexpr int LP = 32 * J;
  constexpr int KLD = D + 8;
  constexpr int NPRE = kMmaBlockTile * D / 4 / (kMmaWarps * 32);  // float4 per thread per tile
  constexpr unsigned kFull = 0xffffffffu;
  extern __shared__ uint4 smem_raw[];
  Key* lists = reinterpret_cast<Key*>(smem_raw);
  Key* thr_all = lists + kMmaWarps * 16 * LP;
  float* sc_all = reinterpret_cast<float*>(thr_all + kMmaWarps * 16);
  float* cur_all = sc_all + kMmaWarps * 16 * kMmaScoreLd;
  uint16_t* kh = reinterpret_cast<uint16_t*>(cur_all + kMmaWarps * 16);
  uint16_t* kl = kh + kMmaBlockTile * KLD;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  Key* list = lists + warp * 16 * LP;
  Key* thr = thr_all + warp * 16;
  float* sc = sc_all + warp * 16 * kMmaScoreLd;
  float* cur = cur_all + warp * 16;

  const int64_t h = blockIdx.y, kv = h / a.group, d = a.head_dim;
  const int64_t t_cta = int64_t{blockIdx.x} * kMmaQueries, t_w = t_cta + warp * 16;
  const int64_t c_max = (min(a.n_tokens, t_cta + kMmaQueries) - 1) / a.block_size;
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
    cur[lane] = kQuietNaN;
  }

  // Q fragments of rows t_w + g and t_w + g + 8 (zero past n_tokens / head_dim).
  uint32_t qa[D / 16][4];
  {
    const int64_t t0 = t_w + g, t1 = t_w + g + 8;
    const uint16_t* q0 = t0 < a.n_tokens ? a.q + h * a.q_sh + t0 * a.q_st : nullptr;
    const uint16_t* q1 = t1 < a.n_tokens ? a.q + h * a.q_sh + t1 * a.q_st : nullptr;
    load_q_fragments<D>(qa, q0, q1, d, qd);
  }

  float4 pre[NPRE];
  auto fetch = [&](int64_t b0) {
#pragma unroll
    for (int r = 0; r < NPRE; ++r) {
      const int i = tid + r * kMmaWarps * 32;
      const int bb = i / (D / 4), c4 = (i % (D / 4)) * 4;
      const int64_t b = b0 + bb;
      pre[r] = (b < a.n_blocks && c4 < d)
                   ? __ldg(reinterpret_cast<const float4*>(a.kbar + (kv * a.n_blocks + b) * d + c4))
                   : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  fetch(0);

  for (int64_t b0 = 0; b0 <= c_max; b0 += kMmaBlockTile) {
    __syncthreads();  // previous tile consumed
#pragma unroll
    for (int r = 0; r < NPRE; ++r) {
      const int i = tid + r * kMmaWarps * 32;
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
    if (b0 + kMmaBlockTile <= c_max) fetch(b0 + kMmaBlockTile);  // next tile's loads overlap this tile's work
    if (b0 > c_wmax) continue;                   // warp-uniform: all its queries are earlier

    // Scores [16 queries x 32 blocks]: hi and lo products into one fp32 accumulator.
#pragma unroll
    for (int nt = 0; nt < kMmaBlockTile / 8; ++nt) {
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
      sc[g * kMmaScoreLd + nt * 8 + 2 * qd] = acc[0];
      sc[g * kMmaScoreLd + nt * 8 + 2 * qd + 1] = acc[1];
      sc[(g + 8) * kMmaScoreLd + nt * 8 + 2 * qd] = acc[2];
      sc[(g + 8) * kMmaScoreLd + nt * 8 + 2 * qd + 1] = acc[3];
    }
    __syncwarp();

    if constexpr (MC > 0) {
      if (b0 <= my_c) {
        const int base = static_cast<int>(b0) + my_half * 16;
        const float* srow = sc + my_r * kMmaScoreLd + my_half * 16;
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
      const float s = sc[r * kMmaScoreLd + lane];
      if (b == c) cur[r] = s;
      if (m > 0 && __ballot_sync(kFull, (b < c ? make_key(s, b, recent) : 0ull) > thr[r])) rows_hit |= 1u << r;
    }
    // Pass 2: fold each flagged row's candidates into its sorted list: one at a time, or,
    // when there are many (the first tiles), as a batch (bitonic sort + merge).
    while (rows_hit) {
      const int r = __ffs(rows_hit) - 1;
      rows_hit &= rows_hit - 1;
      const int c = __shfl_sync(kFull, c_lane, r);
      const Key key = b < c ? make_key(sc[r * kMmaScoreLd + lane], b, recent) : 0ull;
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
    Key* mk = reinterpret_cast<Key*>(sc);  // scratch [2 MC] (sc holds 16 x kMmaScoreLd >= 64 words)
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
  int* ib = reinterpret_cast<int*>(sc);  // scratch [32 J] (sc holds 16 x kMmaScoreLd >= 128 words)
  const float nan = kQuietNaN;
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
const char* launch_mma_variant(const GateMmaArgs& a, int64_t n_q_heads, cudaStream_t stream) {
  const size_t smem = sizeof(Key) * (kMmaWarps * 16 * 32 * J + kMmaWarps * 16) + sizeof(float) * (kMmaWarps * 16 * kMmaScoreLd + kMmaWarps * 16) +
                      sizeof(uint16_t) * 2 * kMmaBlockTile * (D + 8);
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_mma_kernel<D, J, MC, RC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_mma_kernel<D, J, MC, RC>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                     cudaSharedmemCarveoutMaxShared));
  const int64_t n_tiles = (a.n_tokens + kMmaQueries - 1) / kMmaQueries;
  gate_topk_mma_kernel<D, J, MC, RC><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_q_heads)), kMmaWarps * 32,
                               smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

template <int D>
const char* launch_for_k(const GateMmaArgs& a, int64_t n_q_heads, bool register_lists, cudaStream_t stream) {
  if (register_lists) {
    if (a.m <= 8)
      return a.recent ? launch_mma_variant<D, 1, 8, 1>(a, n_q_heads, stream) : launch_mma_variant<D, 1, 8, 0>(a, n_q_heads, stream);
    if (a.m <= 16)
      return a.recent ? launch_mma_variant<D, 1, 16, 1>(a, n_q_heads, stream)
                      : launch_mma_variant<D, 1, 16, 0>(a, n_q_heads, stream);
  }
  if (a.m <= 32) return launch_mma_variant<D, 1, 0>(a, n_q_heads, stream);
  if (a.m <= 64) return launch_mma_variant<D, 2, 0>(a, n_q_heads, stream);
  return launch_mma_variant<D, 4, 0>(a, n_q_heads, stream);
}

}  // namespace

const char* launch_gate_topk_mma(const GateMmaArgs& a, int64_t n_q_heads, bool register_lists, cudaStream_t stream) {
  return a.head_dim <= 64 ? launch_for_k<64>(a, n_q_heads, register_lists, stream)
                          : launch_for_k<128>(a, n_q_heads, register_lists, stream);
}

}  // namespace moba::kernels::cuda_detail
