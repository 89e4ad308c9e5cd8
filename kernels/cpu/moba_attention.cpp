// CPU reference of MoBA block-sparse attention forward (kernels/moba_attention.h).
//
// Per query: gather the scores of every attended key (fp32 Eigen GEMV per selected block),
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

namespace moba::kernels {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

using ConstRowsMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

const char* check_view(const TensorView& v, const char* what_null, const char* what_contig) {
  if (v.data == nullptr && v.n_tokens > 0) return what_null;
  if (v.stride_dim != 1) return what_contig;
  return nullptr;
}

}  // namespace

const char* moba_attention_can_run(const MobaAttentionParams& p) {
  if (const char* e = check_view(p.q, "moba_attention: q.data is null", "moba_attention: q rows must be contiguous")) return e;
  if (const char* e = check_view(p.k, "moba_attention: k.data is null", "moba_attention: k rows must be contiguous")) return e;
  if (const char* e = check_view(p.v, "moba_attention: v.data is null", "moba_attention: v rows must be contiguous")) return e;
  if (p.q.n_heads < 1 || p.k.n_heads < 1 || p.q.head_dim < 1 || p.q.n_tokens < 0)
    return "moba_attention: bad q/k shape";
  if (p.q.n_heads % p.k.n_heads != 0) return "moba_attention: n_q_heads must be a multiple of n_kv_heads";
  if (p.v.n_heads != p.k.n_heads) return "moba_attention: k and v disagree on n_kv_heads";
  if (p.k.n_tokens != p.q.n_tokens || p.v.n_tokens != p.q.n_tokens)
    return "moba_attention: q, k, v disagree on n_tokens";
  if (p.k.head_dim != p.q.head_dim || p.v.head_dim != p.q.head_dim)
    return "moba_attention: q, k, v disagree on head_dim";
  if (p.block_size < 1) return "moba_attention: block_size must be >= 1";
  if (p.top_k < 1) return "moba_attention: top_k must be >= 1";
  if (p.selected == nullptr && p.q.n_tokens > 0) return "moba_attention: selected is null";
  if (p.out == nullptr) return "moba_attention: out is null";
  if (!(p.softmax_scale >= 0.0f) || std::isinf(p.softmax_scale)) return "moba_attention: bad softmax_scale";
  return nullptr;
}

void moba_attention_cpu(const MobaAttentionParams& p) {
  const int64_t n_q = p.q.n_heads, T = p.q.n_tokens, d = p.q.head_dim, B = p.block_size;
  const int64_t n_blocks = block_count(T, B);
  const int64_t group = n_q / p.k.n_heads;
  const int K = p.top_k;
  const float scale = p.softmax_scale > 0.0f ? p.softmax_scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t tile = 64;
  const int64_t n_tiles = (T + tile - 1) / tile;
  const int64_t n_items = n_q * n_tiles;

#pragma omp parallel if (n_q * T * std::min<int64_t>(K * B, T) * d > kMinParallelWork)
  {
    std::vector<int32_t> blocks(static_cast<size_t>(K));
    std::vector<std::pair<int64_t, int64_t>> ranges(static_cast<size_t>(K));  // key ranges [j0, j1)
    Eigen::VectorXf s(K * std::min(B, std::max<int64_t>(T, 1)));  // scores of attended keys
    Eigen::VectorXd acc(d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t h = item / n_tiles, kv = h / group;
      const int64_t t_end = std::min(T, (item % n_tiles + 1) * tile);
      for (int64_t t = (item % n_tiles) * tile; t < t_end; ++t) {
        // Valid, distinct, causal blocks of this query, ascending.
        const int32_t* sel = p.selected + (h * T + t) * K;  // [n_q_heads, n_tokens, top_k]
        int n_sel = 0;
        for (int j = 0; j < K; ++j)
          if (sel[j] >= 0 && sel[j] < n_blocks && static_cast<int64_t>(sel[j]) * B <= t)
            blocks[n_sel++] = sel[j];
        std::sort(blocks.begin(), blocks.begin() + n_sel);
        n_sel = static_cast<int>(std::unique(blocks.begin(), blocks.begin() + n_sel) - blocks.begin());

        float* out = p.out + (h * T + t) * d;  // [n_q_heads, n_tokens, head_dim]
        if (n_sel == 0) {
          std::fill(out, out + d, 0.0f);
          if (p.lse) p.lse[h * T + t] = -std::numeric_limits<float>::infinity();
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
        if (p.lse) p.lse[h * T + t] = static_cast<float>(static_cast<double>(m) + std::log(l));
      }
    }
  }
}

}  // namespace moba::kernels
