// CUDA MoBA attention forward, tile path (moba_attention_tile.cuh): flash-style over the key
// tiles the CTA's rows selected, with the running output in registers.
//
//  1. bits_kernel: per (query head, row) a bitmask of its valid, causal, selected blocks
//     (duplicates and -1 fall out), [words] 32-bit words per row: a warp a row, the bits set in
//     shared memory and the row written whole.
//     A query window: rows of [q_begin, q_begin + q_count) only, their bitmasks and outputs
//     by window row; query tiles count from q_begin (a window start need not be a multiple
//     of 64), key tiles and causal masks stay absolute, so a row's arithmetic is the full
//     call's: keys no row of a CTA selected are skipped or masked, and a masked step adds
//     exactly nothing.
//  2. tile_attention_kernel: one CTA per (64-query tile, query head), heaviest first. It ORs
//     its rows' bitmasks into a map of the causal 64-key tiles some row selected (shared
//     memory), then walks those tiles ascending with K/V double-buffered by cp.async. Each of
//     the 4 warps owns 16 rows: per tile it reads its rows' bits for the tile's four 16-key
//     segments (block sizes are multiples of 16, so a segment lies in one block), skips the
//     tile when none of its rows selected any, skips QK^T and PV of segments none of its rows
//     selected, and otherwise runs QK^T and PV on tensor cores (mma.sync m16n8k16) with P
//     masked per (row, segment) and causally: numerics as the gather path (plain, or split_p
//     for exact bf16: P = hi + lo, two PV products), online softmax in log2 units.
//     Rows that attend nothing get o = 0 and lse = -inf, as the gather path.
#include "kernels/cuda/moba_attention_tile.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/constants.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace moba::kernels::cuda_detail {
namespace {

constexpr int kWarps = 4;
constexpr int kRows = kWarps * 16;  // queries per CTA
constexpr int kKeys = 64;           // keys per tile
constexpr int64_t kMaxTileWords = 2048;                // the CTA's tile map: up to 2^16 key tiles
constexpr int64_t kMaxBitsBytes = int64_t{1} << 31;   // the bitmask scratch

// One warp per window row i of [n_q_heads, q_count] (n_rows of them), kBitsWarps rows a CTA, each
// with a.words words of shared memory: lanes read 32 consecutive entries of the row's selection
// at a time (a thread a row read 32 rows' entries 4 KB or more apart, and or-ed its words in
// global memory one entry at a time), set their bits there, and the warp writes the row's words
// whole (zeros for rows before first_query: no memset).
constexpr int kBitsWarps = 4;
constexpr int kBitsLoads = 4;  // entries a lane loads before setting any
__global__ void __launch_bounds__(kBitsWarps * 32) bits_kernel(TileAttnArgs a, int64_t n_rows) {
  extern __shared__ uint32_t bits_s[];
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const int64_t i = blockIdx.x * int64_t{kBitsWarps} + warp;
  if (i >= n_rows) return;  // the whole warp: no CTA barrier below
  uint32_t* const s = bits_s + warp * a.words;
  for (int64_t w = lane; w < a.words; w += 32) s[w] = 0;
  __syncwarp();
  const int64_t t = a.q_begin + i % a.q_count;
  if (t >= a.first_query) {
    const int32_t* const sel = a.selected + i * a.top_k;
    for (int j0 = 0; j0 < a.top_k; j0 += 32 * kBitsLoads) {
      int32_t b[kBitsLoads];
#pragma unroll
      for (int x = 0; x < kBitsLoads; ++x) {
        const int j = j0 + 32 * x + lane;
        b[x] = j < a.top_k ? sel[j] : -1;
      }
#pragma unroll
      for (int x = 0; x < kBitsLoads; ++x)
        if (b[x] >= 0 && b[x] < a.n_blocks && int64_t{b[x]} * a.block_size <= t)
          atomicOr(s + (b[x] >> 5), 1u << (b[x] & 31));
    }
  }
  __syncwarp();
  uint32_t* const row = a.bits + i * a.words;
  for (int64_t w = lane; w < a.words; w += 32) row[w] = s[w];
}

// A CTA's place: (64-query tile, query head), heaviest first (CTA i takes query tile
// n_qt - 1 - i / heads of head i % heads), its queries [r_begin, r_end) by absolute position,
// its causal key tiles up to kt_last and its rows' bitmasks.
struct TileCta {
  int64_t h, kv, r_begin, r_end, kt_last;
  int tile_words;
  const uint32_t* row_bits;  // query t at (t - r_begin) words rows on
  __device__ explicit TileCta(const TileAttnArgs& a) {
    const int64_t n_heads = gridDim.y, n_qt = gridDim.x;
    const int64_t lin = int64_t{blockIdx.y} * gridDim.x + blockIdx.x;
    h = lin % n_heads;
    const int64_t qt = n_qt - 1 - lin / n_heads;
    kv = h / a.group;
    r_begin = a.q_begin + qt * kRows;
    r_end = min(a.q_begin + a.q_count, r_begin + kRows);
    kt_last = (r_end - 1) / kKeys;  // causal: no key past the last row
    tile_words = static_cast<int>(kt_last / 32 + 1);
    row_bits = a.bits + (h * a.q_count + (r_begin - a.q_begin)) * a.words;
  }
};

// The tile map (shared memory, c.tile_words words): key tile kt is active when a row of the CTA
// selected a block overlapping it. Ends with a barrier.
__device__ __forceinline__ void build_tile_map(const TileAttnArgs& a, const TileCta& c, uint32_t* tiles) {
  const int tid = threadIdx.x;
  for (int i = tid; i < c.tile_words; i += blockDim.x) tiles[i] = 0;
  __syncthreads();
  const int64_t w_last = ((c.r_end - 1) / a.block_size) >> 5;
  for (int64_t w = tid; w <= w_last; w += blockDim.x) {
    uint32_t u = 0;
    for (int64_t r = 0; r < c.r_end - c.r_begin; ++r) u |= c.row_bits[r * a.words + w];
    while (u) {
      const int64_t b = w * 32 + __ffs(u) - 1;
      u &= u - 1;
      const int64_t k0 = b * a.block_size, k1 = min(a.n_tokens, k0 + a.block_size) - 1;
      for (int64_t kt = k0 / kKeys; kt <= min(k1 / kKeys, c.kt_last); ++kt)
        atomicOr(tiles + (kt >> 5), 1u << (kt & 31));
    }
  }
  __syncthreads();
}

// The first active key tile >= from, or -1.
__device__ __forceinline__ int64_t next_tile(const uint32_t* tiles, int tile_words, int64_t from) {
  for (int64_t w = from >> 5; w < tile_words; ++w) {
    uint32_t m = tiles[w];
    if (w == (from >> 5)) m &= ~0u << (from & 31);
    if (m) return w * 32 + __ffs(m) - 1;
  }
  return -1;
}

// A thread's two rows t0 / t1 (-1: none; window rows row0 / row1 of the CTA): their bitmasks.
struct RowPair {
  int64_t t0, t1;
  const uint32_t *b0, *b1;
  __device__ RowPair(const TileAttnArgs& a, const TileCta& c, int row0, int row1, int64_t t0_, int64_t t1_)
      : t0(t0_), t1(t1_), b0(c.row_bits + (t0_ >= 0 ? row0 * a.words : 0)),
        b1(c.row_bits + (t1_ >= 0 ? row1 * a.words : 0)) {}
};

// The thread's rows of its warp's 16: t0 (fragment row g) and t1 (row g + 8), -1 past the CTA's
// rows; the warp's last row; Q's A fragments of t0 and t1.
template <int D>
__device__ __forceinline__ void thread_rows(const TileAttnArgs& a, const TileCta& c, int warp, int g, int qd,
                                            int64_t& t0, int64_t& t1, int64_t& warp_last, uint32_t (&qa)[D / 16][4]) {
  t0 = c.r_begin + warp * 16 + g < c.r_end ? c.r_begin + warp * 16 + g : -1;
  t1 = c.r_begin + warp * 16 + g + 8 < c.r_end ? c.r_begin + warp * 16 + g + 8 : -1;
  warp_last = min(c.r_end - 1, c.r_begin + warp * 16 + 15);
  load_q_fragments<D>(qa, t0 >= 0 ? a.q + c.h * a.q_sh + t0 * a.q_st : nullptr,
                      t1 >= 0 ? a.q + c.h * a.q_sh + t1 * a.q_st : nullptr, a.head_dim, qd);
}

// Bit s of m0 / m1: row t0 / t1 selected the block of key tile k0's 16-key segment s and that
// segment starts at or before the row. Block sizes are multiples of 16 and k0 of 64, so the
// segments' blocks follow from one 32-bit division a tile (keys < 2^27: moba_attention_cuda).
__device__ __forceinline__ void segment_bits(const TileAttnArgs& a, const RowPair& r, int64_t k0, uint32_t& m0,
                                             uint32_t& m1) {
  const uint32_t b16 = static_cast<uint32_t>(min(a.block_size >> 4, int64_t{1} << 30));
  const uint32_t u = static_cast<uint32_t>(k0 >> 4);
  uint32_t blk = u / b16, rem = u - blk * b16;  // segment s's block, and its 16-key step in it
  m0 = 0, m1 = 0;
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int64_t key = k0 + 16 * s;
    if (key < a.n_tokens) {
      if (r.t0 >= key) m0 |= ((r.b0[blk >> 5] >> (blk & 31)) & 1u) << s;
      if (r.t1 >= key) m1 |= ((r.b1[blk >> 5] >> (blk & 31)) & 1u) << s;
    }
    if (++rem == b16) rem = 0, ++blk;
  }
}

// A thread's share of staging a key tile's K and V (kKeys rows of D 16-bit channels in 16-byte
// chunks, kWarps * 32 threads): chunk column c8 of rows r0, r0 + kStep, ..., fixed for the CTA,
// so per tile only the tile's first key moves the source pointers. Zero-filled past the keys
// and channels. The caller gives the shared addresses of its chunk in row r0 and the step
// between its rows.
template <int D>
struct TileStager {
  static constexpr int kChunks = D / 8;                // 16-byte chunks a row
  static constexpr int kStep = kWarps * 32 / kChunks;  // rows between a thread's chunks
  static_assert(kKeys % kStep == 0, "whole rows a pass");
  const uint16_t *kbase, *vbase, *kp, *vp;  // the thread's chunk of key 0
  int64_t k_st, v_st;
  int r0, c8;
  bool chan_ok;
  __device__ TileStager(const TileAttnArgs& a, const TileCta& c)
      : kbase(a.k + c.kv * a.k_sh), vbase(a.v + c.kv * a.v_sh), k_st(a.k_st), v_st(a.v_st),
        r0(static_cast<int>(threadIdx.x) / kChunks), c8(static_cast<int>(threadIdx.x) % kChunks * 8),
        chan_ok(c8 < a.head_dim) {
    kp = kbase + r0 * k_st + c8;
    vp = vbase + r0 * v_st + c8;
  }
  __device__ __forceinline__ void stage(int64_t k0, int64_t n_tokens, uint32_t k_dst, uint32_t v_dst,
                                        uint32_t dst_step) const {
    const int64_t left = n_tokens - k0 - r0;  // keys of this thread's rows left
    const int rows = static_cast<int>(min(left, int64_t{kKeys}));
    const uint16_t* kq = kp + k0 * k_st;
    const uint16_t* vq = vp + k0 * v_st;
#pragma unroll
    for (int i = 0; i < kKeys / kStep; ++i) {
      const bool ok = chan_ok && i * kStep < rows;
      cp_async16_s(k_dst + i * dst_step, ok ? kq : kbase, ok);
      cp_async16_s(v_dst + i * dst_step, ok ? vq : vbase, ok);
      kq += kStep * k_st;
      vq += kStep * v_st;
    }
    cp_async_commit();
  }
};

// Scales S (a key tile's C fragments) to log2 units and masks it (the row's segment bits m0 /
// m1 and causal: key j <= t), with the rows' maxima over the tile.
__device__ __forceinline__ void mask_scale_max(float (&sc)[kKeys / 8][4], int64_t k0, int qd, uint32_t m0,
                                               uint32_t m1, int64_t t0, int64_t t1, float sl2, float& mx0,
                                               float& mx1) {
  mx0 = -INFINITY, mx1 = -INFINITY;
  // Key k0 + 2 qd + x is causal for row t when x <= t - k0 - 2 qd (clamped: 32-bit compares).
  const int lim0 = static_cast<int>(max(int64_t{-1}, min(t0 - k0 - 2 * qd, int64_t{kKeys})));
  const int lim1 = static_cast<int>(max(int64_t{-1}, min(t1 - k0 - 2 * qd, int64_t{kKeys})));
#pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool in0 = ((m0 >> (nt / 2)) & 1u) && nt * 8 + e <= lim0;
      const bool in1 = ((m1 >> (nt / 2)) & 1u) && nt * 8 + e <= lim1;
      sc[nt][e] = in0 ? sc[nt][e] * sl2 : -INFINITY;
      sc[nt][2 + e] = in1 ? sc[nt][2 + e] * sl2 : -INFINITY;
      mx0 = fmaxf(mx0, sc[nt][e]);
      mx1 = fmaxf(mx1, sc[nt][2 + e]);
    }
}

// The normalised output and lse of rows t0 / t1 (-1: none); rows that attend nothing: o = 0,
// lse = -inf.
template <int D>
__device__ __forceinline__ void store_rows(const TileAttnArgs& a, const float (&acc)[D / 8][4], float2 ml0,
                                           float2 ml1, int64_t h, int64_t t0, int64_t t1, int qd) {
  const int64_t d = a.head_dim;
  const float s0 = ml0.y > 0.f ? 1.0f / ml0.y : 0.f, s1 = ml1.y > 0.f ? 1.0f / ml1.y : 0.f;
  const int64_t row0 = h * a.q_count + (t0 - a.q_begin), row1 = h * a.q_count + (t1 - a.q_begin);  // window rows
  float* const o0 = t0 >= 0 ? a.out + row0 * d : nullptr;
  float* const o1 = t1 >= 0 ? a.out + row1 * d : nullptr;
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) {
    const int c = nd * 8 + 2 * qd;
    if (o0 && c < d) *reinterpret_cast<float2*>(o0 + c) = make_float2(acc[nd][0] * s0, acc[nd][1] * s0);
    if (o1 && c < d) *reinterpret_cast<float2*>(o1 + c) = make_float2(acc[nd][2] * s1, acc[nd][3] * s1);
  }
  if (a.lse && qd == 0) {
    if (t0 >= 0) a.lse[row0] = ml0.y > 0.f ? (ml0.x + log2f(ml0.y)) * kLn2 : -INFINITY;
    if (t1 >= 0) a.lse[row1] = ml1.y > 0.f ? (ml1.x + log2f(ml1.y)) * kLn2 : -INFINITY;
  }
}

// MinB: CTAs per SM asked of ptxas (2: up to 255 registers; 3 caps at 168, a few spills).
template <int D, typename T16, Nx NX, int MinB>
__global__ void __launch_bounds__(kWarps * 32, MinB) tile_attention_kernel(TileAttnArgs a) {
  using M = Mma<T16>;
  constexpr int LD = D + 8;  // padded smem row (16-bit elements): conflict-free fragments
  extern __shared__ uint4 smem_raw[];
  uint16_t* const ks = reinterpret_cast<uint16_t*>(smem_raw);  // [2][kKeys][LD]
  uint16_t* const vs = ks + 2 * kKeys * LD;                     // [2][kKeys][LD]
  uint32_t* const tiles = reinterpret_cast<uint32_t*>(vs + 2 * kKeys * LD);  // active key tiles
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  const TileCta c(a);
  const int64_t T = a.n_tokens;
  build_tile_map(a, c, tiles);

  int64_t t0, t1, warp_last;
  uint32_t qa[D / 16][4];
  thread_rows<D>(a, c, warp, g, qd, t0, t1, warp_last, qa);
  float acc[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
  float2 ml0 = make_float2(-INFINITY, 0.f), ml1 = ml0;  // running (max in log2 units, sum)

  const RowPair rp(a, c, warp * 16 + g, warp * 16 + g + 8, t0, t1);
  const TileStager<D> st(a, c);
  const uint32_t chunk = static_cast<uint32_t>((st.r0 * LD + st.c8) * 2);  // the thread's chunk in a buffer
  const uint32_t ks_a = static_cast<uint32_t>(__cvta_generic_to_shared(ks)) + chunk;
  const uint32_t vs_a = static_cast<uint32_t>(__cvta_generic_to_shared(vs)) + chunk;
  const auto stage = [&](int64_t kt, int buf) {
    const uint32_t off = static_cast<uint32_t>(buf * kKeys * LD * 2);
    st.stage(kt * kKeys, T, ks_a + off, vs_a + off, TileStager<D>::kStep * LD * 2);
  };

  int64_t kt = next_tile(tiles, c.tile_words, 0);
  int buf = 0;
  if (kt >= 0) stage(kt, 0);
  while (kt >= 0) {
    const int64_t kn = kt < c.kt_last ? next_tile(tiles, c.tile_words, kt + 1) : -1;
    if (kn >= 0) {
      stage(kn, buf ^ 1);
      cp_async_wait_group<1>();
    } else {
      cp_async_wait_group<0>();
    }
    __syncthreads();
    const int64_t k0 = kt * kKeys;
    // Bit s of m0 / m1: row t0 / t1 selected the block of the tile's 16-key segment s.
    uint32_t m0 = 0, m1 = 0;
    if (k0 <= warp_last) segment_bits(a, rp, k0, m0, m1);
    uint32_t wor = m0 | m1;  // the segments any row of the warp needs
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wor |= __shfl_xor_sync(0xffffffffu, wor, o);
    if (wor != 0) {
      const uint16_t* const ksb = ks + buf * kKeys * LD;
      const uint16_t* const vsb = vs + buf * kKeys * LD;
      float sc[kKeys / 8][4];
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
      if (wor == 0xfu) {
        // Every segment: k-steps outer (mma_qk; each tile's k-steps in the order of the
        // branch below: the same bits).
        mma_qk<M, D, kKeys / 8, false>(sc, qa, qa, ksb, nullptr, LD, g, qd);
      } else {
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt)
          if ((wor >> (nt / 2)) & 1u) {
            const uint16_t* krow = ksb + (nt * 8 + g) * LD + 2 * qd;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
              M::run(sc[nt], qa[kk], *reinterpret_cast<const uint32_t*>(krow + kk * 16),
                     *reinterpret_cast<const uint32_t*>(krow + kk * 16 + 8));
          }
      }
      float mx0, mx1;
      mask_scale_max(sc, k0, qd, m0, m1, t0, t1, a.scale_log2, mx0, mx1);
      uint32_t pa[kKeys / 16][4];
      uint32_t pl[NX == Nx::plain ? 1 : kKeys / 16][4];  // split P: the lo parts
      const float2 al = softmax_step<M, NX != Nx::plain, kKeys>(sc, mx0, mx1, ml0, ml1, pa, pl, 1.0f);
      rescale_o<D>(acc, al.x, al.y);
      // O += P V over the segments the warp needs (split: the small terms first).
      if constexpr (NX == Nx::plain)
        mma_pv<M, D>(acc, pa, vsb, LD, 0, kKeys / 8, lane, wor);
      else
        mma_pv_split<M, D, kKeys / 16, false>(acc, pa, pl, vsb, nullptr, LD, 0, kKeys / 8, lane, wor);
    }
    __syncthreads();  // this buffer is staged again two tiles on
    kt = kn;
    buf ^= 1;
  }
  store_rows<D>(a, acc, ml0, ml1, c.h, t0, t1, qd);
}

// The wgmma engine (CudaTuning::tile_wgmma; head dim 128, sm_90a): the same walk, masks and
// online softmax as tile_attention_kernel, but the CTA's 4 warps are one warpgroup and each
// tile's products are warpgroup MMAs: S = Q K^T as 8 m64n64k16 steps (Q's fragments in
// registers, K by descriptor), O += P V as 4 m64n128k16 steps (P's fragments in registers, V
// by descriptor; split P: lo then hi, as mma_pv_split). K and V are staged by cp.async in the
// 128-byte swizzled layout (wgmma.cuh): a [64 keys][128 channels] tile as two [64][64] halves of
// 8 KB, the channels [0, 64) then [64, 128). A tile is computed for every warp whenever one row
// of the CTA needs it (warpgroup MMAs cannot skip a warp), so this engine does not skip a warp's
// unneeded tiles or segments; the masks make them add exactly nothing.
constexpr int kWgHalf = kKeys * 64 * 2;   // bytes of a [64][64] 16-bit half tile
constexpr int kWgTile = 2 * kWgHalf;      // a K or V tile: two halves

template <typename T16, Nx NX>
__global__ void __launch_bounds__(kWarps * 32, 2) tile_attention_wgmma_kernel(TileAttnArgs a) {
#if MOBA_WGMMA
  constexpr int D = 128;
  using M = Mma<T16>;
  using W = Wgmma<T16>;
  extern __shared__ uint4 smem_raw[];
  // [2 buffers][K, V][two halves] of kWgHalf, from a 1024-byte aligned start, then the tile map.
  uint8_t* const kv_s = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~static_cast<uintptr_t>(1023));
  uint32_t* const tiles = reinterpret_cast<uint32_t*>(kv_s + 4 * kWgTile);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  const TileCta c(a);
  const int64_t T = a.n_tokens;
  build_tile_map(a, c, tiles);

  int64_t t0, t1, warp_last;
  uint32_t qa[D / 16][4];
  thread_rows<D>(a, c, warp, g, qd, t0, t1, warp_last, qa);
  float acc[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
  float2 ml0 = make_float2(-INFINITY, 0.f), ml1 = ml0;  // running (max in log2 units, sum)

  const RowPair rp(a, c, warp * 16 + g, warp * 16 + g + 8, t0, t1);
  const TileStager<D> st(a, c);
  // The thread's rows are kStep apart, a multiple of the swizzle's 8 rows: its chunk keeps its
  // place in a row, kStep rows (kStep * 128 bytes) on.
  static_assert(TileStager<D>::kStep % 8 == 0, "swizzle period");
  const uint32_t kv_a = static_cast<uint32_t>(__cvta_generic_to_shared(kv_s)) + (st.c8 / 64) * kWgHalf +
                        swizzle128(st.r0, st.c8 % 64);
  const auto stage = [&](int64_t kt, int buf) {
    const uint32_t off = static_cast<uint32_t>(buf * 2 * kWgTile);
    st.stage(kt * kKeys, T, kv_a + off, kv_a + off + kWgTile, TileStager<D>::kStep * 128);
  };

  int64_t kt = next_tile(tiles, c.tile_words, 0);
  int buf = 0;
  if (kt >= 0) stage(kt, 0);
  while (kt >= 0) {
    const int64_t kn = kt < c.kt_last ? next_tile(tiles, c.tile_words, kt + 1) : -1;
    if (kn >= 0) {
      stage(kn, buf ^ 1);
      cp_async_wait_group<1>();
    } else {
      cp_async_wait_group<0>();
    }
    fence_proxy_async();  // this thread's copies of the tile, to the warpgroup MMAs' proxy
    __syncthreads();
    const int64_t k0 = kt * kKeys;
    const uint8_t* const ksb = kv_s + buf * 2 * kWgTile;
    const uint8_t* const vsb = ksb + kWgTile;
    float sc[kKeys / 8][4];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)  // channels [16 kk, 16 kk + 16): half kk / 4, 32 B a step
      W::template m64n64<0>(sc, qa[kk], wgmma_desc(ksb + (kk / 4) * kWgHalf + (kk % 4) * 32, 16, 1024), kk > 0);
    wgmma_commit();
    uint32_t m0 = 0, m1 = 0;  // bit s: row t0 / t1 selected the tile's 16-key segment s
    if (k0 <= warp_last) segment_bits(a, rp, k0, m0, m1);
    wgmma_wait<0>();
    float mx0, mx1;
    mask_scale_max(sc, k0, qd, m0, m1, t0, t1, a.scale_log2, mx0, mx1);
    uint32_t pa[kKeys / 16][4];
    uint32_t pl[NX == Nx::plain ? 1 : kKeys / 16][4];  // split P: the lo parts
    const float2 al = softmax_step<M, NX != Nx::plain, kKeys>(sc, mx0, mx1, ml0, ml1, pa, pl, 1.0f);
    rescale_o<D>(acc, al.x, al.y);
    wgmma_fence();
#pragma unroll
    for (int k16 = 0; k16 < kKeys / 16; ++k16) {  // keys [16 k16, 16 k16 + 16): 2 row groups of 1024 B
      const uint64_t vdesc = wgmma_desc(vsb + k16 * 16 * 128, kWgHalf, 1024);
      if constexpr (NX != Nx::plain) W::template m64n128<1>(acc, pl[k16], vdesc, 1);
      W::template m64n128<1>(acc, pa[k16], vdesc, 1);
    }
    wgmma_commit();
    wgmma_wait<0>();
    __syncthreads();  // this buffer is staged again two tiles on
    kt = kn;
    buf ^= 1;
  }
  store_rows<D>(a, acc, ml0, ml1, c.h, t0, t1, qd);
#else
  __trap();  // the host launches this kernel only on compute capability 9.0 (sm_90a code)
#endif
}

// Launches a tile kernel: one CTA per (64-query tile, query head), with `staging_bytes` of
// dynamic shared memory for its K/V buffers and, after them, the CTA's tile map (a word per 32
// key tiles, keys up to the window's end).
const char* launch_tiles(void (*kernel)(TileAttnArgs), size_t staging_bytes, const TileAttnArgs& a,
                         int64_t n_q_heads, cudaStream_t stream) {
  const int64_t n_qt = (a.q_count + kRows - 1) / kRows;
  const int64_t tile_words = (a.q_begin + a.q_count - 1) / kKeys / 32 + 1;
  const size_t smem = staging_bytes + static_cast<size_t>(tile_words) * 4;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<dim3(static_cast<unsigned>(n_qt), static_cast<unsigned>(n_q_heads)), kWarps * 32, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

template <int D, typename T16, Nx NX, int MinB = 2>
const char* launch(const TileAttnArgs& a, int64_t n_q_heads, cudaStream_t stream) {
  return launch_tiles(tile_attention_kernel<D, T16, NX, MinB>, size_t{4} * kKeys * (D + 8) * sizeof(uint16_t), a,
                      n_q_heads, stream);
}

template <typename T16, Nx NX>
const char* launch_wgmma(const TileAttnArgs& a, int64_t n_q_heads, cudaStream_t stream) {
  // 2 buffers of K and V, and 1024 bytes of room to align them to 1024 (the swizzle's atoms).
  return launch_tiles(tile_attention_wgmma_kernel<T16, NX>, size_t{4} * kWgTile + 1024, a, n_q_heads, stream);
}

}  // namespace

bool tile_wgmma_available(int64_t head_dim) {
  int dev = 0, major = 0;
  return head_dim > 64 && head_dim <= 128 && cudaGetDevice(&dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9;
}

bool tile_attention_fits(int64_t n_q_heads, int64_t n_tokens, int64_t block_size, Nx nx) {
  if (nx == Nx::x3 || block_size % 16 != 0 || n_tokens <= 0 || n_q_heads > 65535) return false;
  const int64_t words = ((n_tokens + block_size - 1) / block_size + 31) / 32;
  if (n_q_heads * n_tokens * words * 4 > kMaxBitsBytes) return false;
  return (n_tokens - 1) / kKeys / 32 + 1 <= kMaxTileWords;
}

const char* launch_tile_attention(TileAttnArgs a, int64_t n_q_heads, bool f16, Nx nx, TileEngine engine,
                                  cudaStream_t stream) {
  const int64_t n_rows = n_q_heads * a.q_count;
  // a.words <= 8192 (tile_attention_fits: n_tokens < 2^22, blocks of >= 16 keys): <= 128 KB.
  const size_t bits_smem = size_t{kBitsWarps} * static_cast<size_t>(a.words) * 4;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(bits_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bits_smem)));
  bits_kernel<<<static_cast<unsigned>((n_rows + kBitsWarps - 1) / kBitsWarps), kBitsWarps * 32, bits_smem, stream>>>(
      a, n_rows);
  MOBA_CUDA_LAUNCH_CHECK();
  const bool small = a.head_dim <= 64;
  if (engine == TileEngine::wgmma) {  // the caller checked tile_wgmma_available
    if (f16) return launch_wgmma<__half, Nx::plain>(a, n_q_heads, stream);
    if (nx == Nx::split_p) return launch_wgmma<__nv_bfloat16, Nx::split_p>(a, n_q_heads, stream);
    return launch_wgmma<__nv_bfloat16, Nx::plain>(a, n_q_heads, stream);
  }
  const bool min_blocks3 = engine == TileEngine::mma3;
  if (!small && min_blocks3) {  // CudaTuning::tile_min_blocks3
    if (f16) return launch<128, __half, Nx::plain, 3>(a, n_q_heads, stream);
    if (nx == Nx::split_p) return launch<128, __nv_bfloat16, Nx::split_p, 3>(a, n_q_heads, stream);
    return launch<128, __nv_bfloat16, Nx::plain, 3>(a, n_q_heads, stream);
  }
  if (f16) return small ? launch<64, __half, Nx::plain>(a, n_q_heads, stream) : launch<128, __half, Nx::plain>(a, n_q_heads, stream);
  if (nx == Nx::split_p)
    return small ? launch<64, __nv_bfloat16, Nx::split_p>(a, n_q_heads, stream)
                 : launch<128, __nv_bfloat16, Nx::split_p>(a, n_q_heads, stream);
  return small ? launch<64, __nv_bfloat16, Nx::plain>(a, n_q_heads, stream)
               : launch<128, __nv_bfloat16, Nx::plain>(a, n_q_heads, stream);
}

}  // namespace moba::kernels::cuda_detail
