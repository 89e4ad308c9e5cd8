// CPU reference of the dense streaming pass (kernels/dense_pass.h).
//
// Work item = (query head, query tile). Pass 1 sweeps key tiles with an online max / sum
// (double) to get lse; pass 2 sweeps the same key tiles again, turns scores into exact
// probabilities exp(s - lse) and feeds the output (P V), the block masses and the top-n
// lists. Scores are fp32 Eigen GEMMs of a [query_tile, head_dim] x [head_dim, key_tile]
// block; nothing larger than query_tile x key_tile is materialised.
#define EIGEN_DONT_PARALLELIZE
#include "kernels/dense_pass.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/block_pool.h"
#include "kernels/constants.h"
#include "kernels/cpu/cpu_common.h"

namespace moba::kernels {
namespace {

using cpu::ConstRowsMap;
using cpu::RowMatrix;
using cpu::RowMatrixD;

// (score a, key ja) ranks strictly before (score b, key jb): higher score, then larger key.
inline bool top_n_ranks_before(float a, int64_t ja, float b, int64_t jb) {
  return a > b || (a == b && ja > jb);
}

}  // namespace

void dense_pass_cpu(const DensePassParams& p) {
  const int64_t n_q = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim;
  const int64_t group = n_q / p.k.n_heads;
  const int64_t Q0 = p.query_begin, NQ = p.query_count;
  const int64_t qt = p.query_tile > 0 ? p.query_tile : 64;
  const int64_t kt = p.key_tile > 0 ? p.key_tile : 256;
  const float scale = softmax_scale_or_default(p);
  const int64_t n_tiles = (NQ + qt - 1) / qt;
  const int64_t n_items = n_q * n_tiles;
  const int top_n = p.top_n;
  const bool pass2 = p.out || p.n_block_sizes > 0 || top_n > 0;
  int64_t n_blocks[kDensePassMaxBlockSizes] = {};
  for (int i = 0; i < p.n_block_sizes; ++i) n_blocks[i] = block_count(T, p.block_sizes[i]);

#pragma omp parallel if (n_q * NQ * (Q0 + NQ) * d > cpu::kMinParallelWork)
  {
    RowMatrix S(qt, kt);                       // [query_tile, key_tile] scores, then P
    RowMatrixD O(qt, d);                       // [query_tile, head_dim] output accumulator
    std::vector<double> m(qt), l(qt), lse(qt);
    std::vector<float> top_s(static_cast<size_t>(qt * std::max(top_n, 1)));    // [query_tile, top_n]
    std::vector<int64_t> top_j(static_cast<size_t>(qt * std::max(top_n, 1)));  // key positions
    std::vector<int> top_cnt(qt);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t h = item / n_tiles, kv = h / group;
      const int64_t t0 = Q0 + (item % n_tiles) * qt;          // absolute first query
      const int64_t nq = std::min(qt, Q0 + NQ - t0);
      const int64_t t_last = t0 + nq - 1;
      const ConstRowsMap Q(p.q.row(h, t0), nq, d, Eigen::OuterStride<>(p.q.stride_token));
      auto scores = [&](int64_t j0, int64_t nk) {
        const ConstRowsMap Kt(p.k.row(kv, j0), nk, d, Eigen::OuterStride<>(p.k.stride_token));
        S.topLeftCorner(nq, nk).noalias() = Q * Kt.transpose();
        S.topLeftCorner(nq, nk) *= scale;
      };

      // Pass 1: online softmax statistics over keys [0, t_last].
      std::fill(m.begin(), m.end(), -std::numeric_limits<double>::infinity());
      std::fill(l.begin(), l.end(), 0.0);
      for (int64_t j0 = 0; j0 <= t_last; j0 += kt) {
        const int64_t nk = std::min(kt, t_last + 1 - j0);
        scores(j0, nk);
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t nv = std::min(nk, t0 + i + 1 - j0);  // causal: keys j <= t
          if (nv <= 0) continue;
          auto row = S.row(i).head(nv);
          const double m_new = std::max(m[i], static_cast<double>(row.maxCoeff()));
          const float mf = static_cast<float>(m_new);
          const double tile_sum = (row.array() - mf).exp().template cast<double>().sum();
          l[i] = l[i] * std::exp(m[i] - m_new) + tile_sum;
          m[i] = m_new;
        }
      }
      for (int64_t i = 0; i < nq; ++i) {
        lse[i] = m[i] + std::log(l[i]);
        p.lse[h * NQ + (t0 - Q0) + i] = static_cast<float>(lse[i]);  // [n_q_heads, query_count]
      }
      if (!pass2) continue;

      // Pass 2: exact probabilities, output, block masses, top-n.
      O.topRows(nq).setZero();
      std::fill(top_cnt.begin(), top_cnt.end(), 0);
      for (int b = 0; b < p.n_block_sizes; ++b)
        for (int64_t i = 0; i < nq; ++i) {
          float* row = p.block_mass[b] + (h * NQ + (t0 - Q0) + i) * n_blocks[b];
          std::fill(row, row + n_blocks[b], 0.0f);
        }
      for (int64_t j0 = 0; j0 <= t_last; j0 += kt) {
        const int64_t nk = std::min(kt, t_last + 1 - j0);
        scores(j0, nk);
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t t = t0 + i;
          const int64_t nv = std::max<int64_t>(0, std::min(nk, t + 1 - j0));
          float* srow = &S(i, 0);
          // Top-n by score (before the row becomes probabilities).
          if (top_n > 0) {
            float* ls = top_s.data() + i * top_n;
            int64_t* lj = top_j.data() + i * top_n;
            int& cnt = top_cnt[i];
            for (int64_t jj = 0; jj < nv; ++jj) {
              const float sv = srow[jj];
              const int64_t j = j0 + jj;
              if (cnt == top_n && !top_n_ranks_before(sv, j, ls[cnt - 1], lj[cnt - 1])) continue;
              int pos = cnt < top_n ? cnt++ : cnt - 1;
              while (pos > 0 && top_n_ranks_before(sv, j, ls[pos - 1], lj[pos - 1])) {
                ls[pos] = ls[pos - 1];
                lj[pos] = lj[pos - 1];
                --pos;
              }
              ls[pos] = sv;
              lj[pos] = j;
            }
          }
          const float lf = static_cast<float>(lse[i]);
          S.row(i).head(nv) = (S.row(i).head(nv).array() - lf).exp().matrix();
          S.row(i).segment(nv, nk - nv).setZero();
          for (int b = 0; b < p.n_block_sizes; ++b) {
            const int64_t B = p.block_sizes[b];
            float* mass = p.block_mass[b] + (h * NQ + (t - Q0)) * n_blocks[b];
            int64_t jj = 0;
            while (jj < nv) {  // one run per block overlapping the valid keys
              const int64_t blk = (j0 + jj) / B;
              const int64_t run_end = std::min(nv, (blk + 1) * B - j0);
              double run = 0.0;
              for (; jj < run_end; ++jj) run += srow[jj];
              mass[blk] += static_cast<float>(run);
            }
          }
        }
        if (p.out) {
          const ConstRowsMap Vt(p.v.row(kv, j0), nk, d, Eigen::OuterStride<>(p.v.stride_token));
          O.topRows(nq) += (S.topLeftCorner(nq, nk) * Vt).template cast<double>();
        }
      }
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t r = h * NQ + (t0 - Q0) + i;
        if (p.out)
          for (int64_t c = 0; c < d; ++c) p.out[r * d + c] = static_cast<float>(O(i, c));
        if (top_n > 0) {
          const int cnt = top_cnt[i];
          for (int n = 0; n < top_n; ++n) {
            const bool ok = n < cnt;
            p.top_index[r * top_n + n] = ok ? static_cast<int32_t>(top_j[i * top_n + n]) : -1;
            if (p.top_prob)
              p.top_prob[r * top_n + n] =
                  ok ? static_cast<float>(std::exp(static_cast<double>(top_s[i * top_n + n]) - lse[i])) : 0.0f;
          }
        }
      }
    }
  }
}

}  // namespace moba::kernels
