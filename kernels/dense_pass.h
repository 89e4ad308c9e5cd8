#pragma once
// Dense streaming pass over full causal attention (DESIGN.md §4): everything the metrics and
// the oracle need, with memory bounded by a query tile — never n_tokens x n_tokens.
//
// For query head h (KV head h / (n_q_heads / n_kv_heads)) and each query t in the range
// [query_begin, query_begin + query_count):
//   s_t(j)  = scale * q_t . k_j,  j <= t                  (full causal row)
//   lse_t   = ln sum_{j<=t} exp(s_t(j))                   pass 1: online max/sum over key tiles
//   P_t(j)  = exp(s_t(j) - lse_t)                         pass 2: exact probabilities, key tiles
//   o_t     = sum_{j<=t} P_t(j) v_j                        (optional)
//   m_t(b)  = sum_{j in b, j<=t} P_t(j) for each requested block size B_i   (optional)
//   top-n   = the top_n keys with the highest P_t(j), descending. Ranked by the fp32 score
//             s_t(j) (P is monotone in it); on exactly equal scores the larger key index
//             (more recent) ranks first                                     (optional)
// Two passes over the keys; scratch per thread is a query tile x key tile score block plus a
// query tile's accumulators. Outputs are relative to the query range, so a caller streams a
// long sequence by calling this once per chunk of queries (e.g. 256) and reducing each
// chunk's block masses (oracle selection, coverage, recall) before the next; the chunk
// bounds the block-mass buffers (n_q_heads x query_count x n_blocks(B_i) floats). To process
// one head, pass q.heads(h, 1) and the matching k.heads(h / group, 1), v.heads(...).
//
// Block masses: entries b > floor(t / B_i) are 0; sum_b m_t(b) = 1 up to fp32 rounding
// (within 1e-5). Precision: fp32 dot products (Eigen), fp32 exp, sums in double; o and lse
// within ~1e-6 relative of a double brute force on f32 inputs.
//
// Preconditions: dense_pass_can_run(p) == nullptr.
#include <cstdint>

#include "core/tensor.h"
#include "kernels/operand.h"

namespace moba::kernels {

constexpr int kDensePassMaxBlockSizes = 8;

struct DensePassParams {
  Operand q;                       // [n_q_heads, n_tokens, head_dim]; stride_dim == 1
  Operand k;                       // [n_kv_heads, n_tokens, head_dim]; stride_dim == 1
  Operand v;                       // [n_kv_heads, n_tokens, head_dim]; needed only with `out`
  float softmax_scale = 0.0f;      // 0 = 1 / sqrt(head_dim)
  int64_t query_begin = 0;         // first query position of the range
  int64_t query_count = 0;         // queries in the range; query_begin + query_count <= n_tokens

  float* lse = nullptr;            // out [n_q_heads, query_count]; required
  float* out = nullptr;            // out [n_q_heads, query_count, head_dim]; optional (o_full)

  int n_block_sizes = 0;                               // 0..kDensePassMaxBlockSizes
  int64_t block_sizes[kDensePassMaxBlockSizes] = {};   // B_i >= 1
  // out [n_q_heads, query_count, n_blocks(B_i)] per block size, n_blocks(B) = ceil(n_tokens / B)
  // over the WHOLE sequence (block index b is absolute); required for each i < n_block_sizes.
  float* block_mass[kDensePassMaxBlockSizes] = {};

  int top_n = 0;                   // 0 = skip; else the n highest-probability keys per query
  int32_t* top_index = nullptr;    // out [n_q_heads, query_count, top_n] key positions; -1 padded when t + 1 < top_n
  float* top_prob = nullptr;       // out [n_q_heads, query_count, top_n] P_t of each; 0 where padded; optional

  // CUDA only, optional (score_sum null: not computed; the CPU path ignores them): the raw
  // scores' moments for the SNR probe, as analysis/gpu's moments kernel computes them, bit for
  // bit. Per query t of the range (row t - query_begin, score_stride entries a row) and 16-key
  // block m < floor(t / 16) (wholly before t's own): the sum and the sum of squares of
  // s_j = q_t . k_j (unscaled; 16-key fp32 sums, kernels/cuda/score_moments.cuh's order) and
  // the largest s_j with its key j (the later key on ties). Entries of other blocks are left
  // as they are. Needs one query head and q, k as 16-bit device operands (raw16), not under
  // exact f32 numerics (x3).
  double* score_sum = nullptr;
  double* score_sq = nullptr;
  float* score_max = nullptr;
  int32_t* score_arg = nullptr;
  int64_t score_stride = 0;

  int64_t query_tile = 0;          // CPU tile sizes; 0 = 64 queries
  int64_t key_tile = 0;            // 0 = 256 keys
  Precision precision = Precision::exact;  // CUDA only (kernels/operand.h); the CPU ignores it
};

const char* dense_pass_can_run(const DensePassParams& p);
// CPU reference; OpenMP over (query head, query tile).
void dense_pass_cpu(const DensePassParams& p);

#ifdef MOBA_HAVE_CUDA
const char* dense_pass_cuda(const DensePassParams& p, void* stream = nullptr);
#endif

}  // namespace moba::kernels
