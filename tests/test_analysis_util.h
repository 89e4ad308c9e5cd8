#pragma once
// Shared helpers of the analysis tests: seeded tensors, a one-group analysis call, an
// independent double-precision full attention, and the brute-force routers' common parts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "analysis/analyze.h"
#include "analysis/router.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace moba::analysis_test {

inline Tensor3 random_tensor(int64_t heads, int64_t tokens, int64_t dim, uint32_t seed, float scale = 1.0f) {
  Tensor3 t(heads, tokens, dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& x : t.data) x = nd(rng);
  return t;
}

// N(0, scale^2) values rounded to `dt` (stored as dt): the dump a 16-bit model would write.
inline Tensor3 random_rounded(int64_t h, int64_t t, int64_t d, DType dt, std::mt19937& rng, float scale) {
  Tensor3 x(h, t, d, dt);
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& v : x.data) v = round_to(dt, nd(rng));
  return x;
}

// Integer-valued tensor in [-lo, lo]: products and channel sums are exact in fp32, so a
// double brute force sees the same scores (and the same ties) as the router.
inline Tensor3 int_tensor(int64_t heads, int64_t tokens, int64_t dim, uint32_t seed, int lo = 3) {
  Tensor3 t(heads, tokens, dim);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-lo, lo);
  for (float& x : t.data) x = static_cast<float>(u(rng));
  return t;
}

// Routable blocks [0, sc.size()) ranked by double score, ties to the larger (recent) or
// smaller (older) index.
inline std::vector<int32_t> ref_order(const std::vector<double>& sc, kernels::TieRule tie) {
  std::vector<int32_t> idx(sc.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    if (sc[a] != sc[b]) return sc[a] > sc[b];
    return tie == kernels::TieRule::recent ? a > b : a < b;
  });
  return idx;
}

// The row layout: `picks` and the current block c, ascending, -1 padded to k.
inline std::vector<int32_t> ref_row(std::vector<int32_t> picks, int64_t c, int k) {
  picks.push_back(static_cast<int32_t>(c));
  std::sort(picks.begin(), picks.end());
  picks.resize(static_cast<size_t>(k), -1);
  return picks;
}

// route_group's rows [heads, T, K] of one KV head on the CPU (v: random, unused by routing).
inline std::vector<int32_t> route_rows(analysis::RouterKind router, const Tensor3& q, const Tensor3& k, int64_t B,
                                       int K, const analysis::RoutingOptions& opt) {
  const Tensor3 v = random_tensor(1, k.n_tokens, k.head_dim, 5);
  std::vector<int32_t> sel(static_cast<size_t>(q.n_heads * q.n_tokens * K));
  analysis::route_group(q.view(), k.view(), v.view(), DType::f32, router, opt, B, K, analysis::Device::cpu,
                        sel.data(), nullptr, nullptr);
  return sel;
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
