// Per-query routing metrics and aggregation (analysis/metrics.h).
#include "analysis/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moba::analysis {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

int selection_count(const int32_t* sel, int top_k) {
  int n = 0;
  while (n < top_k && sel[n] >= 0) ++n;
  return n;
}

double coverage(const float* mass, const int32_t* sel, int top_k) {
  double r = 0.0;
  for (int i = 0; i < top_k && sel[i] >= 0; ++i) r += mass[sel[i]];
  return r;
}

double block_recall(const int32_t* sel, const int32_t* oracle_sel, int top_k, int64_t current_block) {
  int64_t n_oracle = 0, hit = 0;
  int i = 0;
  const int n_sel = selection_count(sel, top_k);
  for (int j = 0; j < top_k && oracle_sel[j] >= 0; ++j) {
    const int32_t b = oracle_sel[j];
    if (b == current_block) continue;
    ++n_oracle;
    while (i < n_sel && sel[i] < b) ++i;  // both rows ascending
    if (i < n_sel && sel[i] == b) ++hit;
  }
  return n_oracle == 0 ? kNaN : static_cast<double>(hit) / static_cast<double>(n_oracle);
}

double token_recall(const int32_t* top_index, int n, const int32_t* sel, int top_k, int64_t block_size) {
  const int n_sel = selection_count(sel, top_k);
  int valid = 0, hit = 0;
  for (int i = 0; i < n; ++i) {
    if (top_index[i] < 0) continue;
    ++valid;
    const auto b = static_cast<int32_t>(top_index[i] / block_size);
    hit += std::binary_search(sel, sel + n_sel, b) ? 1 : 0;
  }
  return valid == 0 ? kNaN : static_cast<double>(hit) / valid;
}

int64_t attended_keys(const int32_t* sel, int top_k, int64_t block_size, int64_t t, int64_t n_tokens) {
  int64_t n = 0;
  for (int i = 0; i < top_k && sel[i] >= 0; ++i) {
    const int64_t j0 = sel[i] * block_size, j1 = std::min({j0 + block_size, n_tokens, t + 1});
    n += std::max<int64_t>(0, j1 - j0);
  }
  return n;
}

void output_error(const float* o, const float* ref, int64_t head_dim, double* rel, double* cosine) {
  double diff = 0, nr = 0, no = 0, dot = 0;
  for (int64_t c = 0; c < head_dim; ++c) {
    const double a = o[c], b = ref[c];
    diff += (a - b) * (a - b);
    nr += b * b;
    no += a * a;
    dot += a * b;
  }
  *rel = nr > 0 ? std::sqrt(diff / nr) : std::sqrt(diff);
  *cosine = (nr > 0 && no > 0) ? dot / std::sqrt(nr * no) : (nr == 0 && no == 0 ? 1.0 : 0.0);
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

Stats summarize(const std::vector<float>& values, const std::vector<uint8_t>& mask, int64_t begin, int64_t end) {
  std::vector<double> v;
  v.reserve(static_cast<size_t>(std::max<int64_t>(0, end - begin)));
  double sum = 0;
  for (int64_t i = begin; i < end; ++i)
    if (mask[i] && std::isfinite(values[i])) {
      v.push_back(values[i]);
      sum += values[i];
    }
  Stats s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) {
    s.mean = s.p5 = s.p50 = s.p95 = kNaN;
    return s;
  }
  std::sort(v.begin(), v.end());
  s.mean = sum / static_cast<double>(v.size());
  s.p5 = quantile_sorted(v, 0.05);
  s.p50 = quantile_sorted(v, 0.5);
  s.p95 = quantile_sorted(v, 0.95);
  return s;
}

Stats summarize_mean(const std::vector<float>& values, const std::vector<uint8_t>& mask, int64_t begin, int64_t end) {
  Stats s;
  double sum = 0;
  for (int64_t i = begin; i < end; ++i)
    if (mask[i] && std::isfinite(values[i])) {
      sum += values[i];
      ++s.n;
    }
  s.mean = s.n > 0 ? sum / static_cast<double>(s.n) : kNaN;
  s.p5 = s.p50 = s.p95 = kNaN;
  return s;
}

std::vector<int64_t> bucket_edges(int64_t n_tokens, int n_buckets, int64_t bucket_width) {
  std::vector<int64_t> edges{0};
  if (bucket_width > 0) {
    for (int64_t e = bucket_width; e < n_tokens; e += bucket_width) edges.push_back(e);
  } else {
    for (int i = 1; i < n_buckets; ++i) edges.push_back(n_tokens * i / n_buckets);
  }
  edges.push_back(n_tokens);
  return edges;
}

}  // namespace moba::analysis
