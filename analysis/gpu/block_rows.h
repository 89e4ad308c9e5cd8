#pragma once
// Block-score rows and their selection on the device, shared by the GPU-resident analysis
// (analysis/gpu/analyze_gpu.cu) and moba route's device routing (analysis/gpu/route_gpu.cu):
// the score row of one router, query head and query chunk (analysis/router.h block_score_row:
// the CPU's arithmetic, so both backends select on the same numbers), GQA shared's group sums,
// and the selector (kernels/gate_topk.h select_blocks_row, analysis/router.h select_mass_row)
// on those rows. Device pointers throughout; kernels launch on the default stream.
#include <cstdint>
#include <string>

#include "analysis/config_key.h"

namespace moba::analysis::gpu {

// How a row selects (RowArgs, SelectRowsArgs).
enum RowMode : int {
  kRowFixed = 0,      // top-(k - 1) of its score row (gates, quest, minference-bs, sink-window, nsa-shared)
  kRowThreshold = 1,  // moba-threshold: mass = softmax over the routable blocks of score / sqrt(d)
  kRowTopp = 2,       // oracle-topp: ranked and weighed by the block masses, from m_t(c) on
};

// One router's score-row inputs at one block size.
struct ScoreRowSource {
  RouterKind kind = RouterKind::moba;  // moba / moba-kconv (gate scores), quest, minference-bs,
                                       // sink-window, moba-threshold, nsa-shared
  const float* q = nullptr;            // [n_heads, T, d] fp32: every query head of the KV group
  int64_t n_heads = 0, n_tokens = 0, head_dim = 0;
  const float* keys = nullptr;  // quest: kmin then kmax [2, nb, d]; sink-window: none; the others
                                // the pooled keys [nb, d] (the gates': of their routing keys)
  int64_t block_size = 0, n_blocks = 0;
  float* qbar = nullptr;      // minference-bs scratch [nb, d]
  double* nsa_sum = nullptr;  // nsa-shared scratch [nq, nb]
};
// The rows of query head `head` (nsa-shared: the group's, whatever `head`) for queries
// [t0, t0 + nq) into scores [nq, n_blocks]: columns b < c(t) (up to the chunk's largest
// current block) hold block_score_row's values (gates: the gate score). Throws
// std::runtime_error on a CUDA error.
void score_rows_cuda(const ScoreRowSource& s, int64_t head, int64_t t0, int64_t nq, float* scores);

// GQA shared: sum[i, b] = the heads' rows src[h * head_stride + i * nb + b] added in head order
// in fp32 (block_score_row under shared, select_oracle_shared), and, when `mean` is not null,
// their sum in double divided by n_heads (select_topp_shared), for b <= c(t0 + i), b < nb.
void group_sum_cuda(const float* src, int64_t head_stride, int64_t n_heads, int64_t t0, int64_t nq, int64_t B,
                    int64_t nb, float* sum, double* mean);

// Selection of rows of n_blocks - 1 <= kMaxRowBlocks routable blocks at most.
constexpr int64_t kMaxRowBlocks = 16384;
// Why the device rows cannot take a head dim, or a block size giving n_blocks blocks ("" when
// they can): the reasons the GPU analysis and moba route's device routing give.
std::string head_dim_unsupported(int64_t head_dim);
std::string row_blocks_unsupported(int64_t block_size, int64_t n_blocks);
struct SelectRowsArgs {
  int64_t t0 = 0, T = 0, B = 0, nb = 0;  // nb: row stride of rows and mass
  int mode = kRowFixed;                  // RowMode
  const float* rows = nullptr;           // row r of query i at rows + r * row_stride + i * nb
  int64_t row_stride = 0;
  const double* mass = nullptr;          // kRowTopp: [nq, nb] masses beside the ranking rows, or
                                         // null (the rows are the masses)
  int top_k = 1;
  bool recent = true;
  double tau = 0.9, score_scale = 1.0;   // variable budget: RoutingOptions::tau, 1/sqrt(d)
  int32_t* sel = nullptr;                // [heads, T, top_k]: row r goes to heads r * n_copies + x
  int n_copies = 1;
};
// Selects rows r < n_rows of queries [t0, t0 + nq): the current block plus the top-(k - 1)
// routable blocks (or the variable budget), ascending, -1 padded.
void select_rows_cuda(const SelectRowsArgs& a, int64_t nq, int n_rows);

}  // namespace moba::analysis::gpu
