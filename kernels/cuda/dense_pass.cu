// CUDA dense streaming pass (kernels/dense_pass.h): flash-style, never T x T.
//
// One CTA per (64-query tile, query head), 4 warps x 16 rows, K/V tiles of 64 keys staged
// in shared memory (cp.async, double-buffered).
//
// Pass 1: QK^T and PV on tensor cores (mma.sync, 16-bit inputs, fp32 accumulate) with an
// online softmax -> lse and o_full. Numerics (Nx, cuda_util.cuh; Precision, kernels/operand.h):
// plain (fast, and exact f16), split_p (exact bf16: P = hi + lo, two PV products), x3 (exact
// f32: q, k, v as scaled fp16 hi + lo, lo K/V tiles double-buffered beside the hi ones,
// QK^T = hi.hi + hi.lo + lo.hi, P 2^14 split, PV = ph.V + pl.V + ph.V_lo). Block sizes 16, 32 and multiples of 64 ("fast" sizes)
// get their masses here too: the tile's fp32 P (relative to the running max u) is reduced per
// 16-key block in registers (a quad butterfly), 32- and 64-key sums follow by one more
// shuffle each, longer blocks carry across tiles rescaled like the output. Each finished
// block is written as its log2 mass L = u + log2(sum); once the row's lse is known the warp
// rewrites its rows as 2^(L - lse), zero past the CTA's keys.
//
// Top-n, in pass 1 (a rank by score needs no lse): only raw scores reaching a bound just
// below the row's current n-th best are candidates; the owning lane keeps the row's best in a
// min-heap of 64-bit keys (rank by score, ties to the larger key index), sorted once at the
// end; their probabilities follow from the final lse.
//
// Pass 2, only for other block sizes: QK^T again, exact P = exp(s - lse) in fp32 in the
// accumulator fragments; block masses are reduced there (8-key segment sums by quad shuffle,
// or per key for block sizes that are not multiples of 8), then the warp's 32 lanes split the
// tile's (row, block) pairs, carry blocks that span key tiles and write each mass once;
// blocks past the CTA's keys are zero-filled, coalesced.
#include "kernels/dense_pass.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <type_traits>

#include "kernels/block_pool.h"
#include "kernels/constants.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mass_rows.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/score_moments.cuh"
#include "kernels/cuda/tuning.h"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

constexpr int kWarps = 4;
constexpr int kRows = kWarps * 16;  // queries per CTA
constexpr int kKeys = 64;           // keys per tile
constexpr int kMaxTopN = 64;
constexpr int kSeg8Ld = kKeys / 8 + 1;  // per-row 8-key segment sums (pass 2), padded

// Where a block size's masses are computed: pass 2 ("slow" sizes), or folded in pass 1 for
// B = 16, B = 32, or B a multiple of 64 spanning tiles_per_block key tiles.
enum class MassFold : int { pass2, b16, b32, tiles };

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
  bool any_w8, any_w1;               // some pass-2 block size is / is not a multiple of 8
  MassFold fold[kDensePassMaxBlockSizes];  // where each block size's masses are computed
  int tiles_per_block[kDensePassMaxBlockSizes];
  int tpb_shift[kDensePassMaxBlockSizes];   // log2(tiles_per_block) when a power of two, else -1
  bool any_fast, any_slow;
  const uint16_t *q_lo, *k_lo, *v_lo;  // Nx::x3 only: the fp16 lo parts, strides of q, k, v
  const int* x3_exp;                   // Nx::x3 only: [3] scale exponents of q, k, v
  // The raw scores' 16-key moments (DensePassParams::score_sum ...), with MOM only.
  double *mom_sum, *mom_sq;
  float* mom_max;
  int32_t* mom_arg;
  int64_t mom_stride;
};

// Shared memory after the K/V tiles (floats): a tile's scores for top-n (pass 1), 8-key
// segment sums and per-key probabilities (pass 2: block sizes not a multiple of 8), carries of
// blocks spanning tiles (both passes), the rows' top-n lists (pass 1).
__host__ __device__ inline int64_t pass2_floats(const DenseArgs& a, int64_t* o_seg8, int64_t* o_seg1,
                                                int64_t* o_carry, int64_t* o_top) {
  int64_t o = 0;
  o += a.top_n > 0 ? kWarps * 16 * (kKeys + 1) : 0;
  *o_seg8 = o;
  o += a.any_w8 ? kWarps * 16 * kSeg8Ld : 0;
  *o_seg1 = o;
  o += a.any_w1 ? kWarps * 16 * (kKeys + 1) : 0;
  *o_carry = o;
  o += kWarps * 2 * 16 * a.n_sizes;
  o = (o + 1) / 2 * 2;  // the top-n keys are 64-bit
  *o_top = o;
  // Per row a heap of top_n 64-bit keys, rows top_n + 1 keys apart (the owner lanes' accesses at
  // one heap index fall in distinct banks).
  return o + (a.top_n > 0 ? int64_t{2} * kRows * (a.top_n + 1) : 0);
}

// A top-n entry as one unsigned key: larger key = higher score, ties to the larger key index
// (the order DensePassParams::top_index states). +-0 share one key; scores are never NaN.
__device__ __forceinline__ uint64_t top_key(float s, int32_t j) {
  const uint32_t b = s == 0.0f ? 0u : __float_as_uint(s);
  const uint32_t o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return uint64_t{o} << 32 | static_cast<uint32_t>(j);
}
__device__ __forceinline__ float top_key_score(uint64_t k) {
  const uint32_t o = static_cast<uint32_t>(k >> 32);
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}
__device__ __forceinline__ int32_t top_key_index(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu); }

// A raw score bound for the top-n scan: every raw score s with s * scale >= thr (fp32, scale >
// 0, thr finite) is >= the result. thr / scale is within 2^-24 of the exact quotient and the
// product's rounding within 2^-24 of s * scale; the margin (2^-20 relative plus 1e-30 absolute,
// for products near zero) covers both many times over. A bound that is not finite (scores that
// overflowed) gives -FLT_MAX: every unmasked key is a candidate.
__device__ __forceinline__ float raw_floor(float thr, float scale) {
  const float r = thr / scale;
  return isfinite(r) ? r - fabsf(r) * 0x1p-20f - 1e-30f : -FLT_MAX;
}

// Bits 2 i and 2 i + 1 of x (i < 8) moved to bits 8 i and 8 i + 1.
__device__ __forceinline__ unsigned long long spread_pairs8(uint32_t x) {
  unsigned long long y = x & 0xffffu;
  y = (y | (y << 24)) & 0x000000ff000000ffull;
  y = (y | (y << 12)) & 0x000f000f000f000full;
  return (y | (y << 6)) & 0x0303030303030303ull;
}

// Two CTAs per SM at D = 128 (~246 registers); a 168-register cap for three spills (NOTES.md).
// MOM: also the raw scores' 16-key moments of the SNR probe (pass 1, from the same score
// fragments: kernels/cuda/score_moments.cuh; DensePassParams::score_sum).
template <int D, typename T16, Nx NX, bool MOM>
__global__ void __launch_bounds__(kWarps * 32, D <= 64 ? 3 : 2) dense_pass_kernel(DenseArgs a) {
  using M = Mma<T16>;
  constexpr bool X3 = NX == Nx::x3;
  constexpr int LD = D + 8;
  constexpr int LO = 4 * kKeys * LD;  // x3: a tile's lo part lies LO elements past its hi part
  extern __shared__ uint4 smem_raw[];
  // K and V tiles, double-buffered (cp.async: the next tile loads during this tile's MMAs).
  uint16_t* const kbuf0 = reinterpret_cast<uint16_t*>(smem_raw);  // [kKeys][LD] each
  uint16_t* const vbuf0 = kbuf0 + kKeys * LD;
  uint16_t* const kbuf1 = vbuf0 + kKeys * LD;
  uint16_t* const vbuf1 = kbuf1 + kKeys * LD;
  uint16_t* ks = kbuf0;                                          // the current tile's buffers
  uint16_t* vs = vbuf0;
  float* st = reinterpret_cast<float*>(vbuf1 + kKeys * LD + (X3 ? LO : 0));  // [kWarps][16][kKeys + 1] scores
  int64_t o_seg8, o_seg1, o_carry, o_top;
  pass2_floats(a, &o_seg8, &o_seg1, &o_carry, &o_top);
  float* seg8 = st + o_seg8;
  float* seg1 = st + o_seg1;
  float* carry = st + o_carry;
  uint64_t* top_h = reinterpret_cast<uint64_t*>(st + o_top);   // [kRows][top_n + 1]
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
  load_q_fragments<D>(qa, v0 ? a.q + h * a.q_sh + t0 * a.q_st : nullptr,
                      v1 ? a.q + h * a.q_sh + t1 * a.q_st : nullptr, d, qd);
  uint32_t qa_lo[X3 ? D / 16 : 1][4];
  if constexpr (X3)
    load_q_fragments<D>(qa_lo, v0 ? a.q_lo + h * a.q_sh + t0 * a.q_st : nullptr,
                        v1 ? a.q_lo + h * a.q_sh + t1 * a.q_st : nullptr, d, qd);
  // Starts the asynchronous copy of keys [j0, j0 + 64) (and values) into buffer `buf`.
  // Each thread copies 16 bytes (column c8) of rows cp_row + it * kRowStep; the address
  // arithmetic is hoisted out of the key loop (NOTES.md, dense_pass v4: recomputing it per
  // row cost a quarter of all instructions issued).
  constexpr int kRowStep = kWarps * 32 / (D / 8);  // rows per pass of the CTA
  const int cp_row = tid / (D / 8), c8 = (tid % (D / 8)) * 8;
  const bool col_ok = c8 < d;
  const uint16_t* const kbase = a.k + kv * a.k_sh;  // a valid address for the zero-fill copies
  const uint16_t* const vbase = a.v ? a.v + kv * a.v_sh : kbase;
  const uint16_t* const ksrc = kbase + cp_row * a.k_st + (col_ok ? c8 : 0);
  const uint16_t* const vsrc = vbase + cp_row * a.v_st + (col_ok ? c8 : 0);
  const int dst_off = cp_row * LD + c8;
  const int64_t k_step = kRowStep * a.k_st, v_step = kRowStep * a.v_st;  // one copy's rows apart
  auto issue = [&](int64_t j0, int buf, bool with_v) {
    uint16_t* const kd = (buf ? kbuf1 : kbuf0) + dst_off;
    uint16_t* const vd = (buf ? vbuf1 : vbuf0) + dst_off;
    const uint16_t* const kj = ksrc + j0 * a.k_st;
    const uint16_t* const vj = vsrc + j0 * a.v_st;
    if (!X3 && col_ok && j0 + kKeys <= key_end) {
      // A whole tile and a column in range: every copy reads, no zero fill, no per-copy bound
      // or address select (the general form below cost ~10 % of the kernel's instructions).
      const uint16_t* kp = kj;
      const uint16_t* vp = vj;
#pragma unroll
      for (int it = 0; it < kKeys / kRowStep; ++it, kp += k_step, vp += v_step) {
        cp_async16_all(kd + it * kRowStep * LD, kp);
        if (with_v) cp_async16_all(vd + it * kRowStep * LD, vp);
      }
      cp_async_commit();
      return;
    }
    const int64_t rows_left = key_end - j0 - cp_row;  // copy `it` is in range iff it * kRowStep < rows_left
#pragma unroll
    for (int it = 0; it < kKeys / kRowStep; ++it) {
      const bool ok = col_ok && it * kRowStep < rows_left;
      cp_async16(kd + it * kRowStep * LD, ok ? kj + it * kRowStep * a.k_st : kbase, ok);
      if (with_v) cp_async16(vd + it * kRowStep * LD, ok ? vj + it * kRowStep * a.v_st : vbase, ok);
      if constexpr (X3) {  // the lo parts: same offsets in a.k_lo / a.v_lo
        const uint16_t* const klo = a.k_lo + (kbase - a.k);
        cp_async16(kd + LO + it * kRowStep * LD, ok ? a.k_lo + (kj - a.k) + it * kRowStep * a.k_st : klo, ok);
        if (with_v) {
          const uint16_t* const vlo = a.v_lo + (vbase - a.v);
          cp_async16(vd + LO + it * kRowStep * LD, ok ? a.v_lo + (vj - a.v) + it * kRowStep * a.v_st : vlo, ok);
        }
      }
    }
    cp_async_commit();
  };
  // Tile j0 (buffer `buf`, issued earlier) becomes current once the next one is in flight.
  // The buffer written here was last read in the previous iteration, which ends in a barrier.
  auto begin_tile = [&](int64_t j0, int buf, bool with_v) {
    if (j0 + kKeys < key_end) {
      issue(j0 + kKeys, buf ^ 1, with_v);
      cp_async_wait_group<1>();
    } else {
      cp_async_wait_group<0>();
    }
    __syncthreads();
    ks = buf ? kbuf1 : kbuf0;
    vs = buf ? vbuf1 : vbuf0;
  };
  // Raw scores q . k of keys [j0, j0 + 64) (unscaled). Only a tile that reaches past the
  // CTA's first query needs the causal mask (keys past the row, or past the range, -> -inf);
  // every key of an earlier tile is visible to all of the CTA's rows.
  auto scores = [&](int64_t j0, float sc[kKeys / 8][4]) {
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
    // ldmatrix x4: matrices (n8 tile 2np, dims +0), (2np, +8), (2np + 1, +0), (2np + 1, +8).
    const uint16_t* kaddr = ks + ((lane / 16) * 8 + lane % 8) * LD + ((lane / 8) % 2) * 8;
#pragma unroll
    for (int np = 0; np < kKeys / 16; ++np)
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t r[4];
        if constexpr (X3) {  // hi.lo + lo.hi first, then hi.hi
          ldmatrix_x4(r, kaddr + LO + np * 16 * LD + kk * 16);
          M::run(sc[2 * np], qa[kk], r[0], r[1]);
          M::run(sc[2 * np + 1], qa[kk], r[2], r[3]);
        }
        ldmatrix_x4(r, kaddr + np * 16 * LD + kk * 16);
        if constexpr (X3) {
          M::run(sc[2 * np], qa_lo[kk], r[0], r[1]);
          M::run(sc[2 * np + 1], qa_lo[kk], r[2], r[3]);
        }
        M::run(sc[2 * np], qa[kk], r[0], r[1]);
        M::run(sc[2 * np + 1], qa[kk], r[2], r[3]);
      }
    if (j0 + kKeys - 1 > r_begin) {
      const int lim0 = v0 ? static_cast<int>(min(t0 - j0, int64_t{kKeys})) : -1;
      const int lim1 = v1 ? static_cast<int>(min(t1 - j0, int64_t{kKeys})) : -1;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = nt * 8 + 2 * qd + e;
          if (c > lim0) sc[nt][e] = -INFINITY;
          if (c > lim1) sc[nt][2 + e] = -INFINITY;
        }
    }
  };
  // x3: scores are q.k 2^-(eq + ek), values v 2^-ev, P packed x 2^14: undone here and at the output.
  const float sl2 = X3 ? x3_scale_log2<X3>(a) : a.scale_log2;

  // Top-n, in pass 1 (ranks by score need no lse): a key is a candidate only when its raw
  // score reaches the row's bound (raw_floor of its current n-th best, broadcast by shuffle
  // from the owning lane); the owner (lane r < 16 owns row r of the warp) keeps the row's best
  // keys (top_key) in a min-heap in shared memory, so a candidate costs one sift of at most
  // log2(n) levels whatever its rank. Keys are unique (one per key index), so the kept set, and
  // the list sorted at the end, do not depend on the order candidates arrive in.
  const bool want_top = a.top_n > 0;
  const int r_own = lane;  // valid when lane < 16
  const int64_t t_own = r_begin + warp * 16 + r_own;
  const bool own = lane < 16 && t_own < r_end;
  float* const wst = st + warp * 16 * (kKeys + 1);  // the tile's scaled scores, top-n only
  uint64_t* const my_h = top_h + (warp * 16 + (lane % 16)) * (a.top_n + 1);
  const int n_top = a.top_n;
  int cnt = 0;
  // The owned row's candidate bound on raw scores: -FLT_MAX (every unmasked key) until the heap
  // is full, then raw_floor of its n-th best score. The scan compares raw scores with it; the
  // heap's own comparison of whole keys decides, so a bound below the exact one only admits
  // candidates that the heap turns away (and a scaled score of -inf is dropped as before).
  float my_thr_raw = -FLT_MAX;
  auto top_n_tile = [&](int64_t j0, const float sc[kKeys / 8][4]) {
    const float thr0 = __shfl_sync(0xffffffffu, my_thr_raw, g), thr1 = __shfl_sync(0xffffffffu, my_thr_raw, g + 8);
    // Bit 2 nt + e of loc0 / loc1: this lane's score (nt, e) of row g / g + 8 is a candidate.
    uint32_t loc0 = 0, loc1 = 0;
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (sc[nt][e] >= thr0) loc0 |= 1u << (2 * nt + e);
        if (sc[nt][2 + e] >= thr1) loc1 |= 1u << (2 * nt + e);
      }
    if (!__any_sync(0xffffffffu, (loc0 | loc1) != 0)) return;
    // The tile's column c = 8 nt + 2 qd + e as bit c of the row's 64-bit mask.
    unsigned long long mk0 = spread_pairs8(loc0) << (2 * qd), mk1 = spread_pairs8(loc1) << (2 * qd);
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      mk0 |= __shfl_xor_sync(0xffffffffu, mk0, o);
      mk1 |= __shfl_xor_sync(0xffffffffu, mk1, o);
    }
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        wst[g * (kKeys + 1) + nt * 8 + 2 * qd + e] = sc[nt][e] * sl2;
        wst[(g + 8) * (kKeys + 1) + nt * 8 + 2 * qd + e] = sc[nt][2 + e] * sl2;
      }
    const unsigned long long c0 = __shfl_sync(0xffffffffu, mk0, (lane % 8) * 4);
    const unsigned long long c1 = __shfl_sync(0xffffffffu, mk1, (lane % 8) * 4);
    unsigned long long mine = lane < 8 ? c0 : c1;
    __syncwarp();
    if (own) {
      const float* srow = wst + r_own * (kKeys + 1);
      while (mine) {
        const int jj = __ffsll(static_cast<long long>(mine)) - 1;
        mine &= mine - 1;
        // A finite raw score whose scaled value overflowed to -inf passed the raw bound; the
        // scan on scaled scores never took it.
        if (srow[jj] == -INFINITY) continue;
        const uint64_t key = top_key(srow[jj], static_cast<int32_t>(j0 + jj));
        int i;
        if (cnt < n_top) {  // not full: add the key, sift it up
          i = cnt++;
          while (i > 0) {
            const int p = (i - 1) >> 1;
            const uint64_t pk = my_h[p];
            if (pk < key) break;
            my_h[i] = pk;
            i = p;
          }
        } else {  // full: the key replaces the smallest if larger, sifted down
          if (key < my_h[0]) continue;
          i = 0;
          for (;;) {
            int c = 2 * i + 1;
            if (c >= n_top) break;
            uint64_t ck = my_h[c];
            if (c + 1 < n_top) {
              const uint64_t c2 = my_h[c + 1];
              if (c2 < ck) ck = c2, ++c;
            }
            if (key < ck) break;
            my_h[i] = ck;
            i = c;
          }
        }
        my_h[i] = key;
      }
      if (cnt == n_top) my_thr_raw = raw_floor(top_key_score(my_h[0]), sl2);
    }
    __syncwarp();
  };

  // Pass 1: online softmax (+ output), masses of the fast block sizes in the log2 domain.
  const bool want_out = a.out != nullptr;
  float acc[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // running max (scaled, log2 units)
  // Carries of fast blocks longer than a tile: [16 rows][n_sizes] per warp; lane qd 0 keeps
  // row g, lane qd 1 row g + 8.
  float* const wcarry1 = carry + warp * 2 * 16 * a.n_sizes;
  // MOM: a row's 16-key blocks wholly before its own (keys < lim16), none masked.
  const int64_t lim16_0 = v0 ? (t0 >> 4) << 4 : 0, lim16_1 = v1 ? (t1 >> 4) << 4 : 0;
  issue(0, 0, want_out);
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
    begin_tile(j0, static_cast<int>((j0 / kKeys) & 1), want_out);
    float sc[kKeys / 8][4];
    scores(j0, sc);
    if constexpr (MOM) {
      float zs[2], zz[2], zm[2];  // segment qd of rows t0 / t1
      int32_t zx[2];
      segment_moments16(sc, j0, qd, zs, zz, zm, zx);
      const int64_t js = j0 + 16 * qd, m = js >> 4;
      if (js < lim16_0) {
        const int64_t o = (t0 - a.q_begin) * a.mom_stride + m;
        a.mom_sum[o] = zs[0], a.mom_sq[o] = zz[0], a.mom_max[o] = zm[0], a.mom_arg[o] = zx[0];
      }
      if (js < lim16_1) {
        const int64_t o = (t1 - a.q_begin) * a.mom_stride + m;
        a.mom_sum[o] = zs[1], a.mom_sq[o] = zz[1], a.mom_max[o] = zm[1], a.mom_arg[o] = zx[1];
      }
    }
    if (want_top) top_n_tile(j0, sc);
    float tm0 = -INFINITY, tm1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      tm0 = fmaxf(tm0, fmaxf(sc[nt][0], sc[nt][1]));
      tm1 = fmaxf(tm1, fmaxf(sc[nt][2], sc[nt][3]));
    }
    quad_allreduce_max(tm0, tm1);
    // The scale is positive, so the max of the scaled scores is the scaled max.
    const float mx0 = fmaxf(m0, tm0 * sl2), mx1 = fmaxf(m1, tm1 * sl2);
    const float u0 = mx0 == -INFINITY ? 0.f : mx0, u1 = mx1 == -INFINITY ? 0.f : mx1;
    const float al0 = fast_exp2(m0 - u0), al1 = fast_exp2(m1 - u1);
    float x0[kKeys / 16], x1[kKeys / 16];  // this thread's part of each 16-key block's sum
    uint32_t pa[kKeys / 16][4];
    uint32_t pl[NX == Nx::plain ? 1 : kKeys / 16][4];  // split P: the lo parts
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      const float p00 = fast_exp2(fmaf(sc[nt][0], sl2, -u0)), p01 = fast_exp2(fmaf(sc[nt][1], sl2, -u0));
      const float p10 = fast_exp2(fmaf(sc[nt][2], sl2, -u1)), p11 = fast_exp2(fmaf(sc[nt][3], sl2, -u1));
      x0[nt / 2] = (nt % 2 ? x0[nt / 2] : 0.f) + (p00 + p01);
      x1[nt / 2] = (nt % 2 ? x1[nt / 2] : 0.f) + (p10 + p11);
      if constexpr (NX == Nx::plain) {
        pa[nt / 2][(nt % 2) * 2 + 0] = M::pack(p00, p01);
        pa[nt / 2][(nt % 2) * 2 + 1] = M::pack(p10, p11);
      } else {
        constexpr float ps = X3 ? 16384.0f : 1.0f;  // x3: P 2^14 in fp16 (exact scaling)
        pack_split<M>(p00 * ps, p01 * ps, pa[nt / 2][(nt % 2) * 2 + 0], pl[nt / 2][(nt % 2) * 2 + 0]);
        pack_split<M>(p10 * ps, p11 * ps, pa[nt / 2][(nt % 2) * 2 + 1], pl[nt / 2][(nt % 2) * 2 + 1]);
      }
    }
    // per-thread partial sums; reduced over the quad at the end
    l0 = l0 * al0 + ((x0[0] + x0[1]) + (x0[2] + x0[3]));
    l1 = l1 * al1 + ((x1[0] + x1[1]) + (x1[2] + x1[3]));
    m0 = mx0;
    m1 = mx1;
    if (want_out) {
      // x 1 is exact: once no row of the warp has a new max (most tiles past a row's first few)
      // the rescale is skipped.
      if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) rescale_o<D>(acc, al0, al1);
      if constexpr (NX == Nx::plain)
        mma_pv<M, D>(acc, pa, vs, LD, 0, kKeys / 8, lane);
      else
        mma_pv_split<M, D, kKeys / 16, X3>(acc, pa, pl, vs, vs + LO, LD, 0, kKeys / 8, lane);
    }
    if (a.any_fast) {
      // Quad butterfly: lane qd ends with the whole 16-key block qd of the tile (z), the
      // 32-key block qd / 2 (y) and the tile (w), for both rows.
      const bool hi2 = qd & 2, hi1 = qd & 1;
      auto block16 = [&](const float x[kKeys / 16]) {
        float ka = hi2 ? x[2] : x[0], kb = hi2 ? x[3] : x[1];
        ka += __shfl_xor_sync(0xffffffffu, hi2 ? x[0] : x[2], 2);
        kb += __shfl_xor_sync(0xffffffffu, hi2 ? x[1] : x[3], 2);
        return (hi1 ? kb : ka) + __shfl_xor_sync(0xffffffffu, hi1 ? ka : kb, 1);
      };
      const float z0 = block16(x0), z1 = block16(x1);
      const float y0 = z0 + __shfl_xor_sync(0xffffffffu, z0, 1), y1 = z1 + __shfl_xor_sync(0xffffffffu, z1, 1);
      const float w0 = y0 + __shfl_xor_sync(0xffffffffu, y0, 2), w1 = y1 + __shfl_xor_sync(0xffffffffu, y1, 2);
      const bool last = j0 + kKeys >= key_end;
      const int64_t tile_idx = j0 / kKeys;
      // (computed here, not held through the loop: registers)
      const int64_t row0 = h * a.q_count + (t0 - a.q_begin), row1 = row0 + 8;
#pragma unroll
      for (int i = 0; i < kDensePassMaxBlockSizes; ++i) {
        if (i >= a.n_sizes) break;
        const MassFold fold = a.fold[i];
        const int64_t nb = a.n_blocks[i];
        float* const mass = a.mass[i];
        if (fold == MassFold::b16) {
          if (j0 + 16 * qd < key_end) {
            if (v0) mass[row0 * nb + (j0 >> 4) + qd] = u0 + fast_log2(z0);
            if (v1) mass[row1 * nb + (j0 >> 4) + qd] = u1 + fast_log2(z1);
          }
        } else if (fold == MassFold::b32) {
          if (!hi1 && j0 + 32 * (qd / 2) < key_end) {
            if (v0) mass[row0 * nb + (j0 >> 5) + qd / 2] = u0 + fast_log2(y0);
            if (v1) mass[row1 * nb + (j0 >> 5) + qd / 2] = u1 + fast_log2(y1);
          }
        } else if (fold == MassFold::tiles && qd < 2) {
          // Tile counts are < 2^25 (T < 2^31); no 64-bit division in the loop.
          const int tpb = a.tiles_per_block[i], sh = a.tpb_shift[i], ti = static_cast<int>(tile_idx);
          const int phase = sh >= 0 ? ti & (tpb - 1) : ti % tpb;
          float* const cp = wcarry1 + (g + 8 * qd) * a.n_sizes + i;
          const float c = (qd ? w1 : w0) + (phase == 0 ? 0.f : *cp * (qd ? al1 : al0));
          if (phase == tpb - 1 || last) {
            if (qd ? v1 : v0)
              mass[(qd ? row1 : row0) * nb + (sh >= 0 ? ti >> sh : ti / tpb)] = (qd ? u1 : u0) + fast_log2(c);
          } else {
            *cp = c;
          }
        }
      }
    }
    __syncthreads();  // all reads of this buffer done before it is refilled
  }
  // Quad sum, written out: quad_allreduce_sum here (with mma_pv and quad_allreduce_max)
  // makes ptxas schedule this kernel differently (same registers and size); NOTES.md, code map.
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o);
  }
  const float lse2_0 = m0 + log2f(l0), lse2_1 = m1 + log2f(l1);  // log2 units
  const int64_t row0 = h * a.q_count + (t0 - a.q_begin), row1 = row0 + 8;
  if (qd == 0) {
    if (v0) a.lse[row0] = lse2_0 * kLn2;
    if (v1) a.lse[row1] = lse2_1 * kLn2;
  }
  if (want_out) {
    const float i0 = (X3 ? x3_out_mul<X3>(a) : 1.f) / l0, i1 = (X3 ? x3_out_mul<X3>(a) : 1.f) / l1;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
      const int c = nd * 8 + 2 * qd;
      if (c >= d) continue;
      if (v0) *reinterpret_cast<float2*>(a.out + row0 * d + c) = make_float2(acc[nd][0] * i0, acc[nd][1] * i0);
      if (v1) *reinterpret_cast<float2*>(a.out + row1 * d + c) = make_float2(acc[nd][2] * i1, acc[nd][3] * i1);
    }
  }
  if (a.any_fast) {
    // The warp's rows of log2 masses (written by its own lanes) become masses.
    __syncwarp();
    for (int i = 0; i < a.n_sizes; ++i) {
      if (a.fold[i] == MassFold::pass2) continue;
      const int64_t nb = a.n_blocks[i], n_set = min(nb, (key_end - 1) / a.block_size[i] + 1);
      for (int r = 0; r < 16; ++r) {
        const float l2 = __shfl_sync(0xffffffffu, r < 8 ? lse2_0 : lse2_1, (r % 8) * 4);
        const int64_t t = r_begin + warp * 16 + r;
        if (t >= r_end) break;
        finish_mass_row(a.mass[i] + (h * a.q_count + (t - a.q_begin)) * nb, n_set, nb, l2, lane);
      }
    }
  }
  if (want_top) {
    // lse (log2) of the owned row: row r_own's value lives on lane (r_own % 8) * 4 of the quad
    // layout (row g on lanes 4g.., row g + 8 as the second row).
    const float lse_g0 = __shfl_sync(0xffffffffu, lse2_0, (lane % 8) * 4);
    const float lse_g1 = __shfl_sync(0xffffffffu, lse2_1, (lane % 8) * 4);
    const float lse_own = lane < 8 ? lse_g0 : lse_g1;
    const int64_t row_own = h * a.q_count + (t_own - a.q_begin);
    if (own)  // the heap sorted descending (insertion sort: once a row)
      for (int i = 1; i < cnt; ++i) {
        const uint64_t key = my_h[i];
        int p = i;
        for (; p > 0 && my_h[p - 1] < key; --p) my_h[p] = my_h[p - 1];
        my_h[p] = key;
      }
    for (int n = 0; n < a.top_n && own; ++n) {
      const bool ok = n < cnt;
      const uint64_t key = ok ? my_h[n] : 0;
      a.top_index[row_own * a.top_n + n] = ok ? top_key_index(key) : -1;
      if (a.top_prob) a.top_prob[row_own * a.top_n + n] = ok ? exp2f(top_key_score(key) - lse_own) : 0.f;
    }
  }
  if (!a.any_slow) return;

  // Pass 2 (block sizes other than the fast ones): exact probabilities into block masses,
  // folded in the mma fragment layout. P of a key tile is reduced per 8-key segment (own 2
  // columns, quad shuffle) into seg8 (block sizes that are multiples of 8) and/or kept per key
  // in seg1 (other sizes); then the warp's lanes take (row, block) pairs of the tile, sum their
  // segments (plus the carry of a block begun in an earlier tile) and write each finished mass
  // once. Blocks past the CTA's last key are zero-filled at the end, coalesced.
  float* wseg8 = seg8 + warp * 16 * kSeg8Ld;                   // [16][kSeg8Ld]
  float* wseg1 = seg1 + warp * 16 * (kKeys + 1);               // [16][kKeys + 1], a.any_w1 only
  float* wcarry = carry + warp * 2 * 16 * a.n_sizes;           // [2][16][n_sizes]
  issue(0, 0, false);
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
    const int parity = static_cast<int>((j0 / kKeys) & 1);
    begin_tile(j0, parity, false);
    float sc[kKeys / 8][4];
    scores(j0, sc);
    __syncthreads();  // K buffer read; the next iteration refills it while this one folds
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)  // log2 units (-inf stays -inf)
      sc[nt][0] *= sl2, sc[nt][1] *= sl2, sc[nt][2] *= sl2, sc[nt][3] *= sl2;
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      const float p00 = sc[nt][0] == -INFINITY ? 0.f : exp2f(sc[nt][0] - lse2_0);
      const float p01 = sc[nt][1] == -INFINITY ? 0.f : exp2f(sc[nt][1] - lse2_0);
      const float p10 = sc[nt][2] == -INFINITY ? 0.f : exp2f(sc[nt][2] - lse2_1);
      const float p11 = sc[nt][3] == -INFINITY ? 0.f : exp2f(sc[nt][3] - lse2_1);
      if (a.any_w1) {
        const int c = nt * 8 + 2 * qd;
        wseg1[g * (kKeys + 1) + c] = p00;
        wseg1[g * (kKeys + 1) + c + 1] = p01;
        wseg1[(g + 8) * (kKeys + 1) + c] = p10;
        wseg1[(g + 8) * (kKeys + 1) + c + 1] = p11;
      }
      if (a.any_w8) {
        float s0 = p00 + p01, s1 = p10 + p11;
        s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
        s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
        if (qd == (nt & 3)) {
          wseg8[g * kSeg8Ld + nt] = s0;
          wseg8[(g + 8) * kSeg8Ld + nt] = s1;
        }
      }
    }
    __syncwarp();
    const int64_t kend = min(j0 + kKeys, key_end);
    const bool last = j0 + kKeys >= key_end;
    const float* crd = wcarry + parity * 16 * a.n_sizes;
    float* cwr = wcarry + (parity ^ 1) * 16 * a.n_sizes;
    for (int i = 0; i < a.n_sizes; ++i) {
      if (a.fold[i] != MassFold::pass2) continue;  // folded in pass 1
      const int64_t B = a.block_size[i];
      const bool w8 = B % 8 == 0;
      const int shift = w8 ? 3 : 0;
      const float* seg = w8 ? wseg8 : wseg1;
      const int ld = w8 ? kSeg8Ld : kKeys + 1;
      // 32-bit divisions (key positions < 2^31; a larger B has one block in range anyway).
      const uint32_t B32 = static_cast<uint32_t>(min(B, int64_t{1} << 31));
      const int64_t blo = static_cast<uint32_t>(j0) / B32, bhi = static_cast<uint32_t>(kend - 1) / B32;
      const int nbt = static_cast<int>(bhi - blo + 1);
      for (int pi = lane; pi < 16 * nbt; pi += 32) {
        const int r = pi / nbt, bb = pi - r * nbt;
        const int64_t blk = blo + bb, ks = blk * B, ke = ks + B;
        const int s_lo = static_cast<int>(max(ks - j0, int64_t{0})) >> shift;
        const int s_hi = static_cast<int>(min(ke - j0, int64_t{kKeys})) >> shift;
        float sum = ks < j0 ? crd[r * a.n_sizes + i] : 0.f;
        for (int s = s_lo; s < s_hi; ++s) sum += seg[r * ld + s];
        if (ke <= j0 + kKeys || last) {
          const int64_t t = r_begin + warp * 16 + r;
          if (t < r_end) a.mass[i][(h * a.q_count + (t - a.q_begin)) * a.n_blocks[i] + blk] = sum;
        } else {
          cwr[r * a.n_sizes + i] = sum;
        }
      }
    }
  }
  // Blocks past the CTA's last key: zero (the header's b > floor(t / B)), coalesced.
  for (int i = 0; i < a.n_sizes; ++i) {
    const int64_t nb = a.n_blocks[i], z0 = (key_end - 1) / a.block_size[i] + 1;
    if (z0 >= nb || a.fold[i] != MassFold::pass2) continue;
    for (int r = 0; r < 16; ++r) {
      const int64_t t = r_begin + warp * 16 + r;
      if (t >= r_end) break;
      zero_mass_tail(a.mass[i] + (h * a.q_count + (t - a.q_begin)) * nb, z0, nb, lane);
    }
  }
}

template <int D, typename T16, Nx NX = Nx::plain, bool MOM = false>
const char* launch_dense(const DenseArgs& a, int64_t n_q_heads, cudaStream_t stream) {
  int64_t o_seg8, o_seg1, o_carry, o_top;
  const size_t smem = size_t{NX == Nx::x3 ? 8 : 4} * kKeys * (D + 8) * sizeof(uint16_t) +
                      sizeof(float) * static_cast<size_t>(pass2_floats(a, &o_seg8, &o_seg1, &o_carry, &o_top));
  MOBA_CUDA_TRY(cudaFuncSetAttribute(dense_pass_kernel<D, T16, NX, MOM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  // ~73 KB per CTA at B3's sizes: the largest shared-memory carveout (2 CTAs per SM at D = 128,
  // which the registers allow; 3 at D = 64).
  MOBA_CUDA_TRY(cudaFuncSetAttribute(dense_pass_kernel<D, T16, NX, MOM>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                     cudaSharedmemCarveoutMaxShared));
  const int64_t n_tiles = (a.q_count + kRows - 1) / kRows;
  dense_pass_kernel<D, T16, NX, MOM><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_q_heads)),
                              kWarps * 32, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* dense_pass_cuda(const DensePassParams& p, void* stream_ptr) {
  if (const char* e = dense_pass_can_run(p)) return e;
  const int64_t Hq = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim;
  if (d > 128 || d % 8 != 0) return "dense_pass_cuda: head_dim must be a multiple of 8 and <= 128";
  if (T > INT32_MAX) return "dense_pass_cuda: n_tokens must be < 2^31 (int32 key positions)";
  if (p.top_n > kMaxTopN) return "dense_pass_cuda: top_n > 64 not supported";
  ElemKind kind = kBF16;
  Nx nx = Nx::plain;
  MOBA_TRY(qkv_numerics(p, p.out != nullptr, "dense_pass_cuda: 16-bit inputs need dtype f16 or bf16",
                        "dense_pass_cuda: q, k, v disagree on the 16-bit dtype", &kind, &nx));
  if (p.score_sum) {
    if (!p.score_sq || !p.score_max || !p.score_arg) return "dense_pass_cuda: score moments need all four outputs";
    if (nx == Nx::x3 || !p.q.raw16 || !p.k.raw16 || Hq != 1 || p.score_stride < (p.query_begin + p.query_count) / 16)
      return "dense_pass_cuda: score moments need one query head, 16-bit q and k as given, and a row per query";
  }
  if (p.query_count == 0) return nullptr;
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  Scratch scratch(stream);
  DenseArgs a{};
  // 16-bit operands: given, or converted from the fp32 views (contiguous copies); v only
  // when the output is asked for.
  if (nx == Nx::x3)
    MOBA_TRY(set_qkv_operands_x3(p, p.out != nullptr, scratch, stream, &a));
  else
    MOBA_TRY(set_qkv_operands(p, p.out != nullptr, kind, scratch, stream,
                              "dense_pass_cuda: 16-bit inputs need 16-byte aligned rows", &a));
  a.n_tokens = T;
  a.head_dim = d;
  a.group = Hq / p.k.n_heads;
  a.q_begin = p.query_begin;
  a.q_count = p.query_count;
  a.scale_log2 = softmax_scale_log2(p);
  a.lse = p.lse;
  a.out = p.out;
  a.n_sizes = p.n_block_sizes;
  const bool all_pass2 = cuda_tuning().dense_all_pass2;  // every block size through pass 2
  for (int i = 0; i < p.n_block_sizes; ++i) {
    const int64_t B = p.block_sizes[i];
    a.block_size[i] = B;
    a.n_blocks[i] = block_count(T, B);
    a.mass[i] = p.block_mass[i];
    a.fold[i] = all_pass2     ? MassFold::pass2
                : B == 16       ? MassFold::b16
                : B == 32       ? MassFold::b32
                : B % kKeys == 0 ? MassFold::tiles
                                 : MassFold::pass2;
    // A block longer than the sequence is one block: its tile count is clamped to fit an int.
    a.tiles_per_block[i] = a.fold[i] == MassFold::tiles ? static_cast<int>(std::min<int64_t>(B / kKeys, T / kKeys + 2)) : 1;
    const int tpb = a.tiles_per_block[i];
    a.tpb_shift[i] = (tpb & (tpb - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(tpb)) : -1;
    if (a.fold[i] != MassFold::pass2) {
      a.any_fast = true;
    } else {
      a.any_slow = true;
      (B % 8 == 0 ? a.any_w8 : a.any_w1) = true;
    }
  }
  a.top_n = p.top_n;
  a.top_index = p.top_index;
  a.top_prob = p.top_prob;
  a.mom_sum = p.score_sum, a.mom_sq = p.score_sq, a.mom_max = p.score_max, a.mom_arg = p.score_arg;
  a.mom_stride = p.score_stride;
  if (Hq > 65535) return "dense_pass_cuda: too many heads";
  if (nx == Nx::x3)
    return d <= 64 ? launch_dense<64, __half, Nx::x3>(a, Hq, stream)
                   : launch_dense<128, __half, Nx::x3>(a, Hq, stream);
  // The 16-bit paths, with the score moments (MOM; checked above: 16-bit q and k as given, one
  // query head) or without.
  const auto launch16 = [&](auto mom) {
    constexpr bool MOM = decltype(mom)::value;
    if (nx == Nx::split_p)
      return d <= 64 ? launch_dense<64, __nv_bfloat16, Nx::split_p, MOM>(a, Hq, stream)
                     : launch_dense<128, __nv_bfloat16, Nx::split_p, MOM>(a, Hq, stream);
    if (kind == kF16)
      return d <= 64 ? launch_dense<64, __half, Nx::plain, MOM>(a, Hq, stream)
                     : launch_dense<128, __half, Nx::plain, MOM>(a, Hq, stream);
    return d <= 64 ? launch_dense<64, __nv_bfloat16, Nx::plain, MOM>(a, Hq, stream)
                   : launch_dense<128, __nv_bfloat16, Nx::plain, MOM>(a, Hq, stream);
  };
  return a.mom_sum ? launch16(std::true_type{}) : launch16(std::false_type{});
}

}  // namespace moba::kernels
