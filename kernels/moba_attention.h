#pragma once
// MoBA block-sparse attention forward (DESIGN.md §3):
//   o_t   = sum_{j in A_t} softmax_j(scale * q_t . k_j) v_j
//   lse_t = ln sum_{j in A_t} exp(scale * q_t . k_j)          (natural log, scale included)
//   A_t   = { j : block(j) listed in selected[h][t], j <= t }   (union of the listed blocks,
//           causal: the current block contributes keys j <= t only; a listed block after
//           the current one contributes nothing)
// GQA by index: query head h reads KV head h / (n_q_heads / n_kv_heads); nothing is copied.
//
// `selected` is gate_topk's output layout: per (h, t) top_k block indices; entries < 0 or
// >= n_blocks are skipped; a block listed twice is attended once (the CPU deduplicates).
// A query whose A_t is empty gets o_t = 0 and lse_t = -inf.
//
// Query window: a call computes the rows t in [q_begin, q_begin + q_count) of every query
// head (default: all of them). `selected`, `out` and `lse` then hold only the window's rows
// (row i of a head is query t = q_begin + i); q, k and v stay whole (q row t is read at its
// absolute position, keys j <= t of the whole sequence, the current block is floor(t / B)).
// So a long sequence can be processed a window at a time, holding one window's selections.
// Each backend gives a window's rows bit-identical to the same rows of a full call (the same
// arithmetic per row; the CUDA path choice and the fp32 -> 16-bit conversion of q depend on
// the whole sequence, not on the window).
//
// Precision: the CPU reference computes scores with fp32 dot products (Eigen), subtracts one
// max over all attended keys, exponentiates in fp32, sums the normaliser in double and adds
// each block's fp32 P.V into a double accumulator; relative error vs a double brute force
// is ~1e-6 on f32 inputs (the tests hold it to 1e-5).
//
// Preconditions: moba_attention_can_run(p) == nullptr.
#include <cstdint>

#include "core/tensor.h"
#include "kernels/operand.h"

namespace moba::kernels {

struct MobaAttentionParams {
  Operand q;                       // [n_q_heads, n_tokens, head_dim]; stride_dim == 1
  Operand k;                       // [n_kv_heads, n_tokens, head_dim]; stride_dim == 1
  Operand v;                       // [n_kv_heads, n_tokens, head_dim]; stride_dim == 1
  const int32_t* selected = nullptr;  // [n_q_heads, q_count, top_k] contiguous
  int top_k = 0;                   // >= 1
  int64_t block_size = 0;          // B >= 1
  float softmax_scale = 0.0f;      // 0 = 1 / sqrt(head_dim)
  float* out = nullptr;            // out [n_q_heads, q_count, head_dim] contiguous; required (q_count > 0)
  float* lse = nullptr;            // out [n_q_heads, q_count] contiguous; optional
  int64_t q_begin = 0;             // first query row computed: 0 <= q_begin <= n_tokens
  int64_t q_count = -1;            // rows [q_begin, q_begin + q_count) (<= n_tokens); -1 = to n_tokens
  Precision precision = Precision::exact;  // CUDA only (kernels/operand.h); the CPU ignores it
  // CUDA gather path only: query rows per CTA (16..65536), for a caller that runs several calls
  // side by side and knows the device is filled by all of them; 0 = automatic (enough CTAs
  // from this call alone); the kernels for blocks of at most 64 keys halve either, down to 128,
  // where a key block's expected list is long (moba_attention.cu list_rows). Speed only: a row's
  // bits do not depend on it. CudaTuning::attn_rows, when set, wins (as given).
  int rows_per_cta = 0;
};

const char* moba_attention_can_run(const MobaAttentionParams& p);
// The window's row count: q_count, or n_tokens - q_begin for -1.
int64_t moba_attention_rows(const MobaAttentionParams& p);
// CPU reference; OpenMP over (query head, query tile).
void moba_attention_cpu(const MobaAttentionParams& p);

#ifdef MOBA_HAVE_CUDA
const char* moba_attention_cuda(const MobaAttentionParams& p, void* stream = nullptr);

// Several selections ("bands") over the same q, k, v, block size and query window, each with
// its own outputs: band i's rows are bit for bit moba_attention_cuda's with p.selected,
// p.top_k, p.out and p.lse taken from bands[i] (p's own four are ignored). Bands the CUDA path
// would run on its tile path run as their own calls; the others share gather passes of up to
// kMaxAttentionBands bands, each key block's K/V staged once for every band's queries (the GPU
// analysis' nested budgets: a block size's bands of one router, kernels/cuda/NOTES.md).
// `first_query`: queries t < first_query attend nothing in this band (o = 0, lse = -inf, as for
// an empty selection) whatever their selection says — the analysis' queries without a choice
// (t < k B), whose output is o_full and whose band is never used.
struct MobaAttentionBand {
  const int32_t* selected = nullptr;  // [n_q_heads, q_count, top_k] contiguous
  int top_k = 0;
  float* out = nullptr;  // [n_q_heads, q_count, head_dim]
  float* lse = nullptr;  // optional [n_q_heads, q_count]
  int64_t first_query = 0;  // absolute position
};
constexpr int kMaxAttentionBands = 8;
const char* moba_attention_bands_cuda(const MobaAttentionParams& p, const MobaAttentionBand* bands, int n_bands,
                                      void* stream = nullptr);
// Gather launches since the process started whose K/V pieces the TMA staged (CudaTuning::attn_tma,
// where a tensor map could be made): tests check that the staging they ask for ran.
int64_t moba_attention_tma_launches();
// Gather launches since the process started whose kernel read its row group's Q rows from shared
// memory (CudaTuning::attn_q_smem, where they fit).
int64_t moba_attention_q_smem_launches();
#endif

}  // namespace moba::kernels
