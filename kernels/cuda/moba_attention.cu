// CUDA MoBA block-sparse attention forward (kernels/moba_attention.h): gather by block, or,
// where selections are dense (a query attends a large share of its causal keys), the tile
// path of moba_attention_tile.cuh; use_tile_path below picks (CudaTuning::attn_path forces).
// The gather path:
//
// Work is independent of how selections are spread (no dense fallback on random routing):
//  1. csc_count / csc_scatter: per (query head, row group of `rows` queries, key block) the
//     list of queries that attend the block (valid, causal, deduplicated), built with atomics
//     into an int32 entry array ordered by (head, row group, block) through one prefix sum.
//     Order inside a list is irrelevant: each query's result depends only on the ascending
//     order of its own blocks. Entries carry flags for the query's first and last attended
//     block; rows that attend nothing are written (0, -inf) by csc_count.
//  2. moba_attention_kernel: one CTA per (row group, query head), heaviest first (last row
//     groups of every head). It walks the key blocks that have a list, ascending: their bounds
//     are read and compacted 32 blocks a warp at a time, so empty blocks cost no step. It
//     stages each block's K/V in shared memory once (pieces of 128 keys, cp.async, every copy
//     of a piece in flight at once; blocks of at most half a piece are staged one block
//     ahead, the two halves taking turns), and its 4 warps take the block's queries 16 at a
//     time (the warp's first chunk gathered while the piece lands, its entries loaded a block
//     ahead). Where lists are sparse (use_warp_ctas: a few queries a block, so one warp of
//     four works), CTAs of one warp over a quarter of the rows with 64-key pieces instead,
//     several to an SM. Per chunk:
//     gather Q rows, load each row's running output (fp32, kept in `out` itself) and its
//     (max, sum), run QK^T and PV on tensor cores (mma.sync m16n8k16, 16-bit inputs, fp32
//     accumulate) with causal masking, store back.
//     A query's first visit starts from (0, -inf, 0) without reading; its last writes the
//     normalised output and lse (no init or normalise passes over `out`).
// GQA by index (KV head = h / group). Head dims up to 128 (multiple of 8; 8..64 run padded to
// 64). Inputs (kernels/operand.h): raw f16/bf16 device values, or fp32 views converted to the
// operands' 16-bit dtype. Precision::exact (Nx, cuda_util.cuh): f16 as is, bf16 with P split
// hi + lo, f32 split into scaled fp16 hi + lo ("x3", K/V lo tiles staged beside the hi ones,
// 32-key steps); Precision::fast: bf16 when all are f32 (lossy, stated). History: NOTES.md.
// Bands (moba_attention_bands_cuda): one gather pass serves up to kMaxAttentionBands
// selections of the same q, k, v; a list entry carries its band (3 bits), which picks the row's
// output, lse and running (max, sum). Per (row, band) the arithmetic is a single call's.
// A query window (q_begin, q_count) runs both paths over the window's rows only: their lists,
// row groups and tiles count from q_begin; selections, outputs and per-row scratch are indexed
// by window row, q rows and the causal masks by absolute position. A row's arithmetic does not
// depend on which rows share its CTA, so the window's rows equal the full call's bit for bit.
#include "kernels/moba_attention.h"

#include <cub/device/device_scan.cuh>
#include <cuda.h>  // CUtensorMap (the wgmma rounds' TMA staging; the driver call goes through cudart)
#include <cuda/std/functional>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/block_pool.h"
#include "kernels/constants.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/moba_attention_tile.cuh"
#include "kernels/cuda/tuning.h"
#include "kernels/cuda/wgmma.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

// CTAs of 4 warps that stage 128-key pieces; where lists are sparse (a few queries a block),
// CTAs of one warp over a quarter of the rows that stage 64-key pieces (warp_ctas below).
constexpr int kCtaWarps = 4, kCtaPiece = 128;
constexpr int kWarpCtaPiece = 64;
constexpr int kSub = 64;        // keys per online-softmax step
// The 4-warp gather kernels of 16- and 32-key steps (blocks of at most that many keys, staged a
// block ahead in halves of a piece) take pieces of two steps, not kCtaPiece: the shared memory
// that frees holds the row group's Q rows where they fit in kQSmemMax bytes (AttnArgs::q_smem).
constexpr int cta_piece(int step) { return step < kSub ? 2 * step : kCtaPiece; }
constexpr int64_t kQSmemMax = 64 * 1024;
// Shared memory for a row group of `rows` Q rows of head dim d (16-bit): what attention_bands
// checks against kQSmemMax and what launch_attention gives the QS kernels.
constexpr size_t q_smem_bytes(int64_t rows, int64_t d) { return static_cast<size_t>(rows * d) * sizeof(uint16_t); }
std::atomic<int64_t> g_q_smem_launches{0};  // moba_attention_q_smem_launches

// Per band (moba_attention_bands_cuda; one for moba_attention_cuda): selections and outputs.
struct Bands {
  const int32_t* selected[kMaxAttentionBands];  // [n_q_heads, q_count, top_k[j]]
  int top_k[kMaxAttentionBands];
  float* out[kMaxAttentionBands];  // [n_q_heads, q_count, head_dim]: rows that attend nothing
  float* lse[kMaxAttentionBands];  //   get o = 0 and lse = -inf here (lse optional)
  int64_t first_query[kMaxAttentionBands];  // queries before it attend nothing in the band
  int n;
};

// The query window: rows i in [0, q_count) of a head are queries t = q_begin + i; row groups
// are counted from q_begin. selected, out and lse hold q_count rows a head.
struct ListArgs {
  Bands bands;
  int64_t block_size, n_blocks, n_q_heads, q_begin, q_count;
  int rows, n_groups;           // rows per group, groups per head
  unsigned* counts;             // [n_q_heads, n_groups, n_blocks] (+1)
  const int64_t* offsets;       // exclusive prefix sum of counts
  int32_t* entries;             // [total] t | band << kBandShift | kFirst | kLast
  int64_t head_dim;
  uint8_t* ascending;           // warp lists: [n_q_heads * q_count][kMaxAttentionBands], 1 where a
                                // row's valid entries of that band are strictly ascending
};

// Entry bits: the query position t, its band, and flags for the query's first (smallest) and
// last (largest) attended block of that band.
constexpr uint32_t kFirst = 1u << 30, kLast = 1u << 31, kBandShift = 27, kPosMask = (1u << kBandShift) - 1;
static_assert(kMaxAttentionBands <= 8, "three band bits");

// Visits the valid, causal, distinct blocks of query t whose selection is `sel` [top_k].
template <typename F>
__device__ __forceinline__ void for_each_block(const ListArgs& a, const int32_t* sel, int top_k, int64_t t, F f) {
  int32_t seen_max = -1;
  for (int j = 0; j < top_k; ++j) {
    const int32_t b = sel[j];
    if (b < 0 || b >= a.n_blocks || int64_t{b} * a.block_size > t) continue;
    if (b <= seen_max) {  // not ascending: look for an earlier copy
      bool dup = false;
      for (int i = 0; i < j; ++i) dup |= sel[i] == b;
      if (dup) continue;
    }
    seen_max = max(seen_max, b);
    f(b);
  }
}

// One thread per window row i = (head, row) of [n_q_heads, q_count], every band.
__global__ void csc_count_kernel(const __grid_constant__ ListArgs a) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= a.n_q_heads * a.q_count) return;
  const int64_t h = i / a.q_count, r = i % a.q_count;
  const int64_t base = (h * a.n_groups + r / a.rows) * a.n_blocks;
  for (int j = 0; j < a.bands.n; ++j) {
    const int k = a.bands.top_k[j];
    int n = 0;
    if (a.q_begin + r >= a.bands.first_query[j])
      for_each_block(a, a.bands.selected[j] + i * k, k, a.q_begin + r, [&](int32_t b) {
        atomicAdd(a.counts + base + b, 1u);
        ++n;
      });
    if (n == 0) {  // attends nothing: written here, the attention kernel never sees the row
      float* o = a.bands.out[j] + i * a.head_dim;
      for (int64_t c = 0; c < a.head_dim; ++c) o[c] = 0.0f;
      if (a.bands.lse[j]) a.bands.lse[j][i] = -INFINITY;
    }
  }
}

// Scatters one window row's entries of a band (tag tj: query and band) into its row group's
// lists, in any order, duplicates skipped (for_each_block); its smallest and largest blocks
// flagged first and last.
__device__ __forceinline__ void scatter_row(const ListArgs& a, const int32_t* sel, int k, int64_t t, int64_t base,
                                            uint32_t tj) {
  int32_t b_min = 0x7fffffff, b_max = -1;
  for_each_block(a, sel, k, t, [&](int32_t b) {
    b_min = min(b_min, b);
    b_max = max(b_max, b);
  });
  for_each_block(a, sel, k, t, [&](int32_t b) {
    const unsigned slot = atomicSub(a.counts + base + b, 1u) - 1u;
    const uint32_t e = tj | (b == b_min ? kFirst : 0u) | (b == b_max ? kLast : 0u);
    a.entries[a.offsets[base + b] + slot] = static_cast<int32_t>(e);
  });
}

__global__ void csc_scatter_kernel(const __grid_constant__ ListArgs a) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= a.n_q_heads * a.q_count) return;
  const int64_t h = i / a.q_count, r = i % a.q_count, t = a.q_begin + r;
  const int64_t base = (h * a.n_groups + r / a.rows) * a.n_blocks;
  for (int j = 0; j < a.bands.n; ++j) {
    if (t < a.bands.first_query[j]) continue;
    const int k = a.bands.top_k[j];
    scatter_row(a, a.bands.selected[j] + i * k, k, t, base,
                static_cast<uint32_t>(t) | static_cast<uint32_t>(j) << kBandShift);
  }
}

// The lists a warp per window row (csc_count_warp_kernel, csc_scatter_warp_kernel), where a
// pass's rows hold many entries (use_warp_lists): its lanes read 32 consecutive entries of a
// selection row at a time (one cache line a load, not one line a thread), and a row whose valid
// entries are strictly ascending (every row the analysis gives) is counted and scattered in one
// pass each, its first and last blocks being its first and last valid entries. Other rows (any
// order, duplicates) take the per-thread code above on one lane. The same lists: a list's order
// does not matter (the attention kernel's header).
// Entry x of a selection row for query t: its block, or -1 where the contract skips it.
__device__ __forceinline__ int32_t valid_block(const ListArgs& a, const int32_t* sel, int x, int k, int64_t t) {
  if (x >= k) return -1;
  const int32_t b = sel[x];
  return b < 0 || b >= a.n_blocks || int64_t{b} * a.block_size > t ? -1 : b;
}

__global__ void csc_count_warp_kernel(const __grid_constant__ ListArgs a) {
  const int64_t i = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;  // the warp's window row
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (i >= a.n_q_heads * a.q_count) return;
  const int64_t h = i / a.q_count, r = i % a.q_count, t = a.q_begin + r;
  unsigned* const cnt = a.counts + (h * a.n_groups + r / a.rows) * a.n_blocks;
  for (int j = 0; j < a.bands.n; ++j) {
    const int k = a.bands.top_k[j];
    const int32_t* const sel = a.bands.selected[j] + i * k;
    int n = 0;
    bool asc = true;
    if (t >= a.bands.first_query[j]) {
      int32_t run = -1;  // the largest valid block of the earlier chunks
      for (int x0 = 0; x0 < k; x0 += 32) {
        const int32_t b = valid_block(a, sel, x0 + lane, k, t);
        int32_t m = b;  // inclusive prefix max over the chunk's lanes
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int32_t u = __shfl_up_sync(0xffffffffu, m, o);
          if (lane >= o) m = max(m, u);
        }
        const int32_t up = __shfl_up_sync(0xffffffffu, m, 1);  // every lane (a sync of the whole warp)
        const int32_t before = max(run, lane > 0 ? up : -1);
        asc &= b < 0 || b > before;
        run = max(run, __shfl_sync(0xffffffffu, m, 31));
        if (b >= 0) atomicAdd(cnt + b, 1u);
        n += __popc(__ballot_sync(0xffffffffu, b >= 0));
      }
      asc = __all_sync(0xffffffffu, asc);
      if (!asc) {  // not ascending (duplicates possible): undo, then count as the contract says
        for (int x0 = 0; x0 < k; x0 += 32) {
          const int32_t b = valid_block(a, sel, x0 + lane, k, t);
          if (b >= 0) atomicSub(cnt + b, 1u);
        }
        n = 0;
        if (lane == 0)
          for_each_block(a, sel, k, t, [&](int32_t b) {
            atomicAdd(cnt + b, 1u);
            ++n;
          });
        n = __shfl_sync(0xffffffffu, n, 0);
      }
    }
    if (lane == 0) a.ascending[i * kMaxAttentionBands + j] = asc;
    if (n == 0) {  // attends nothing: written here, the attention kernel never sees the row
      float* o = a.bands.out[j] + i * a.head_dim;
      for (int64_t c = lane; c < a.head_dim; c += 32) o[c] = 0.0f;
      if (lane == 0 && a.bands.lse[j]) a.bands.lse[j][i] = -INFINITY;
    }
  }
}

__global__ void csc_scatter_warp_kernel(const __grid_constant__ ListArgs a) {
  const int64_t i = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (i >= a.n_q_heads * a.q_count) return;
  const int64_t h = i / a.q_count, r = i % a.q_count, t = a.q_begin + r;
  const int64_t base = (h * a.n_groups + r / a.rows) * a.n_blocks;
  for (int j = 0; j < a.bands.n; ++j) {
    if (t < a.bands.first_query[j]) continue;
    const int k = a.bands.top_k[j];
    const int32_t* const sel = a.bands.selected[j] + i * k;
    const uint32_t tj = static_cast<uint32_t>(t) | static_cast<uint32_t>(j) << kBandShift;
    if (!a.ascending[i * kMaxAttentionBands + j]) {  // the per-thread code, on one lane
      if (lane == 0) scatter_row(a, sel, k, t, base, tj);
      __syncwarp();  // the warp leaves together (its later collectives name every lane)
      continue;
    }
    // Ascending: the first valid entry is the smallest block, the last the largest.
    int32_t b_min = -1, b_max = -1;
    for (int x0 = 0; x0 < k && b_min < 0; x0 += 32) {
      const int32_t b = valid_block(a, sel, x0 + lane, k, t);
      const unsigned m = __ballot_sync(0xffffffffu, b >= 0);
      if (m) b_min = __shfl_sync(0xffffffffu, b, __ffs(m) - 1);
    }
    if (b_min < 0) continue;
    for (int x0 = (k - 1) / 32 * 32; x0 >= 0 && b_max < 0; x0 -= 32) {
      const int32_t b = valid_block(a, sel, x0 + lane, k, t);
      const unsigned m = __ballot_sync(0xffffffffu, b >= 0);
      if (m) b_max = __shfl_sync(0xffffffffu, b, 31 - __clz(m));
    }
    for (int x0 = 0; x0 < k; x0 += 32) {
      const int32_t b = valid_block(a, sel, x0 + lane, k, t);
      if (b < 0) continue;
      const unsigned slot = atomicSub(a.counts + base + b, 1u) - 1u;
      const uint32_t e = tj | (b == b_min ? kFirst : 0u) | (b == b_max ? kLast : 0u);
      a.entries[a.offsets[base + b] + slot] = static_cast<int32_t>(e);
    }
  }
}

struct AttnArgs {
  const uint16_t *q, *k, *v;    // 16-bit [heads, n_tokens, head_dim], strided rows (Nx::x3: the hi parts)
  int64_t q_sh, q_st, k_sh, k_st, v_sh, v_st;
  int64_t n_tokens, head_dim, block_size, n_blocks, group;
  int64_t q_begin, q_count;     // the window (ListArgs): entries hold t, row t - q_begin
  int rows, n_groups;
  float scale_log2;             // softmax_scale * log2(e)
  const int64_t* offsets;       // [n_q_heads * n_groups * n_blocks + 1]
  const int32_t* entries;
  float* out[kMaxAttentionBands];  // per band [n_q_heads, q_count, head_dim] fp32: accumulator, then output
  float* lse[kMaxAttentionBands];  // per band, optional [n_q_heads, q_count]
  float2* ml;                   // [band][n_q_heads * q_count] running (max in log2 units, sum)
  int64_t ml_band;              // n_q_heads * q_count
  const uint16_t *q_lo, *k_lo, *v_lo;  // Nx::x3 only: the fp16 lo parts, strides of q, k, v
  const int* x3_exp;            // Nx::x3 only: [3] scale exponents of q, k, v (x = (hi + lo) 2^e)
  int rounds;                   // CudaTuning::attn_rounds: long blocks in rounds of one chunk a warp (1)
  // q's window rows in fragment order (permute_q_kernel; [n_q_heads][q_count][D], row wrow + t):
  // set where the kernels read it (wide_rows: head dim 64 or 128, not x3, 16- or 32-key steps).
  const uint16_t* qp;
  int tma;  // the wgmma rounds' TMA staging (CudaTuning::attn_tma; launch_gather): KvMaps set
  // Nonzero: launch_attention takes the 4-warp kernels of wide rows that copy their row group's
  // rows of qp into shared memory (QS; a.rows x D 16-bit; CudaTuning::attn_q_smem, attention_bands).
  int q_smem;
};

// The wgmma rounds' TMA staging (AttnArgs::tma): K and V as [kv heads][tokens][head dim], boxes
// of 64 channels x 128 keys. A parameter of its own after AttnArgs, so that AttnArgs' place in
// the parameter space (and every other kernel's code) stays as it was.
struct KvMaps {
  CUtensorMap k, v;
};

// Wide row traffic (NOTES.md, thirty-fifth session). Where the head dim is the kernel's D (no
// padded channels), a chunk's Q rows and running outputs move 16 bytes a lane at a time:
//  - Q from a copy of the window's rows whose 32-channel groups hold each quad lane's eight
//    fragment channels side by side (permute_q_kernel): lane qd's channels 32 m + {2 qd, 2 qd + 1,
//    2 qd + 8, 2 qd + 9, 2 qd + 16, 2 qd + 17, 2 qd + 24, 2 qd + 25} at 32 m + 8 qd .. + 7, so
//    one uint4 load gives qa[2 m][0], qa[2 m][2], qa[2 m + 1][0], qa[2 m + 1][2];
//  - the running output between visits in the same order (its row in `out` is scratch until the
//    row's last visit): lane qd's acc[2 m][0..1], acc[2 m + 1][0..1] at 16 m + 4 qd .. + 3, one
//    float4; the last visit writes the normalised output in channel order as before.
// The same values reach the same registers: the same bits as 8- and 4-byte loads.
template <int D>
__global__ void permute_q_kernel(const uint16_t* q, int64_t q_sh, int64_t q_st, int64_t q_begin, int64_t q_count,
                                 int64_t n_q_heads, uint16_t* qp) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;  // one 16-byte chunk of qp
  if (i >= n_q_heads * q_count * (D / 8)) return;
  const int64_t row = i / (D / 8), h = row / q_count, t = q_begin + row % q_count;
  const int c = static_cast<int>(i % (D / 8)), m = c / 4, qd = c % 4;
  const uint32_t* const src = reinterpret_cast<const uint32_t*>(q + h * q_sh + t * q_st + 32 * m + 2 * qd);
  reinterpret_cast<uint4*>(qp)[i] = make_uint4(src[0], src[4], src[8], src[12]);
}

// MinB: minimum CTAs per SM asked of ptxas (1 = no register cap; 3 caps at 168 registers).
// NX: numerics (cuda_util.cuh); x3 stages the lo tiles too and steps 32 keys (registers).
// WARPS: warps per CTA (each takes 16 of a block's queries at a time); KP: keys per staged piece.
// STEP: keys per online-softmax step (kSub; x3 at most 32); launch_attention gives blocks of 16
// or 32 keys a kernel whose step is the block (step_keys).
// WG (CudaTuning::attn_wgmma; head dim 128, sm_90a, blocks of 64-key steps): every block in
// rounds of one chunk a warp, and a round's four chunks (16 rows each, empty ones included) are
// one warpgroup: S = Q K^T as 8 m64n64k16 and O += P V as 4 m64n128k16 warpgroup MMAs (Q and P
// from registers: wgmma's A and accumulator fragments are mma.m16n8k16's per warp, wgmma.cuh),
// K and V staged in the 128-byte swizzled layout, every warp through every step the round's
// rows need (a warp's keys past its rows are masked: they change nothing). The masks, softmax,
// running state and stores are the mma.sync kernel's.
template <int D, typename T16, int MinB, Nx NX, int WARPS, int KP, int STEP = kSub, bool WG = false, bool QS = false>
__global__ void __launch_bounds__(WARPS * 32, MinB) moba_attention_kernel(const __grid_constant__ AttnArgs a,
                                                                          const __grid_constant__ KvMaps maps) {
  using M = Mma<T16>;
  constexpr int kWarps = WARPS, kKeyPiece = KP;  // keys of a block staged in shared memory at once
  constexpr bool X3 = NX == Nx::x3;
  static_assert(!WG || (D == 128 && WARPS == 4 && KP == 128 && STEP == kSub && !X3 && MinB == 1),
                "moba_attention_kernel: the wgmma rounds take head dim 128, 4 warps, 128-key pieces");
  // WG: [K, V][channels [0, 64), [64, 128)][KP keys][64] 16-bit, swizzled, from a 1024-byte
  // aligned start of the dynamic shared memory.
  constexpr uint32_t kWgHalf = KP * 128;  // bytes of a [KP][64] half

  constexpr int SUB = X3 && STEP > 32 ? 32 : STEP;  // keys per online-softmax step
  static_assert(SUB % 16 == 0 && SUB <= kSub, "moba_attention_kernel: step of 16, 32 or 64 keys");
  constexpr int LD = D + 8;     // padded smem row (16-bit elements): conflict-free fragments
  extern __shared__ uint4 smem_raw[];
  uint16_t* ks = reinterpret_cast<uint16_t*>(smem_raw);  // [kKeyPiece][LD]
  uint16_t* vs = ks + kKeyPiece * LD;                     // [kKeyPiece][LD]
  uint16_t* const ks_lo = vs + kKeyPiece * LD;            // x3: [kKeyPiece][LD] each
  uint16_t* const vs_lo = ks_lo + kKeyPiece * LD;
  // WG: the aligned K/V halves, then the round's warps' largest row positions (-1: none).
  uint8_t* const wg_s = WG ? reinterpret_cast<uint8_t*>(
                                 (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~static_cast<uintptr_t>(1023))
                           : nullptr;
  int* const wg_tmax = WG ? reinterpret_cast<int*>(wg_s + 4 * kWgHalf) : nullptr;
  // WG with a.tma: the mbarrier the pieces' copies complete on (after the row maxima), and the
  // parity of its current phase (every thread stages the same pieces).
  const uint32_t wg_bar = WG ? static_cast<uint32_t>(__cvta_generic_to_shared(wg_s + 4 * kWgHalf + 16)) : 0u;
#if MOBA_WGMMA
  uint32_t wg_phase = 0;
#endif
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
  // Heaviest first: the last row groups walk the most blocks, so CTA i takes group
  // n_groups - 1 - i / heads of head i % heads (the grid is n_groups x heads).
  const int64_t n_heads = gridDim.y;
  const int64_t lin = int64_t{blockIdx.y} * gridDim.x + blockIdx.x;
  const int64_t h = lin % n_heads, grp = a.n_groups - 1 - lin / n_heads, kv = h / a.group;
  // The group's queries [r_begin, r_end) by absolute position; `wrow` is h's first window row
  // (row of query t: wrow + t).
  const int64_t r_begin = a.q_begin + grp * a.rows, r_end = min(a.q_begin + a.q_count, r_begin + a.rows);
  const int64_t wrow = h * a.q_count - a.q_begin;
  const int64_t d = a.head_dim;
  // Wide rows (permute_q_kernel) in the kernels of 16- and 32-key steps where the head dim is D:
  // the 64-key step kernels spill with them and gain nothing (NOTES.md, thirty-fifth session).
  constexpr bool kWideRows = !X3 && MinB == 1 && STEP < kSub;
  // QS (AttnArgs::q_smem; 4-warp kernels of wide rows where the head dim is D): the group's rows of
  // qp copied once into shared memory, after the K/V pieces, and read from there. Row r's 16-byte
  // chunk c sits at c ^ 4 (r & 1): the two rows of a quarter warp's loads fall on different banks
  // where their parities differ.
  static_assert(!QS || (kWideRows && WARPS == kCtaWarps), "moba_attention_kernel: Q in shared memory with wide rows");
  const uint16_t* const qs = ks + 2 * kKeyPiece * LD;  // [r_end - r_begin][D]
  // Runs f(dd) with the channel bound dd of the row loads and stores: the constant D where the
  // head dim is D (no padded channels: the bound drops out, one predicate a row instead of a
  // 64-bit compare and an address a load), else d.
  // (Not for x3 or the register-capped variant: there the extra paths spill.)
  const auto by_channels = [&](auto f) {
    if constexpr (!X3 && MinB == 1)
      if (d == D) return f(std::integral_constant<int64_t, D>{});
    f(d);
  };
  // x3: scores are q.k 2^-(eq + ek), values v 2^-ev, and P is packed x 2^14 (pack_split's
  // lo stays normal in fp16): the softmax scale and the final output undo them.
  const float x3_sl2 = x3_scale_log2<X3>(a), x3_mul = x3_out_mul<X3>(a);

  // No init pass: a query's first block starts its accumulator at 0 and (max, sum) at
  // (-inf, 0) without reading them; its last block writes the normalised output and lse.

  const int64_t c_max = (r_end - 1) / a.block_size;
  const int64_t list_base = (h * a.n_groups + grp) * a.n_blocks;
  // Chunk state (registers), loaded by load_chunk: the warp's 16 gathered queries, their Q
  // fragments [D/16][4] (rows t0 = g, t1 = g + 8), running outputs and (max, sum).
  int64_t t0 = -1, t1 = -1, t_max = -1;
  int t_min = 0;  // the chunk's smallest valid row position (positions < 2^27)
  uint32_t f0 = 0, f1 = 0;  // entry flags of rows t0, t1
  uint32_t qa[D / 16][4];
  uint32_t qa_lo[X3 ? D / 16 : 1][4];  // x3: the lo parts of Q
  float acc[D / 8][4];
  float2 ml0, ml1;
  float *o0 = nullptr, *o1 = nullptr;
  uint32_t j0 = 0, j1 = 0;  // the bands of rows t0, t1 (their ml rows: j a.ml_band + wrow + t)
  // The entries of rows g and g + 8 of a list's chunk (0xffffffff past its end).
  const auto chunk_entries = [&](int64_t beg, int n, int chunk, uint32_t& e0, uint32_t& e1) {
    e0 = chunk + g < n ? static_cast<uint32_t>(a.entries[beg + chunk + g]) : 0xffffffffu;
    e1 = chunk + g + 8 < n ? static_cast<uint32_t>(a.entries[beg + chunk + g + 8]) : 0xffffffffu;
  };
  // The warp's first chunk of the batch's next non-empty block: its entries are loaded a block
  // ahead (while this block computes), so a block's first gather waits for one round trip (Q
  // rows and running state), not two (the entries, then what they point to).
  uint32_t pe0 = 0xffffffffu, pe1 = 0xffffffffu;
  bool pe_ok = false;
  auto load_chunk = [&](uint32_t e0, uint32_t e1, bool first_piece) {
    t0 = e0 == 0xffffffffu ? -1 : int64_t{e0 & kPosMask};
    t1 = e1 == 0xffffffffu ? -1 : int64_t{e1 & kPosMask};
    f0 = e0 == 0xffffffffu ? 0u : e0 & (kFirst | kLast);
    f1 = e1 == 0xffffffffu ? 0u : e1 & (kFirst | kLast);
    j0 = e0 == 0xffffffffu ? 0u : (e0 >> kBandShift) & 7u;
    j1 = e1 == 0xffffffffu ? 0u : (e1 >> kBandShift) & 7u;
    // The first piece of a query's first block: nothing accumulated yet, nothing to read.
    const bool fresh0 = first_piece && (f0 & kFirst), fresh1 = first_piece && (f1 & kFirst);
    t_max = __reduce_max_sync(0xffffffffu, static_cast<int>(max(t0, t1)));
    t_min = __reduce_min_sync(0xffffffffu, static_cast<int>(min(t0 < 0 ? kPosMask : t0, t1 < 0 ? kPosMask : t1)));
    // Q fragments and running outputs; dd: the channel bound (by_channels).
    const auto load_rows = [&](auto dd) {
      constexpr bool kWide = kWideRows && std::is_same_v<decltype(dd), std::integral_constant<int64_t, D>>;
      if constexpr (kWide) {  // a.qp is set wherever the head dim is D (attention_bands)
        // One uint4 of each row gives qa[2 m][0, 2], qa[2 m + 1][0, 2] (row t0) or [1, 3] (row t1).
        const auto put = [&](int m, const uint4& x0, const uint4& x1) {
          qa[2 * m][0] = x0.x; qa[2 * m][2] = x0.y; qa[2 * m + 1][0] = x0.z; qa[2 * m + 1][2] = x0.w;
          qa[2 * m][1] = x1.x; qa[2 * m][3] = x1.y; qa[2 * m + 1][1] = x1.z; qa[2 * m + 1][3] = x1.w;
        };
        if constexpr (QS) {  // chunk 4 m + qd of the group's row r at 4 (m ^ (r & 1)) + qd
          const int r0 = static_cast<int>(t0 - r_begin), r1 = static_cast<int>(t1 - r_begin);
          const uint16_t* const s0 = qs + r0 * D + 8 * qd;
          const uint16_t* const s1 = qs + r1 * D + 8 * qd;
#pragma unroll
          for (int m = 0; m < D / 32; ++m)
            put(m, t0 >= 0 ? *reinterpret_cast<const uint4*>(s0 + 32 * (m ^ (r0 & 1))) : make_uint4(0, 0, 0, 0),
                t1 >= 0 ? *reinterpret_cast<const uint4*>(s1 + 32 * (m ^ (r1 & 1))) : make_uint4(0, 0, 0, 0));
        } else {
          const uint16_t* const p0 = t0 >= 0 ? a.qp + (wrow + t0) * D + 8 * qd : nullptr;
          const uint16_t* const p1 = t1 >= 0 ? a.qp + (wrow + t1) * D + 8 * qd : nullptr;
#pragma unroll
          for (int m = 0; m < D / 32; ++m)
            put(m, p0 ? __ldg(reinterpret_cast<const uint4*>(p0 + 32 * m)) : make_uint4(0, 0, 0, 0),
                p1 ? __ldg(reinterpret_cast<const uint4*>(p1 + 32 * m)) : make_uint4(0, 0, 0, 0));
        }
      } else {
        load_q_fragments<D>(qa, t0 >= 0 ? a.q + h * a.q_sh + t0 * a.q_st : nullptr,
                            t1 >= 0 ? a.q + h * a.q_sh + t1 * a.q_st : nullptr, dd, qd);
      }
      if constexpr (X3)
        load_q_fragments<D>(qa_lo, t0 >= 0 ? a.q_lo + h * a.q_sh + t0 * a.q_st : nullptr,
                            t1 >= 0 ? a.q_lo + h * a.q_sh + t1 * a.q_st : nullptr, dd, qd);
      o0 = t0 >= 0 ? a.out[j0] + (wrow + t0) * d : nullptr;
      o1 = t1 >= 0 ? a.out[j1] + (wrow + t1) * d : nullptr;
      if constexpr (kWide) {  // the running output in fragment order (wide rows)
        const float* const r0 = o0 && !fresh0 ? o0 + 4 * qd : nullptr;
        const float* const r1 = o1 && !fresh1 ? o1 + 4 * qd : nullptr;
#pragma unroll
        for (int m = 0; m < D / 16; ++m) {
          const float4 x0 = r0 ? *reinterpret_cast<const float4*>(r0 + 16 * m) : make_float4(0.f, 0.f, 0.f, 0.f);
          const float4 x1 = r1 ? *reinterpret_cast<const float4*>(r1 + 16 * m) : make_float4(0.f, 0.f, 0.f, 0.f);
          acc[2 * m][0] = x0.x; acc[2 * m][1] = x0.y; acc[2 * m + 1][0] = x0.z; acc[2 * m + 1][1] = x0.w;
          acc[2 * m][2] = x1.x; acc[2 * m][3] = x1.y; acc[2 * m + 1][2] = x1.z; acc[2 * m + 1][3] = x1.w;
        }
        return;
      }
      const float* const r0 = o0 && !fresh0 ? o0 + 2 * qd : nullptr;  // channel 2 qd of each row
      const float* const r1 = o1 && !fresh1 ? o1 + 2 * qd : nullptr;
#pragma unroll
      for (int nd = 0; nd < D / 8; ++nd) {
        const int c = nd * 8 + 2 * qd;
        const float2 x0 = (r0 && c < dd) ? *reinterpret_cast<const float2*>(r0 + nd * 8) : make_float2(0.f, 0.f);
        const float2 x1 = (r1 && c < dd) ? *reinterpret_cast<const float2*>(r1 + nd * 8) : make_float2(0.f, 0.f);
        acc[nd][0] = x0.x; acc[nd][1] = x0.y; acc[nd][2] = x1.x; acc[nd][3] = x1.y;
      }
    };
    by_channels(load_rows);
    ml0 = (t0 >= 0 && !fresh0) ? a.ml[j0 * a.ml_band + wrow + t0] : make_float2(-INFINITY, 0.f);
    ml1 = (t1 >= 0 && !fresh1) ? a.ml[j1 * a.ml_band + wrow + t1] : make_float2(-INFINITY, 0.f);
  };

  // Stages keys [p0, p0 + np) into the piece buffers at row offset `at` (elements), all of
  // the copies in flight at once (cp.async), zero-filled past np (to 16 rows) and d. A thread
  // copies the 16-byte chunk column c8 of rows r0, r0 + kStageStep, ... (fixed for the CTA, as
  // the tile path's TileStager): its source rows move by one 64-bit add and its shared address
  // by a constant, not a division, a 64-bit multiply and an address a copy (NOTES.md,
  // thirty-sixth session: 47 instructions a copy pair were 30 % of a B = 1024 launch's).
  constexpr int kChunks = D / 8, kStageStep = kWarps * 32 / kChunks;
  static_assert(kWarps * 32 % kChunks == 0 && 16 % kStageStep == 0, "stage: whole rows a pass, to 16 rows");
  const auto stage = [&](int64_t p0, int np, int at) {
    const int np16 = (np + 15) / 16 * 16;
    const int r0 = tid / kChunks, c8 = tid % kChunks * 8;
    const bool chan_ok = c8 < d;
    const uint16_t* const kbase = a.k + kv * a.k_sh;
    const uint16_t* const vbase = a.v + kv * a.v_sh;
    const uint16_t* kq = kbase + (p0 + r0) * a.k_st + c8;
    const uint16_t* vq = vbase + (p0 + r0) * a.v_st + c8;
    const int64_t k_step = kStageStep * a.k_st, v_step = kStageStep * a.v_st;
    constexpr uint32_t kDstStep = kStageStep * LD * sizeof(uint16_t);
    uint32_t dk = static_cast<uint32_t>(__cvta_generic_to_shared(ks + at + r0 * LD + c8));
    uint32_t dv = static_cast<uint32_t>(__cvta_generic_to_shared(vs + at + r0 * LD + c8));
#pragma unroll 1
    for (int r = r0; r < np16; r += kStageStep) {
      const bool ok = chan_ok && r < np;
      cp_async16_s(dk, ok ? kq : kbase, ok);
      cp_async16_s(dv, ok ? vq : vbase, ok);
      if constexpr (X3) {  // the lo parts: the same offsets from their own bases and tiles
        const uint16_t* const klo = a.k_lo + kv * a.k_sh;
        const uint16_t* const vlo = a.v_lo + kv * a.v_sh;
        constexpr uint32_t kLo = 2 * kKeyPiece * LD * sizeof(uint16_t);  // ks_lo - ks, vs_lo - vs
        cp_async16_s(dk + kLo, ok ? klo + (kq - kbase) : klo, ok);
        cp_async16_s(dv + kLo, ok ? vlo + (vq - vbase) : vlo, ok);
      }
      kq += k_step;
      vq += v_step;
      dk += kDstStep;
      dv += kDstStep;
    }
  };
  // WG: the piece [p0, p0 + np) into the swizzled halves, zero-filled to its last 64-key step and
  // past d (rows past that step are never read). A
  // thread copies chunk column c8 of rows r0 + 8 i: a row 8 on keeps its chunk's place in the
  // swizzle (its period), 1024 bytes on.
  const auto stage_wg = [&](int64_t p0, int np) {
    const int r0 = tid / 16, c8 = tid % 16 * 8;
    const bool chan_ok = c8 < d;
    const uint16_t* const kbase = a.k + kv * a.k_sh;
    const uint16_t* const vbase = a.v + kv * a.v_sh;
    const uint16_t* kq = kbase + (p0 + r0) * a.k_st + c8;
    const uint16_t* vq = vbase + (p0 + r0) * a.v_st + c8;
    const int64_t k_step = 8 * a.k_st, v_step = 8 * a.v_st;
    uint32_t dk = static_cast<uint32_t>(__cvta_generic_to_shared(wg_s)) + (c8 / 64) * kWgHalf + swizzle128(r0, c8 % 64);
    uint32_t dv = dk + 2 * kWgHalf;
    const int rows = (np + kSub - 1) / kSub * kSub;
    // Unrolled as the compiler chooses: '#pragma unroll 1' here measured 4 % slower at B = 1024
    // with attn_tma=0 (NOTES.md, thirty-ninth session).
    for (int r = r0; r < rows; r += 8) {
      const bool ok = chan_ok && r < np;
      cp_async16_s(dk, ok ? kq : kbase, ok);
      cp_async16_s(dv, ok ? vq : vbase, ok);
      kq += k_step;
      vq += v_step;
      dk += 1024;
      dv += 1024;
    }
  };
  // WG with a.tma: the same piece by four TMA tile copies from one thread (K and V, channels
  // [0, 64) and [64, 128)): zeros past the sequence's end and past d, the next block's keys past
  // the block's end (finite inputs: their scores are masked, P = 0 adds +-0, the same bits).
  const auto stage_tma = [&](int64_t p0) {
#if MOBA_WGMMA
    if (tid == 0) {
      const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(wg_s));
      mbar_expect_tx(wg_bar, 4 * kWgHalf);
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        tma_load_3d(s + x * kWgHalf, &maps.k, 64 * x, static_cast<int>(p0), static_cast<int>(kv), wg_bar);
        tma_load_3d(s + (2 + x) * kWgHalf, &maps.v, 64 * x, static_cast<int>(p0), static_cast<int>(kv), wg_bar);
      }
    }
#endif
  };
#if MOBA_WGMMA
  if constexpr (WG)
    if (a.tma && tid == 0) {  // ordered before its use by the batch loop's barrier
      mbar_init(wg_bar, 1);
      fence_proxy_async();  // the initialised barrier, to the TMA's (async) proxy
    }
#endif
  const bool dbuf = !WG && a.block_size <= kKeyPiece / 2;  // staged a block ahead (below)
  if constexpr (QS) {
    const int nq = static_cast<int>(r_end - r_begin) * (D / 8);
    const uint16_t* const src = a.qp + (wrow + r_begin) * D;
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(qs));
#pragma unroll 1
    for (int i = tid; i < nq; i += WARPS * 32) {
      const int r = i / (D / 8), c = i % (D / 8);
      cp_async16_s(dst + static_cast<uint32_t>(r * D + 8 * (c ^ ((r & 1) << 2))) * 2u, src + int64_t{i} * 8, true);
    }
    cp_async_commit();
    cp_async_wait_all();  // the batch loop's first barrier orders them before any read
  }
  // The blocks with a list, kWarps * 32 blocks at a time: each thread reads one block's
  // bounds, and the non-empty ones are compacted in order into shared memory, so empty blocks
  // (most of them where selections are sparse) cost no walk of their own.
  constexpr int kScan = kWarps * 32;
  __shared__ int64_t nz_beg[kScan];
  __shared__ int nz_b[kScan], nz_n[kScan], warp_nz[kWarps];
  // dbuf: the whole of the batch's non-empty block i, at row offset `at` of the piece buffers.
  const auto stage_block = [&](int i, int at) {
    const int64_t q0 = int64_t{nz_b[i]} * a.block_size;
    stage(q0, static_cast<int>(min(a.n_tokens, q0 + a.block_size) - q0), at);
  };
  for (int64_t b0 = 0; b0 <= c_max; b0 += kScan) {
    __syncthreads();  // the previous batch is consumed
    {
      const int64_t bb = b0 + tid;
      int64_t bbeg = 0;
      int bn = 0;
      if (bb <= c_max) {
        bbeg = a.offsets[list_base + bb];
        bn = static_cast<int>(a.offsets[list_base + bb + 1] - bbeg);
      }
      const unsigned m = __ballot_sync(0xffffffffu, bn > 0);
      if (lane == 0) warp_nz[warp] = __popc(m);
      __syncthreads();
      int pos = __popc(m & ((1u << lane) - 1u));
      for (int w = 0; w < warp; ++w) pos += warp_nz[w];
      if (bn > 0) {
        nz_b[pos] = static_cast<int>(bb);
        nz_beg[pos] = bbeg;
        nz_n[pos] = bn;
      }
    }
    int n_nz = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) n_nz += warp_nz[w];
    __syncthreads();
    // Blocks of at most kKeyPiece / 2 keys are one piece each, staged a block ahead: halves of
    // the piece buffers take turns, the next block's copies in flight while this one computes.
    if (dbuf && n_nz > 0) {
      stage_block(0, 0);
      cp_async_commit();
    }
    for (int inz = 0; inz < n_nz; ++inz) {
      const int64_t b = nz_b[inz];
      const int64_t kb1 = min(a.n_tokens, (b + 1) * a.block_size);
      // A block of several pieces (more than kKeyPiece keys) goes in rounds of kWarps * 16 of its
      // list's entries (one chunk a warp), each round walking the whole block (staged again a
      // round): a chunk's running state then moves once a block, not once a piece (its HBM
      // traffic, B6's large blocks' limit, for the keys' re-reads from L2). Without rounds
      // (a.rounds == 0, or a block of one piece): one round of the whole list. The same bits in
      // either order.
      const int n_all = nz_n[inz];
      const bool long_block = WG || (a.rounds > 0 && !dbuf && kb1 - b * a.block_size > kKeyPiece);
      const int per_round = long_block ? kWarps * 16 : n_all;
      for (int r0 = 0; r0 < n_all; r0 += per_round) {
        const int64_t beg = nz_beg[inz] + r0;
        const int n = min(per_round, n_all - r0);
        // At most one chunk per warp (n <= kWarps * 16): the warp's chunk is the same for every
        // piece of the block, so its Q fragments, running output and (max, sum) stay in registers
        // from the first piece to the last it processes (loaded once, stored once: the same bits
        // as a store and reload per piece). Only blocks of more than kKeyPiece keys have several
        // pieces.
        const bool keep = n <= kWarps * 16;
        for (int64_t p0 = b * a.block_size; p0 < kb1; p0 += kKeyPiece) {
          const int np = static_cast<int>(min(int64_t{kKeyPiece}, kb1 - p0));
          __syncthreads();  // previous piece fully consumed (dbuf: the other half is free)
          const int half = dbuf ? (inz & 1) * (kKeyPiece / 2) * LD : 0;
          // WG: a one-piece block is staged once, for its first round; later rounds reuse it.
          const bool wg_stage = WG && (r0 == 0 || kb1 - b * a.block_size > kKeyPiece);
          if (WG) {
            if (wg_stage && a.tma)
              stage_tma(p0);
            else if (wg_stage)
              stage_wg(p0, np);
          } else if (!dbuf) {
            stage(p0, np, 0);
          } else {
            if (inz + 1 < n_nz) stage_block(inz + 1, (kKeyPiece / 2) * LD - half);
            cp_async_commit();
          }
          const uint16_t* const kc = ks + half;
          const uint16_t* const vc = vs + half;
          const uint16_t* const kc_lo = ks_lo + half;
          const uint16_t* const vc_lo = vs_lo + half;
          // The warp's first chunk is gathered while the piece lands (its loads overlap the
          // staging); later chunks load in turn.
          const bool first_piece = p0 == b * a.block_size;
          // This chunk's last piece of the block: the block ends, or its rows end before the next.
          // (WG: every warp, an empty chunk where the round has none for it: its rows t = -1.)
          if ((WG || warp * 16 < n) && (first_piece || !keep)) {
            uint32_t e0, e1;
            if (first_piece && r0 == 0 && pe_ok)
              e0 = pe0, e1 = pe1;
            else
              chunk_entries(beg, n, warp * 16, e0, e1);
            load_chunk(e0, e1, first_piece);
            if constexpr (WG)
              if (lane == 0) wg_tmax[warp] = static_cast<int>(t_max);
          }
          if (first_piece && r0 == 0) {  // the next block's first chunk, a block ahead (within the batch)
            pe_ok = inz + 1 < n_nz;
            if (pe_ok) chunk_entries(nz_beg[inz + 1], nz_n[inz + 1], warp * 16, pe0, pe1);
          }
          if (dbuf)
            cp_async_wait_group<1>();  // this block's copies (the next block's may still run)
          else
            cp_async_wait_all();
#if MOBA_WGMMA
          if constexpr (WG) {
            if (!a.tma) {
              fence_proxy_async();  // the copies, to the warpgroup MMAs' proxy
            } else if (wg_stage) {  // the TMA copies: complete on the mbarrier, in the async proxy already
              mbar_wait(wg_bar, wg_phase);
              wg_phase ^= 1u;
            }
          }
#endif
          __syncthreads();
          // WG: the round's steps run to its last row (every warp: warpgroup MMAs).
          int64_t wg_max = -1;
          if constexpr (WG) wg_max = max(max(wg_tmax[0], wg_tmax[1]), max(wg_tmax[2], wg_tmax[3]));
          for (int chunk = warp * 16; chunk < (WG ? warp * 16 + 1 : n); chunk += kWarps * 16) {
            if (chunk != warp * 16) {
              uint32_t e0, e1;
              chunk_entries(beg, n, chunk, e0, e1);
              load_chunk(e0, e1, first_piece);
            }
            if ((WG ? wg_max : t_max) < p0) continue;  // whole chunk before this piece (cannot happen past piece 0)

            for (int s0 = 0; s0 < np && p0 + s0 <= (WG ? wg_max : t_max); s0 += SUB) {
              const int nk = min(SUB, np - s0);
              const int n8 = (nk + 15) / 16 * 2;  // n8 tiles computed (pairs, for PV k-steps)
              float sc[SUB / 8][4];
#pragma unroll
              for (int nt = 0; nt < SUB / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
              // S = Q K^T over the n8 tiles the step computes (mma_qk: k-steps outer, the same bits).
              const auto qk = [&](auto n8c) {
                constexpr int N8 = decltype(n8c)::value;
                if constexpr (N8 <= SUB / 8)
                  mma_qk<M, D, N8, X3>(sc, qa, qa_lo, kc + s0 * LD, kc_lo + s0 * LD, LD, g, qd);
              };
              if constexpr (WG) {
#if MOBA_WGMMA
                // Keys [s0, s0 + 64) of the piece (zero rows past np), channels 16 kk .. + 15: half
                // kk / 4, 32 bytes a k-step.
                const uint8_t* const kb = wg_s + s0 * 128;
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk)
                  Wgmma<T16>::template m64n64<0>(sc, qa[kk], wgmma_desc(kb + (kk / 4) * kWgHalf + (kk % 4) * 32, 16, 1024),
                                                 kk > 0);
                wgmma_commit();
                wgmma_wait<0>();
#else
                __trap();  // the host launches WG kernels only on compute capability 9.0
#endif
              } else {
                switch (n8) {
                  case 2: qk(std::integral_constant<int, 2>{}); break;
                  case 4: qk(std::integral_constant<int, 4>{}); break;
                  case 6: qk(std::integral_constant<int, 6>{}); break;
                  default: qk(std::integral_constant<int, SUB / 8>{}); break;
                }
              }
              // Scale, mask (key inside the piece and causal), row max. Where every key of the step
              // precedes every valid row of the chunk (a block before the rows' own: most visits),
              // only the piece's bounds mask: the same scores for every valid row (rows of no
              // entry, t = -1, then keep finite scores of their zero Q; nothing of theirs is stored).
              float mx0 = -INFINITY, mx1 = -INFINITY;
              const auto mask_scale = [&](auto open_c) {
                constexpr bool kOpen = decltype(open_c)::value;
#pragma unroll
                for (int nt = 0; nt < SUB / 8; ++nt)
#pragma unroll
                  for (int e = 0; e < 2; ++e) {
                    const int kk = s0 + nt * 8 + 2 * qd + e;
                    const bool in = nt < n8 && kk < np;
                    bool ok0 = in, ok1 = in;
                    if constexpr (!kOpen) {
                      const int64_t j = p0 + kk;
                      ok0 = in && j <= t0;
                      ok1 = in && j <= t1;
                    }
                    sc[nt][e] = ok0 ? sc[nt][e] * (X3 ? x3_sl2 : a.scale_log2) : -INFINITY;
                    sc[nt][2 + e] = ok1 ? sc[nt][2 + e] * (X3 ? x3_sl2 : a.scale_log2) : -INFINITY;
                    mx0 = fmaxf(mx0, sc[nt][e]);
                    mx1 = fmaxf(mx1, sc[nt][2 + e]);
                  }
              };
              if (p0 + s0 + nk - 1 <= t_min)
                mask_scale(std::true_type{});
              else
                mask_scale(std::false_type{});
              uint32_t pa[SUB / 16][4];
              uint32_t pl[NX == Nx::plain ? 1 : SUB / 16][4];  // split P: the lo parts
              // x3: P 2^14 in fp16 (exact scaling)
              const float2 al =
                  softmax_step<M, NX != Nx::plain, SUB>(sc, mx0, mx1, ml0, ml1, pa, pl, X3 ? 16384.0f : 1.0f);
              const float al0 = al.x, al1 = al.y;
              rescale_o<D>(acc, al0, al1);
              if constexpr (WG) {
#if MOBA_WGMMA
                // Keys [s0 + 16 k16, + 16): two 8-row groups of 1024 bytes; the halves kWgHalf apart
                // along the channels. Split P: lo then hi, as mma_pv_split.
                const uint8_t* const vb = wg_s + 2 * kWgHalf + s0 * 128;
                wgmma_fence();
#pragma unroll
                for (int k16 = 0; k16 < SUB / 16; ++k16) {
                  const uint64_t vdesc = wgmma_desc(vb + k16 * 16 * 128, kWgHalf, 1024);
                  if constexpr (NX != Nx::plain) Wgmma<T16>::template m64n128<1>(acc, pl[k16], vdesc, 1);
                  Wgmma<T16>::template m64n128<1>(acc, pa[k16], vdesc, 1);
                }
                wgmma_commit();
                wgmma_wait<0>();
#endif
              } else if constexpr (NX == Nx::plain) {
                mma_pv<M, D>(acc, pa, vc, LD, s0, n8, lane);  // O += P V over the sub-tile's keys
              } else {
                mma_pv_split<M, D, SUB / 16, X3>(acc, pa, pl, vc, vc_lo, LD, s0, n8, lane);
              }
            }
            // WG: a warp whose rows ended before this piece stored them at their last piece.
            if (WG && t_max < p0) continue;
            // A row's last visit (last block, last piece this chunk processes) writes the
            // normalised output (out /= sum) and lse = (max + log2 sum) ln 2; other visits store
            // the running output and (max, sum).
            const bool last_piece = p0 + kKeyPiece >= kb1 || p0 + kKeyPiece > t_max;
            if (keep && !last_piece) continue;  // state stays in registers for the next piece
            const bool fin0 = last_piece && (f0 & kLast), fin1 = last_piece && (f1 & kLast);
            const float s0 = fin0 ? (ml0.y > 0.f ? (X3 ? x3_mul : 1.0f) / ml0.y : 0.f) : 1.0f;
            const float s1 = fin1 ? (ml1.y > 0.f ? (X3 ? x3_mul : 1.0f) / ml1.y : 0.f) : 1.0f;
            // Scaled where some row of the warp ends here; the others store as is (x 1 is exact).
            const auto store_rows = [&](auto dd, auto scaled_c) {
              constexpr bool kScaled = decltype(scaled_c)::value;
              if constexpr (kWideRows && std::is_same_v<decltype(dd), std::integral_constant<int64_t, D>>) {
                // Rows that go on: the running output in fragment order, as is (their scale is 1).
                float* const w0 = o0 && !fin0 ? o0 + 4 * qd : nullptr;
                float* const w1 = o1 && !fin1 ? o1 + 4 * qd : nullptr;
#pragma unroll
                for (int m = 0; m < D / 16; ++m) {
                  if (w0) *reinterpret_cast<float4*>(w0 + 16 * m) = make_float4(acc[2 * m][0], acc[2 * m][1], acc[2 * m + 1][0], acc[2 * m + 1][1]);
                  if (w1) *reinterpret_cast<float4*>(w1 + 16 * m) = make_float4(acc[2 * m][2], acc[2 * m][3], acc[2 * m + 1][2], acc[2 * m + 1][3]);
                }
                if constexpr (kScaled) {  // rows that end here: the normalised output in channel order
                  float* const n0 = o0 && fin0 ? o0 + 2 * qd : nullptr;
                  float* const n1 = o1 && fin1 ? o1 + 2 * qd : nullptr;
#pragma unroll
                  for (int nd = 0; nd < D / 8; ++nd) {
                    if (n0) *reinterpret_cast<float2*>(n0 + nd * 8) = make_float2(acc[nd][0] * s0, acc[nd][1] * s0);
                    if (n1) *reinterpret_cast<float2*>(n1 + nd * 8) = make_float2(acc[nd][2] * s1, acc[nd][3] * s1);
                  }
                }
                return;
              }
              float* const r0 = o0 ? o0 + 2 * qd : nullptr;  // channel 2 qd of each row
              float* const r1 = o1 ? o1 + 2 * qd : nullptr;
#pragma unroll
              for (int nd = 0; nd < D / 8; ++nd) {
                const int c = nd * 8 + 2 * qd;
                const float2 x0 = kScaled ? make_float2(acc[nd][0] * s0, acc[nd][1] * s0) : make_float2(acc[nd][0], acc[nd][1]);
                const float2 x1 = kScaled ? make_float2(acc[nd][2] * s1, acc[nd][3] * s1) : make_float2(acc[nd][2], acc[nd][3]);
                if (r0 && c < dd) *reinterpret_cast<float2*>(r0 + nd * 8) = x0;
                if (r1 && c < dd) *reinterpret_cast<float2*>(r1 + nd * 8) = x1;
              }
            };
            // (x3 and the register-capped variant always scale: as in by_channels, the extra path spills.)
            const bool scaled = X3 || MinB != 1 || __any_sync(0xffffffffu, fin0 || fin1);
            by_channels([&](auto dd) {
              if (scaled)
                store_rows(dd, std::true_type{});
              else
                store_rows(dd, std::false_type{});
            });
            if (qd == 0) {
              if (t0 >= 0) {
                if (!fin0) a.ml[j0 * a.ml_band + wrow + t0] = ml0;
                else if (a.lse[j0])
                  a.lse[j0][wrow + t0] = ml0.y > 0.f ? (ml0.x + log2f(ml0.y)) * kLn2 : -INFINITY;
              }
              if (t1 >= 0) {
                if (!fin1) a.ml[j1 * a.ml_band + wrow + t1] = ml1;
                else if (a.lse[j1])
                  a.lse[j1][wrow + t1] = ml1.y > 0.f ? (ml1.x + log2f(ml1.y)) * kLn2 : -INFINITY;
              }
            }
          }
        }
      }
    }
  }
}

// Keys per online-softmax step for blocks of `block_size` keys: the block itself where it is 16 or
// 32 keys or fewer (one step a block), else kSub. A 64-key step over a block of 16 keys scales,
// masks, exponentiates and packs 64 keys' fragments of which 48 are -inf (4x the softmax a visit
// needs at B = 16); the smaller step gives the same bits (those keys add exact zeros to the sums
// and no product).
int step_keys(int64_t block_size) { return block_size <= 16 ? 16 : block_size <= 32 ? 32 : kSub; }

// Whether the gather's kernel for these numerics, head dim and block size moves rows 16 bytes a
// lane (moba_attention_kernel kWideRows, from AttnArgs::qp): its D is the head dim, not x3, a
// 16- or 32-key step. (The register-capped 3-CTA variant reads q as it is.)
bool wide_rows(Nx nx, int64_t d, int64_t block_size) {
  return nx != Nx::x3 && (d == 64 || d == 128) && step_keys(block_size) < kSub;
}

// wg: the wgmma rounds' kernel, with these maps (AttnArgs::tma).
template <int D, typename T16, int MinB = 1, Nx NX = Nx::plain, bool AllowWarpCtas = true>
const char* launch_attention(const AttnArgs& a, int64_t n_q_heads, bool warp_ctas, cudaStream_t stream,
                             const KvMaps* wg = nullptr) {
  static const KvMaps no_maps{};
  const KvMaps& maps = wg ? *wg : no_maps;
  const auto launch = [&](auto kernel, int warps, int piece, size_t smem_wg = 0, size_t q_bytes = 0) -> const char* {
    const size_t smem = smem_wg ? smem_wg
                                : size_t{NX == Nx::x3 ? 4 : 2} * static_cast<size_t>(piece) * (D + 8) * sizeof(uint16_t) +
                                      q_bytes;
    MOBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<dim3(static_cast<unsigned>(a.n_groups), static_cast<unsigned>(n_q_heads)), warps * 32, smem, stream>>>(a,
                                                                                                              maps);
    MOBA_CUDA_LAUNCH_CHECK();
    return nullptr;
  };
  const auto by_step = [&](auto step_c) -> const char* {
    constexpr int S = decltype(step_c)::value;
    if constexpr (AllowWarpCtas)
      if (warp_ctas) return launch(moba_attention_kernel<D, T16, MinB, NX, 1, kWarpCtaPiece, S>, 1, kWarpCtaPiece);
    // The group's Q rows after the pieces (moba_attention_kernel QS).
    if constexpr (S < kSub)
      if (a.q_smem) {
        g_q_smem_launches.fetch_add(1, std::memory_order_relaxed);
        return launch(moba_attention_kernel<D, T16, MinB, NX, kCtaWarps, cta_piece(S), S, false, true>, kCtaWarps,
                      cta_piece(S), 0, q_smem_bytes(a.rows, D));
      }
    return launch(moba_attention_kernel<D, T16, MinB, NX, kCtaWarps, cta_piece(S), S>, kCtaWarps, cta_piece(S));
  };
  // The wgmma rounds (launch_gather): K and V pieces of 2 x 16 KB each, 1024 bytes to align them
  // to the swizzle's atoms, the round's row maxima (kCtaWarps ints, 16 bytes) and the mbarrier.
  if constexpr (D == 128 && NX != Nx::x3 && MinB == 1)
    if (wg) return launch(moba_attention_kernel<D, T16, 1, NX, kCtaWarps, kCtaPiece, kSub, true>, kCtaWarps, kCtaPiece,
                          size_t{4} * kCtaPiece * 128 + 1024 + 16 + sizeof(uint64_t));
  // x3 steps 32 keys at most already; the 3-CTA variant (register cap) keeps one step.
  if constexpr (NX != Nx::x3 && MinB == 1) {
    const int step = step_keys(a.block_size);
    if (step == 16) return by_step(std::integral_constant<int, 16>{});
    if (step == 32) return by_step(std::integral_constant<int, 32>{});
  }
  return by_step(std::integral_constant<int, kSub>{});
}

// Lists a warp per row where a pass's rows hold at least a warp's worth of entries (the sum of
// its bands' top_k); else a thread per row.
constexpr int64_t kWarpListEntries = 32;
bool use_warp_lists(int64_t k_sum) { return k_sum >= kWarpListEntries; }

const char* launch_lists(const ListArgs& a, unsigned* counts, int64_t n_lists, int64_t* offsets, bool warp_lists,
                         Scratch& scratch, cudaStream_t stream) {
  MOBA_CUDA_TRY(cudaMemsetAsync(counts, 0, sizeof(unsigned) * (n_lists + 1), stream));
  const int64_t n_rows = a.n_q_heads * a.q_count;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((n_rows * (warp_lists ? 32 : 1) + threads - 1) / threads);
  if (warp_lists)
    csc_count_warp_kernel<<<blocks, threads, 0, stream>>>(a);
  else
    csc_count_kernel<<<blocks, threads, 0, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  size_t temp_bytes = 0;
  MOBA_CUDA_TRY(cub::DeviceScan::ExclusiveScan(nullptr, temp_bytes, counts, offsets, cuda::std::plus<int64_t>{},
                                               int64_t{0}, n_lists + 1, stream));
  uint8_t* temp = nullptr;
  MOBA_TRY(scratch.alloc(&temp, temp_bytes));
  MOBA_CUDA_TRY(cub::DeviceScan::ExclusiveScan(temp, temp_bytes, counts, offsets, cuda::std::plus<int64_t>{},
                                               int64_t{0}, n_lists + 1, stream));
  if (warp_lists)
    csc_scatter_warp_kernel<<<blocks, threads, 0, stream>>>(a);
  else
    csc_scatter_kernel<<<blocks, threads, 0, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

// Query rows per CTA for a sequence of n_rows rows a head: `fixed_rows` when set
// (CudaTuning::attn_rows), else the largest power of two in [128, 4096] that still gives >= 3
// CTAs per multiprocessor. Results do not depend on it (a row's arithmetic is its own).
int pick_rows(int64_t n_q_heads, int64_t n_rows, int fixed_rows) {
  if (fixed_rows >= 16 && fixed_rows <= 65536) return fixed_rows;
  const int sms = sm_count();
  int rows = 4096;  // 64K B=128 k=8 on H200: 512 rows 63 ms, 1024 42, 2048 30, 4096 26
  while (rows > 128 && n_q_heads * ((n_rows + rows - 1) / rows) < 3 * sms) rows /= 2;
  return rows;
}

// Gather or tile (moba_attention_tile.cuh)? Work in key-rows per query row: the gather path
// does the row's selected keys, mean over rows of min(k B, t), plus kGatherVisitKeys for each
// visited block (the fp32 running output and (max, sum) it loads and stores per visit); the
// tile path does every causal key tile (T / 2 per row on average: at the densities where it
// is chosen nearly every tile is selected by some row of a 64-row CTA), weighted by
// CudaTuning::attn_tile_cost. Fitted to tests/gpu/attn_paths.sh on an H200 (NOTES.md, "Tile
// path"): the tile path's time is flat in k, the gather path's grows with k B (1 + ~48 / B).
// Decided for the whole sequence (T = n_tokens), never for a query window: the two paths
// round differently, and a window's rows must equal the full call's bit for bit whatever the
// window (the analysis sizes its windows by the free device memory).
constexpr double kGatherVisitKeys = 48;
bool use_tile_path(int64_t n_q_heads, int64_t T, int64_t B, int top_k, Nx nx, const CudaTuning& tuning) {
  if (tuning.attn_path == CudaTuning::AttnPath::gather || !tile_attention_fits(n_q_heads, T, B, nx)) return false;
  if (tuning.attn_path == CudaTuning::AttnPath::tile) return true;
  const double kb = static_cast<double>(std::min<int64_t>(top_k, block_count(T, B))) * static_cast<double>(B);
  const double Td = static_cast<double>(T);
  const double keys = kb >= Td ? Td / 2 : kb - kb * kb / (2 * Td);  // mean over t of min(k B, t)
  const double gather = keys * (1.0 + kGatherVisitKeys / static_cast<double>(B));
  return 0.5 * Td * tuning.attn_tile_cost < gather;
}

// A tensor map of K or V for the wgmma rounds' TMA staging (CudaTuning::attn_tma): [n_heads]
// [n_tokens][d] 16-bit elements at `base` (strides sh, st in elements), boxes of 64 channels x 128
// keys x 1 head, 128-byte swizzle, zeros outside. False where the driver has no
// cuTensorMapEncodeTiled or the layout allows no map (base or strides not 16-byte multiples):
// the cp.async staging runs then.
std::atomic<int64_t> g_tma_launches{0};
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
bool encode_kv_map(CUtensorMap* map, const uint16_t* base, int64_t sh, int64_t st, int64_t n_heads, int64_t n_tokens,
                   int64_t d) {
  static const EncodeTiledFn encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return EncodeTiledFn{nullptr};
    }
    return reinterpret_cast<EncodeTiledFn>(fn);
  }();
  const uint64_t st_b = static_cast<uint64_t>(st) * 2;
  const uint64_t sh_b = n_heads > 1 ? static_cast<uint64_t>(sh) * 2 : st_b * static_cast<uint64_t>(n_tokens);
  if (!encode || reinterpret_cast<uintptr_t>(base) % 16 || st <= 0 || sh < 0 || st_b % 16 || sh_b % 16 ||
      sh_b == 0 || st_b >= (uint64_t{1} << 40) || sh_b >= (uint64_t{1} << 40) || n_tokens >= (int64_t{1} << 31))
    return false;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(d), static_cast<cuuint64_t>(n_tokens),
                              static_cast<cuuint64_t>(n_heads)};
  const cuuint64_t strides[2] = {st_b, sh_b};
  const cuuint32_t box[3] = {64, static_cast<cuuint32_t>(kCtaPiece), 1}, elem[3] = {1, 1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 3, const_cast<uint16_t*>(base), dims, strides, box, elem,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The gather kernel's instantiation for these numerics and head dim; warp_ctas: CTAs of one
// warp (sparse lists, use_warp_ctas).
const char* launch_gather(const AttnArgs& a, int64_t Hq, ElemKind kind, Nx nx, bool warp_ctas,
                          const CudaTuning& tuning, cudaStream_t stream) {
  const int64_t d = a.head_dim;
  const bool w = warp_ctas;
  // The wgmma rounds (moba_attention_kernel WG; CudaTuning::attn_wgmma): blocks of 64-key steps
  // (more than 32 keys), head dim 65-128, 16-bit numerics, CTAs of 4 warps, compute capability 9.0; an
  // explicit attn_min_blocks3 keeps its register-capped kernel for plain bf16.
  const bool capped = tuning.attn_min_blocks3 && kind != kF16 && nx == Nx::plain;
  const bool wg = tuning.attn_wgmma && !w && !capped && nx != Nx::x3 && step_keys(a.block_size) == kSub &&
                  tile_wgmma_available(d);
  if (wg) {
    AttnArgs aw = a;
    KvMaps maps{};
    aw.tma = tuning.attn_tma && encode_kv_map(&maps.k, a.k, a.k_sh, a.k_st, Hq / a.group, a.n_tokens, d) &&
             encode_kv_map(&maps.v, a.v, a.v_sh, a.v_st, Hq / a.group, a.n_tokens, d);
    if (aw.tma) g_tma_launches.fetch_add(1, std::memory_order_relaxed);
    if (kind == kF16) return launch_attention<128, __half>(aw, Hq, false, stream, &maps);
    if (nx == Nx::split_p) return launch_attention<128, __nv_bfloat16, 1, Nx::split_p>(aw, Hq, false, stream, &maps);
    return launch_attention<128, __nv_bfloat16>(aw, Hq, false, stream, &maps);
  }
  if (nx == Nx::x3)
    return d <= 64 ? launch_attention<64, __half, 1, Nx::x3>(a, Hq, w, stream)
                   : launch_attention<128, __half, 1, Nx::x3>(a, Hq, w, stream);
  if (nx == Nx::split_p)
    return d <= 64 ? launch_attention<64, __nv_bfloat16, 1, Nx::split_p>(a, Hq, w, stream)
                   : launch_attention<128, __nv_bfloat16, 1, Nx::split_p>(a, Hq, w, stream);
  if (kind == kF16)
    return d <= 64 ? launch_attention<64, __half>(a, Hq, w, stream) : launch_attention<128, __half>(a, Hq, w, stream);
  if (d > 64 && tuning.attn_min_blocks3 && !w)  // 3 CTAs per SM (register cap)
    return launch_attention<128, __nv_bfloat16, 3, Nx::plain, false>(a, Hq, false, stream);
  return d <= 64 ? launch_attention<64, __nv_bfloat16>(a, Hq, w, stream)
                 : launch_attention<128, __nv_bfloat16>(a, Hq, w, stream);
}

// Sparse lists: CTAs of 4 warps walk every causal block of their rows, and where a block has
// only a few of their queries one warp works while three wait at the barrier. Then CTAs of one
// warp over a quarter of the rows (64-key pieces: several such CTAs fit an SM) walk fewer
// blocks each, side by side. Picked where the pass's expected queries per (row group, causal
// block) of the 4-warp CTAs, rows x sum of k / (blocks / 2), is under kWarpCtaEntries
// (CudaTuning::attn_warp_ctas forces). A row's arithmetic does not depend on its CTA.
constexpr double kWarpCtaEntries = 16;
// A pass's expected queries per (row group of `rows`, causal key block): rows x the summed k over
// half the blocks (a query's causal blocks, on average).
double expected_list(int rows, int64_t n_blocks, int64_t k_sum) {
  return static_cast<double>(rows) * static_cast<double>(k_sum) / std::max(1.0, 0.5 * static_cast<double>(n_blocks));
}
bool use_warp_ctas(int rows, int64_t n_blocks, int64_t k_sum, const CudaTuning& tuning) {
  if (tuning.attn_warp_ctas >= 0) return tuning.attn_warp_ctas == 1;
  return rows >= 64 && expected_list(rows, n_blocks, k_sum) < kWarpCtaEntries;
}

// Rows per CTA for the 4-warp kernels of blocks of at most 64 keys (one block staged at a time, its
// list shared by the 4 warps 16 entries at a time): halved from `rows` (automatic only, down to 128)
// while a block's expected list (expected_list, as use_warp_ctas counts it) exceeds
// kListRowsEntries (a chunk and a half a warp). Speed only: a row's arithmetic does not depend on
// its group. On an H100 (NOTES.md, fortieth session), 8 B6 heads with B6's windows: B = 32 (7
// bands, 128 entries a block at 256 rows) 1.17 s at 256 rows, 1.00 s at 128; B = 16 (64 entries)
// 2.09 s at 256, 2.17 s at 128, so kept; the whole B6 25.8 / 25.6 s -> 25.3 / 25.3 / 25.2 s. The
// same for blocks of one 64-key step (the wgmma rounds where they run; forty-first session: B6's
// B = 64, 256 entries a block at 256 rows, 0.85 s at 256 rows, 0.81 s at 128, three runs each; the
// whole B6 25.21 / 25.23 s -> 24.96 / 25.05 s). Longer blocks keep `rows` (B = 128: -1 %).
constexpr double kListRowsEntries = 1.5 * kCtaWarps * 16;
int list_rows(int rows, int64_t n_blocks, int64_t k_sum, int64_t block_size, const CudaTuning& tuning) {
  if (tuning.attn_rows > 0 || block_size > kSub) return rows;
  while (rows > 128 && expected_list(rows, n_blocks, k_sum) > kListRowsEntries) rows /= 2;
  return rows;
}

// One band's call: p with the band's selections and outputs.
MobaAttentionParams band_params(const MobaAttentionParams& p, const MobaAttentionBand& b) {
  MobaAttentionParams q = p;
  q.selected = b.selected;
  q.top_k = b.top_k;
  q.out = b.out;
  q.lse = b.lse;
  return q;
}

// Both entries: every band's call checked first, q/k/v made 16-bit operands once, the bands
// the tile path takes run one call each, the rest in gather passes of up to
// kMaxAttentionBands bands (a row's arithmetic does not depend on which bands share its pass).
const char* attention_bands(const MobaAttentionParams& p, const MobaAttentionBand* bands, int n_bands,
                            cudaStream_t stream) {
  if (n_bands < 0 || (n_bands > 0 && bands == nullptr)) return "moba_attention_cuda: bad band list";
  for (int i = 0; i < n_bands; ++i)
    if (const char* e = moba_attention_can_run(band_params(p, bands[i]))) return e;
  const int64_t Hq = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim;
  if (d > 128 || d % 8 != 0) return "moba_attention_cuda: head_dim must be a multiple of 8 and <= 128";
  const int64_t q0 = p.q_begin, R = moba_attention_rows(p);  // the window: R rows from q0
  if (R == 0 || n_bands == 0) return nullptr;
  if (T > int64_t{kPosMask}) return "moba_attention_cuda: n_tokens >= 2^27 not supported";
  ElemKind kind = kBF16;
  Nx nx = Nx::plain;
  MOBA_TRY(qkv_numerics(p, true, "moba_attention_cuda: 16-bit inputs need dtype f16 or bf16",
                        "moba_attention_cuda: q, k, v disagree on the 16-bit dtype", &kind, &nx));
  Scratch scratch(stream);

  // 16-bit operands: given, or converted from the fp32 views (contiguous copies; x3: hi + lo).
  // q is converted whole, not just the window's rows: x3 scales each tensor by its max, and a
  // window's rows must equal the full call's.
  AttnArgs a{};
  if (nx == Nx::x3)
    MOBA_TRY(set_qkv_operands_x3(p, true, scratch, stream, &a));
  else
    MOBA_TRY(set_qkv_operands(p, true, kind, scratch, stream,
                              "moba_attention_cuda: 16-bit inputs need 16-byte aligned rows", &a));

  const int64_t n_blocks = block_count(T, p.block_size);
  const CudaTuning& tuning = cuda_tuning();
  std::vector<int> gather;  // the bands for the gather path
  for (int i = 0; i < n_bands; ++i) {
    if (!use_tile_path(Hq, T, p.block_size, bands[i].top_k, nx, tuning)) {
      gather.push_back(i);
      continue;
    }
    Scratch bits(stream);
    TileAttnArgs ta{};
    ta.q = a.q, ta.k = a.k, ta.v = a.v;
    ta.q_sh = a.q_sh, ta.q_st = a.q_st, ta.k_sh = a.k_sh, ta.k_st = a.k_st, ta.v_sh = a.v_sh, ta.v_st = a.v_st;
    ta.n_tokens = T, ta.head_dim = d, ta.block_size = p.block_size, ta.n_blocks = n_blocks;
    ta.group = Hq / p.k.n_heads;
    ta.top_k = bands[i].top_k;
    ta.scale_log2 = softmax_scale_log2(p);
    ta.q_begin = q0, ta.q_count = R;
    ta.selected = bands[i].selected;
    ta.first_query = bands[i].first_query;
    ta.words = (n_blocks + 31) / 32;
    MOBA_TRY(bits.alloc(&ta.bits, static_cast<size_t>(Hq * R * ta.words)));
    ta.out = bands[i].out;
    ta.lse = bands[i].lse;
    const TileEngine engine = tuning.tile_wgmma && tile_wgmma_available(d) ? TileEngine::wgmma
                              : tuning.tile_min_blocks3                   ? TileEngine::mma3
                                                                          : TileEngine::mma;
    MOBA_TRY(launch_tile_attention(ta, Hq, kind == kF16, nx, engine, stream));
  }
  // Rows per CTA as for the whole sequence, also for a window: a window's calls run side by side
  // on several streams (the GPU analysis), and small row groups reload each block's keys for
  // fewer queries (B6 with 8192-query windows: 128 rows instead of 256, attention 36 % slower).
  const int rows4 = pick_rows(Hq, T, tuning.attn_rows > 0 ? tuning.attn_rows : p.rows_per_cta);
  const int64_t rows_min = std::max(16, rows4 / 4);  // the one-warp CTAs' rows (the fewest)
  if (!gather.empty() && ((R + rows_min - 1) / rows_min > 65535 * 16 || Hq > 65535))
    return "moba_attention_cuda: grid too large";
  a.n_tokens = T;
  a.head_dim = d;
  a.block_size = p.block_size;
  a.n_blocks = n_blocks;
  a.group = Hq / p.k.n_heads;
  a.q_begin = q0;
  a.q_count = R;
  a.scale_log2 = softmax_scale_log2(p);
  a.ml_band = Hq * R;
  a.rounds = tuning.attn_rounds;
  // Wide rows: the window's Q rows in fragment order, for the gather kernels that read them.
  if (wide_rows(nx, d, p.block_size) && !gather.empty()) {
    uint16_t* qp = nullptr;
    MOBA_TRY(scratch.alloc(&qp, static_cast<size_t>(Hq * R * d)));
    const int64_t n = Hq * R * (d / 8);
    const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
    if (d == 64)
      permute_q_kernel<64><<<blocks, 256, 0, stream>>>(a.q, a.q_sh, a.q_st, q0, R, Hq, qp);
    else
      permute_q_kernel<128><<<blocks, 256, 0, stream>>>(a.q, a.q_sh, a.q_st, q0, R, Hq, qp);
    MOBA_CUDA_LAUNCH_CHECK();
    a.qp = qp;
  }
  for (size_t g0 = 0; g0 < gather.size(); g0 += kMaxAttentionBands) {
    Scratch pass(stream);
    ListArgs la{};
    int64_t n_entries = 0, k_sum = 0;
    la.bands.n = static_cast<int>(std::min<size_t>(kMaxAttentionBands, gather.size() - g0));
    for (int j = 0; j < la.bands.n; ++j) {
      const MobaAttentionBand& b = bands[gather[g0 + static_cast<size_t>(j)]];
      la.bands.selected[j] = b.selected;
      la.bands.top_k[j] = b.top_k;
      la.bands.out[j] = a.out[j] = b.out;
      la.bands.lse[j] = a.lse[j] = b.lse;
      la.bands.first_query[j] = b.first_query;
      k_sum += std::min<int64_t>(b.top_k, n_blocks);
      n_entries += Hq * R * std::min<int64_t>(b.top_k, n_blocks);
    }
    const bool warp_ctas = use_warp_ctas(rows4, n_blocks, k_sum, tuning);
    const int rows = warp_ctas ? static_cast<int>(rows_min) : list_rows(rows4, n_blocks, k_sum, p.block_size, tuning);
    a.q_smem = tuning.attn_q_smem && a.qp && !warp_ctas && q_smem_bytes(rows, d) <= size_t{kQSmemMax};
    const int64_t n_groups = (R + rows - 1) / rows;
    const int64_t n_lists = Hq * n_groups * n_blocks;
    a.rows = rows;
    a.n_groups = static_cast<int>(n_groups);
    la.block_size = p.block_size;
    la.n_blocks = n_blocks;
    la.n_q_heads = Hq;
    la.q_begin = q0;
    la.q_count = R;
    la.rows = rows;
    la.n_groups = static_cast<int>(n_groups);
    la.head_dim = d;
    int64_t* offsets = nullptr;
    int32_t* entries = nullptr;
    MOBA_TRY(pass.alloc(&la.counts, static_cast<size_t>(n_lists + 1)));
    MOBA_TRY(pass.alloc(&offsets, static_cast<size_t>(n_lists + 1)));
    MOBA_TRY(pass.alloc(&entries, static_cast<size_t>(n_entries)));
    la.offsets = offsets;
    la.entries = entries;
    const bool warp_lists = use_warp_lists(k_sum);
    if (warp_lists) MOBA_TRY(pass.alloc(&la.ascending, static_cast<size_t>(Hq * R * kMaxAttentionBands)));
    MOBA_TRY(launch_lists(la, la.counts, n_lists, offsets, warp_lists, pass, stream));
    a.offsets = offsets;
    a.entries = entries;
    MOBA_TRY(pass.alloc(&a.ml, static_cast<size_t>(la.bands.n * Hq * R)));
    MOBA_TRY(launch_gather(a, Hq, kind, nx, warp_ctas, tuning, stream));
  }
  return nullptr;
}

}  // namespace

const char* moba_attention_cuda(const MobaAttentionParams& p, void* stream_ptr) {
  const MobaAttentionBand band{p.selected, p.top_k, p.out, p.lse, 0};
  return attention_bands(p, &band, 1, static_cast<cudaStream_t>(stream_ptr));
}

const char* moba_attention_bands_cuda(const MobaAttentionParams& p, const MobaAttentionBand* bands, int n_bands,
                                      void* stream_ptr) {
  return attention_bands(p, bands, n_bands, static_cast<cudaStream_t>(stream_ptr));
}

int64_t moba_attention_tma_launches() { return g_tma_launches.load(std::memory_order_relaxed); }
int64_t moba_attention_q_smem_launches() { return g_q_smem_launches.load(std::memory_order_relaxed); }

}  // namespace moba::kernels
