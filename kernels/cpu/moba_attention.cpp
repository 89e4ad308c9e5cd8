// CPU reference of MoBA block-sparse attention forward (kernels/moba_attention.h).
//
// Per query of the window (absolute position t; its selection and outputs at its window row):
// gather the scores of every attended key (fp32 Eigen GEMV per selected block),
// one max over all of them, exp in fp32, normaliser and output accumulated in double.
#define EIGEN_DONT_PARALLELIZE
#include "kernels/moba_attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/block_pool.h"
#include "kernels/constants.h"
#include "kernels/cpu/cpu_common.h"

namespace moba::kernels {
namespace {

using cpu::ConstRowsMap;
using cpu::RowMatrix;

}  // namespace

void moba_attention_cpu(const MobaAttentionParams& p) {
  const int64_t n_q = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim, B = p.block_size;
  const int64_t n_blocks = block_count(T, B);
  const int64_t group = n_q / p.k.n_heads;
  const int K = p.top_k;
  const float scale = softmax_scale_or_default(p);
  // The window: rows i in [0, R) are queries t = q0 + i (selected, out, lse hold R rows a head).
  const int64_t q0 = p.q_begin, R = moba_attention_rows(p);
  const int64_t tile = 64;
  const int64_t n_tiles = (R + tile - 1) / tile;
  const int64_t n_items = n_q * n_tiles;

#pragma omp parallel if (n_q * R * std::min<int64_t>(K * B, T) * d > cpu::kMinParallelWork)
  {
    std::vector<int32_t> blocks(static_cast<size_t>(K));
    std::vector<std::pair<int64_t, int64_t>> ranges(static_cast<size_t>(K));  // key ranges [j0, j1)
    Eigen::VectorXf s(K * std::min(B, std::max<int64_t>(T, 1)));  // scores of attended keys
    Eigen::VectorXd acc(d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t h = item / n_tiles, kv = h / group;
      const int64_t i_end = std::min(R, (item % n_tiles + 1) * tile);
      for (int64_t i = (item % n_tiles) * tile; i < i_end; ++i) {
        const int64_t t = q0 + i, row = h * R + i;  // absolute query position, output row
        // Valid, distinct, causal blocks of this query, ascending.
        const int32_t* sel = p.selected + row * K;  // [n_q_heads, q_count, top_k]
        int n_sel = 0;
        for (int j = 0; j < K; ++j)
          if (sel[j] >= 0 && sel[j] < n_blocks && static_cast<int64_t>(sel[j]) * B <= t)
            blocks[n_sel++] = sel[j];
        std::sort(blocks.begin(), blocks.begin() + n_sel);
        n_sel = static_cast<int>(std::unique(blocks.begin(), blocks.begin() + n_sel) - blocks.begin());

        float* out = p.out + row * d;  // [n_q_heads, q_count, head_dim]
        if (n_sel == 0) {
          std::fill(out, out + d, 0.0f);
          if (p.lse) p.lse[row] = -std::numeric_limits<float>::infinity();
          continue;
        }
        // Merge adjacent blocks into key ranges [j0, j1) (one GEMV each; dense rows are one).
        int n_ranges = 0;
        for (int i = 0; i < n_sel; ++i) {
          const int64_t j0 = static_cast<int64_t>(blocks[i]) * B;
          const int64_t j1 = std::min({j0 + B, T, t + 1});
          if (n_ranges > 0 && ranges[n_ranges - 1].second == j0)
            ranges[n_ranges - 1].second = j1;
          else
            ranges[n_ranges++] = {j0, j1};
        }
        const Eigen::Map<const Eigen::VectorXf> qv(p.q.row(h, t), d);
        int64_t n_keys = 0;
        for (int i = 0; i < n_ranges; ++i) {
          const int64_t j0 = ranges[i].first, n = ranges[i].second - j0;
          const ConstRowsMap kb(p.k.row(kv, j0), n, d, Eigen::OuterStride<>(p.k.stride_token));
          s.segment(n_keys, n).noalias() = kb * qv;
          n_keys += n;
        }
        auto sk = s.head(n_keys);
        sk *= scale;
        const float m = sk.maxCoeff();
        sk = (sk.array() - m).exp();  // probabilities up to the normaliser
        const double l = sk.cast<double>().sum();
        acc.setZero();
        n_keys = 0;
        for (int i = 0; i < n_ranges; ++i) {
          const int64_t j0 = ranges[i].first, n = ranges[i].second - j0;
          const ConstRowsMap vb(p.v.row(kv, j0), n, d, Eigen::OuterStride<>(p.v.stride_token));
          acc += (vb.transpose() * s.segment(n_keys, n)).cast<double>();
          n_keys += n;
        }
        for (int64_t c = 0; c < d; ++c) out[c] = static_cast<float>(acc[c] / l);
        if (p.lse) p.lse[row] = static_cast<float>(static_cast<double>(m) + std::log(l));
      }
    }
  }
}

}  // namespace moba::kernels
