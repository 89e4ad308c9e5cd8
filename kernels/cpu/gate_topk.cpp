// CPU reference of fused gate scores + top-k selection (kernels/gate_topk.h).
//
// Scores: s(t, b) = sum_c q_t[c] * kbar_b[c] accumulated in fp32 strictly in channel order,
// so a score does not depend on tiling or on which helper computed it (gate_topk_cpu and
// gate_scores_tile_cpu give bit-identical values). kbar is transposed once per call to
// [n_kv_heads, head_dim, n_blocks] so the inner loop runs over blocks and vectorises.
#include "kernels/gate_topk.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/block_pool.h"
#include "kernels/constants.h"
#include "kernels/cpu/cpu_common.h"

namespace moba::kernels {
namespace {

constexpr int64_t kRowsPerGroup = 4;  // queries sharing one sweep over kbar^T

// Block `a` ranks strictly before block `b` (distinct indices) by their scores (gate_topk.h).
inline bool block_ranks_before(const float* scores, int32_t a, int32_t b, TieRule tie) {
  return ranks_before(scores[a], a, scores[b], b, tie);
}

// kbar [n_kv_heads, n_blocks, d] -> kbar_t [n_kv_heads, d, n_blocks].
std::vector<float> transpose_kbar(const GateTopkParams& p, int64_t n_blocks) {
  const int64_t d = p.q.head_dim;
  std::vector<float> kt(static_cast<size_t>(p.n_kv_heads * n_blocks * d));
  for (int64_t h = 0; h < p.n_kv_heads; ++h)
    for (int64_t b = 0; b < n_blocks; ++b)
      for (int64_t c = 0; c < d; ++c)
        kt[static_cast<size_t>((h * d + c) * n_blocks + b)] = p.kbar[(h * n_blocks + b) * d + c];
  return kt;
}

// Scores of queries [t0, t0 + rows) of query head h over blocks [0, n_cols) into
// out [rows, stride] (rows <= kRowsPerGroup). fp32, channel order.
void score_rows(const GateTopkParams& p, const float* kbar_t, int64_t n_blocks, int64_t h,
                int64_t t0, int64_t rows, int64_t n_cols, float* out, int64_t stride) {
  const int64_t d = p.q.head_dim;
  const int64_t group = p.q.n_heads / p.n_kv_heads;
  const float* kt_head = kbar_t + (h / group) * d * n_blocks;  // [d, n_blocks]
  const float* q[kRowsPerGroup];
  for (int64_t i = 0; i < rows; ++i) {
    q[i] = p.q.row(h, t0 + i);
    std::fill(out + i * stride, out + i * stride + n_cols, 0.0f);
  }
  for (int64_t c = 0; c < d; ++c) {
    const float* kt = kt_head + c * n_blocks;
    for (int64_t i = 0; i < rows; ++i) {
      const float qc = q[i][c];
      float* s = out + i * stride;
      for (int64_t b = 0; b < n_cols; ++b) s[b] += qc * kt[b];
    }
  }
}

// Gate scores (per head, or the KV group's sum under `shared`) of queries [t0, t0 + rows)
// over blocks [0, n_cols) into out [rows, stride]; tmp has the same size.
void gate_rows(const GateTopkParams& p, const float* kbar_t, int64_t n_blocks, int64_t h,
               int64_t t0, int64_t rows, int64_t n_cols, float* out, float* tmp, int64_t stride) {
  if (p.gqa == GqaMode::per_head) {
    score_rows(p, kbar_t, n_blocks, h, t0, rows, n_cols, out, stride);
    return;
  }
  const int64_t group = p.q.n_heads / p.n_kv_heads;
  const int64_t h0 = (h / group) * group;
  score_rows(p, kbar_t, n_blocks, h0, t0, rows, n_cols, out, stride);
  for (int64_t hh = h0 + 1; hh < h0 + group; ++hh) {
    score_rows(p, kbar_t, n_blocks, hh, t0, rows, n_cols, tmp, stride);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t b = 0; b < n_cols; ++b) out[i * stride + b] += tmp[i * stride + b];
  }
}

}  // namespace

int select_blocks_row(const float* scores, int64_t current_block, int top_k, TieRule tie,
                      int32_t* selected_row) {
  const int64_t n_pick = std::min<int64_t>(top_k - 1, current_block);
  int cnt = 0;
  if (n_pick == current_block) {  // every routable block fits: no choice to make
    for (int64_t b = 0; b < current_block; ++b) selected_row[cnt++] = static_cast<int32_t>(b);
  } else if (n_pick > 0) {
    // selected_row[0, cnt) holds the best candidates so far, best first.
    for (int64_t bb = current_block - 1; bb >= 0; --bb) {
      const int32_t b = static_cast<int32_t>(bb);
      if (cnt == n_pick && !block_ranks_before(scores, b, selected_row[cnt - 1], tie)) continue;
      int pos = cnt < n_pick ? cnt++ : cnt - 1;
      while (pos > 0 && block_ranks_before(scores, b, selected_row[pos - 1], tie)) {
        selected_row[pos] = selected_row[pos - 1];
        --pos;
      }
      selected_row[pos] = b;
    }
    std::sort(selected_row, selected_row + cnt);
  }
  selected_row[cnt++] = static_cast<int32_t>(current_block);
  for (int i = cnt; i < top_k; ++i) selected_row[i] = -1;
  return cnt;
}

void gate_scores_tile_cpu(const GateTopkParams& p, int64_t q_head, int64_t t_begin,
                          int64_t t_count, float* scores) {
  const int64_t n_blocks = block_count(p.q.n_tokens, p.block_size);
  // Narrow to q_head's KV group so only one KV head's kbar is transposed.
  const int64_t group = p.q.n_heads / p.n_kv_heads, kv = q_head / group;
  GateTopkParams one = p;
  one.q = p.q.heads(kv * group, group);
  one.kbar = p.kbar + kv * n_blocks * p.q.head_dim;
  one.n_kv_heads = 1;
  const int64_t h_local = q_head - kv * group;
  const std::vector<float> kbar_t = transpose_kbar(one, n_blocks);
  std::vector<float> tmp(static_cast<size_t>(kRowsPerGroup * n_blocks));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t t0 = t_begin; t0 < t_begin + t_count; t0 += kRowsPerGroup) {
    const int64_t rows = std::min(kRowsPerGroup, t_begin + t_count - t0);
    const int64_t n_cols = (t0 + rows - 1) / p.block_size;  // routable blocks of the last row
    float* out = scores + (t0 - t_begin) * n_blocks;
    gate_rows(one, kbar_t.data(), n_blocks, h_local, t0, rows, n_cols, out, tmp.data(), n_blocks);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t c = (t0 + i) / p.block_size;
      std::fill(out + i * n_blocks + c, out + (i + 1) * n_blocks, neg_inf);
    }
  }
}

void gate_topk_cpu(const GateTopkParams& p) {
  const int64_t n_q = p.q.n_heads, T = p.q.n_tokens, B = p.block_size;
  const int64_t n_blocks = block_count(T, B);
  const int64_t group = n_q / p.n_kv_heads;
  const int64_t tile = p.query_tile > 0 ? p.query_tile : 128;
  const int64_t n_tiles = (T + tile - 1) / tile;
  const bool shared = p.gqa == GqaMode::shared;
  const int64_t n_routers = shared ? p.n_kv_heads : n_q;  // independent choices per query
  const int64_t n_items = n_routers * n_tiles;
  const int K = p.top_k;
  const float nan = kQuietNaN;
  if (n_items == 0) return;
  const std::vector<float> kbar_t = transpose_kbar(p, n_blocks);

#pragma omp parallel if (n_q * T * (n_blocks / 2 + 1) * p.q.head_dim > cpu::kMinParallelWork)
  {
    // [kRowsPerGroup, n_blocks] scores and summing scratch.
    std::vector<float> rows_buf(static_cast<size_t>(kRowsPerGroup * n_blocks));
    std::vector<float> tmp(static_cast<size_t>(kRowsPerGroup * n_blocks));
    std::vector<int32_t> sel(static_cast<size_t>(K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t router = item / n_tiles, tile_idx = item % n_tiles;
      const int64_t h_first = shared ? router * group : router;  // head whose row is scored
      const int64_t n_out_heads = shared ? group : 1;
      const int64_t t_end = std::min(T, (tile_idx + 1) * tile);
      for (int64_t t0 = tile_idx * tile; t0 < t_end; t0 += kRowsPerGroup) {
        const int64_t rows = std::min(kRowsPerGroup, t_end - t0);
        const int64_t n_cols = (t0 + rows - 1) / B + 1;  // up to the last row's current block
        gate_rows(p, kbar_t.data(), n_blocks, h_first, t0, rows, n_cols, rows_buf.data(),
                  tmp.data(), n_blocks);
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t t = t0 + i, c = t / B;
          const float* s = rows_buf.data() + i * n_blocks;
          select_blocks_row(s, c, K, p.tie, sel.data());
          for (int64_t hh = h_first; hh < h_first + n_out_heads; ++hh) {
            const int64_t off = (hh * T + t) * K;  // [n_q_heads, n_tokens, top_k]
            std::copy(sel.begin(), sel.end(), p.selected + off);
            if (p.selected_scores)
              for (int j = 0; j < K; ++j)
                p.selected_scores[off + j] = sel[j] >= 0 ? s[sel[j]] : nan;
          }
        }
      }
    }
  }
}

}  // namespace moba::kernels
