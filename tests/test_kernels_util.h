#pragma once
// Shared helpers of the kernels tests: seeded inputs, poisoning, and an independent
// brute-force masked dense attention in double (the oracle the CPU ops are held to).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "core/tensor.h"

namespace moba::kernels_test {

// Relative tolerance of f32 attention (output and lse) against the double brute force.
constexpr double kAttnRelTol = 1e-5;

inline Tensor3 random_tensor(int64_t heads, int64_t tokens, int64_t dim, uint32_t seed,
                             float scale = 1.0f) {
  Tensor3 t(heads, tokens, dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& x : t.data) x = nd(rng);
  return t;
}

template <typename T>
inline void poison(std::vector<T>& v) {
  if constexpr (std::is_floating_point<T>::value)
    std::fill(v.begin(), v.end(), std::numeric_limits<T>::quiet_NaN());
  else
    std::fill(v.begin(), v.end(), static_cast<T>(-12345));
}

// Brute-force attention of query (h, t) over the keys j <= t with mask(j) true, in double.
// Returns lse (natural log, scale included; -inf when nothing is attended) and fills o.
template <typename Mask>
double brute_attention(const Tensor3& q, const Tensor3& k, const Tensor3& v, int64_t h,
                       int64_t t, double scale, Mask mask, std::vector<double>& o) {
  const int64_t d = q.head_dim, kv = h / (q.n_heads / k.n_heads);
  std::vector<double> s;
  std::vector<int64_t> idx;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j <= t; ++j) {
    if (!mask(j)) continue;
    double acc = 0.0;
    for (int64_t c = 0; c < d; ++c)
      acc += static_cast<double>(q.row(h, t)[c]) * static_cast<double>(k.row(kv, j)[c]);
    s.push_back(acc * scale);
    idx.push_back(j);
    mx = std::max(mx, s.back());
  }
  o.assign(static_cast<size_t>(d), 0.0);
  if (s.empty()) return -std::numeric_limits<double>::infinity();
  double l = 0.0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double w = std::exp(s[i] - mx);
    l += w;
    for (int64_t c = 0; c < d; ++c) o[c] += w * static_cast<double>(v.row(kv, idx[i])[c]);
  }
  for (double& x : o) x /= l;
  return mx + std::log(l);
}

// ||a - b||_2 / ||b||_2 (absolute when ||b|| is 0).
inline double rel_err(const float* a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (size_t c = 0; c < b.size(); ++c) {
    num += (a[c] - b[c]) * (a[c] - b[c]);
    den += b[c] * b[c];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace moba::kernels_test
