#pragma once
// Fused MoBA gate scores + top-k block selection (DESIGN.md §3, exact).
//
// For query head h (KV head h / (n_q_heads / n_kv_heads)), query position t, block size B:
//   s(t, b)   = q_t . kbar_b            fp32 accumulate, no scale (kbar from block_pool)
//   c         = floor(t / B)            current block: always selected
//   routable  = { b : (b + 1) * B <= t } = { b : b < c }     (#routable = c)
//   picks     = the min(top_k - 1, c) routable blocks with the highest scores
//   selected  = picks U {c}, ascending, then -1 padding up to top_k
// so top_k counts the current block, top_k = 1 selects the current block only, and when
// n_tokens <= top_k * B every query selects every block up to its own (dense).
//
// Ties (exactly equal scores): `recent` — the larger block index wins (FlashMoBA's rule);
// `older` — the smaller index wins. Every backend implements exactly this order: candidates
// are ranked by (score, index) descending for `recent`, (score, -index) for `older`. NaN
// ranks below every number (including -inf), so it is chosen only when it must be (there
// are no more than top_k - 1 routable blocks). A routable block is selectable whatever its
// score: eligibility is by position only.
//
// GQA: `per_head` — each query head routes on its own scores (both references);
// `shared` — one choice per KV group, made from the sum over the group's query heads of
// their fp32 scores (summed in fp32, in head order); every head of the group gets the same
// `selected` row.
//
// Output layout is `moba route`'s `selected` (DESIGN.md §7): int32 [n_q_heads, n_tokens,
// top_k], contiguous. Memory: the CPU reference works on query tiles of `query_tile` rows
// (OpenMP items), scoring 4 queries at a time into a per-thread scratch of 8 x n_blocks
// floats, plus one transposed copy of kbar; nothing of size n_tokens x n_blocks is ever
// allocated. GPU backends fuse the scores into the selection.
// Selections of two backends must agree as sets except where scores tie within the
// accumulation error (documented per dtype in tests/tolerances.h).
//
// Preconditions: gate_topk_can_run(p) == nullptr.
#include <cmath>
#include <cstdint>

#include "core/tensor.h"
#include "kernels/operand.h"

#if defined(__CUDACC__)
#define MOBA_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#else
#define MOBA_HOST_DEVICE_INLINE inline
#endif

namespace moba::kernels {

enum class TieRule { recent, older };
enum class GqaMode { per_head, shared };

// The selection order above, once for every backend and for analysis (host and device):
// candidate (score sa, block a) ranks strictly before (sb, b), a != b. NaN ranks below every
// number; otherwise the higher score; on equal scores the larger index under `recent`
// (recent = true), the smaller under `older`.
template <typename Index>
MOBA_HOST_DEVICE_INLINE bool ranks_before(float sa, Index a, float sb, Index b, bool recent) {
#ifdef __CUDA_ARCH__
  const bool na = isnan(sa), nb = isnan(sb);
#else
  const bool na = std::isnan(sa), nb = std::isnan(sb);
#endif
  if (na != nb) return nb;
  if (!na && sa != sb) return sa > sb;
  return recent ? a > b : a < b;
}
template <typename Index>
MOBA_HOST_DEVICE_INLINE bool ranks_before(float sa, Index a, float sb, Index b, TieRule tie) {
  return ranks_before(sa, a, sb, b, tie == TieRule::recent);
}

struct GateTopkParams {
  Operand q;                       // [n_q_heads, n_tokens, head_dim]; stride_dim == 1
  const float* kbar = nullptr;     // [n_kv_heads, n_blocks, head_dim] contiguous (block_pool mean)
  int64_t n_kv_heads = 0;          // n_q_heads % n_kv_heads == 0
  int64_t block_size = 0;          // B >= 1; n_blocks = ceil(n_tokens / B)
  int top_k = 0;                   // k >= 1, counts the current block
  TieRule tie = TieRule::recent;
  GqaMode gqa = GqaMode::per_head;
  int32_t* selected = nullptr;     // out [n_q_heads, n_tokens, top_k]; required
  // out [n_q_heads, n_tokens, top_k], optional: the gate score of each `selected` entry
  // (the group sum under `shared`), the current block's real score s(t, c) included; NaN
  // where `selected` is -1.
  float* selected_scores = nullptr;
  int64_t query_tile = 0;          // queries per tile (CPU and scratch size); 0 = 128
  Precision precision = Precision::exact;  // CUDA only (kernels/operand.h); the CPU ignores it
};

const char* gate_topk_can_run(const GateTopkParams& p);
// CPU reference; OpenMP over (query head or KV group, query tile).
void gate_topk_cpu(const GateTopkParams& p);

// Streaming helper for analysis (SNR, score histograms): the gate scores of queries
// [t_begin, t_begin + t_count) of query head `q_head` into `scores` [t_count, n_blocks]
// row-major (caller scratch): scores[i][b] = s(t_begin + i, b) for routable b (b < c) and
// -inf for b >= c (current and future blocks). Under `shared` the row is the KV group's
// fp32 sum (q_head names any head of the group). Uses q, kbar, n_kv_heads, block_size, gqa
// of `p` (top_k and the outputs are ignored). Single-threaded: call it from your own loop
// (each call transposes one KV head's kbar, so use tiles of 64+ queries). Bit-identical to
// the scores gate_topk_cpu selects on (fp32, accumulated in channel order).
void gate_scores_tile_cpu(const GateTopkParams& p, int64_t q_head, int64_t t_begin,
                          int64_t t_count, float* scores);

// The selector alone, for routers with other block scores (oracle by block mass, Quest,
// ...): one query at position t whose current block is `current_block` (= floor(t / B));
// `scores` [>= current_block] holds the score of each routable block b < current_block
// (entries at and after current_block are not read). Writes `selected_row` [top_k] by the
// rules above (ascending, current block included, -1 padded) and returns the number of
// valid entries, min(top_k - 1, current_block) + 1.
int select_blocks_row(const float* scores, int64_t current_block, int top_k, TieRule tie,
                      int32_t* selected_row);

#ifdef MOBA_HAVE_CUDA
const char* gate_topk_cuda(const GateTopkParams& p, void* stream = nullptr);
#endif

}  // namespace moba::kernels
