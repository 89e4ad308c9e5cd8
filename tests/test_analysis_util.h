#pragma once
// Shared helpers of the analysis tests: seeded tensors, a one-group analysis call, and an
// independent double-precision full attention.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "analysis/analyze.h"
#include "core/tensor.h"

namespace moba::analysis_test {

inline Tensor3 random_tensor(int64_t heads, int64_t tokens, int64_t dim, uint32_t seed, float scale = 1.0f) {
  Tensor3 t(heads, tokens, dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& x : t.data) x = nd(rng);
  return t;
}

// Analyses every head of a one-KV-head (or GQA group) input with per-position arrays kept.
inline analysis::GroupResult analyze_all(const Tensor3& q, const Tensor3& k, const Tensor3& v,
                                         analysis::AnalyzeOptions opt) {
  opt.keep_arrays = true;
  analysis::GroupInput in;
  in.q = q.view();
  in.k = k.view();
  in.v = v.view();
  for (int64_t h = 0; h < q.n_heads; ++h) in.heads.push_back(h);
  return analysis::analyze_group(in, opt, nullptr, nullptr);
}

inline const analysis::PositionArrays& find_arrays(const analysis::GroupResult& r, int64_t head,
                                                   analysis::RouterKind router, int64_t B, int k) {
  for (const auto& a : r.arrays)
    if (a.key.head == head && a.key.router == router && a.key.block_size == B && a.key.top_k == k) return a;
  throw std::runtime_error(std::string("no arrays for ") + analysis::router_name(router));
}

// Full causal attention probabilities P_t(j), j <= t, of query head h (KV head 0), in double.
inline std::vector<double> full_probs(const Tensor3& q, const Tensor3& k, int64_t h, int64_t t) {
  const int64_t d = q.head_dim;
  std::vector<double> s(static_cast<size_t>(t + 1));
  double mx = -INFINITY;
  for (int64_t j = 0; j <= t; ++j) {
    double acc = 0;
    for (int64_t c = 0; c < d; ++c) acc += double(q.row(h, t)[c]) * double(k.row(0, j)[c]);
    s[j] = acc / std::sqrt(double(d));
    mx = std::max(mx, s[j]);
  }
  double l = 0;
  for (double& x : s) l += (x = std::exp(x - mx));
  for (double& x : s) x /= l;
  return s;
}

}  // namespace moba::analysis_test
