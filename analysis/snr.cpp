// Routing SNR accumulation and the FlashMoBA model's predictions (analysis/snr.h).
#include "analysis/snr.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace moba::analysis {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

void SnrStats::merge(const SnrStats& o) {
  n_queries += o.n_queries;
  n_pairs += o.n_pairs;
  n_negative += o.n_negative;
  sum_d += o.sum_d;
  sum_d2 += o.sum_d2;
  sum_delta_mu += o.sum_delta_mu;
  sum_excess += o.sum_excess;
  sum_var_noise += o.sum_var_noise;
  for (size_t i = 0; i < rank_hist.size(); ++i) rank_hist[i] += o.rank_hist[i];
}

int snr_add_query(SnrStats& s, const float* scores, int64_t c, int64_t signal_block, kernels::TieRule tie,
                  const SnrQuerySums& q, int64_t block_size) {
  const float ss = scores[signal_block];
  int rank = 1;
  double sum = 0, sum2 = 0;
  int64_t neg = 0;
  for (int64_t b = 0; b < c; ++b) {
    if (b == signal_block) continue;
    const double d = static_cast<double>(ss) - static_cast<double>(scores[b]);
    sum += d;
    sum2 += d * d;
    neg += d < 0 ? 1 : 0;
    rank += kernels::ranks_before(scores[b], b, ss, signal_block, tie) ? 1 : 0;
  }
  s.n_pairs += c - 1;
  s.n_negative += neg;
  s.sum_d += sum;
  s.sum_d2 += sum2;
  const double B = static_cast<double>(block_size);
  const double n_noise = static_cast<double>(c - 1) * B;
  const double mu_n = (q.sum_routable - q.sum_signal) / n_noise;
  const double var_n = std::max(0.0, (q.sumsq_routable - q.sumsq_signal) / n_noise - mu_n * mu_n);
  s.sum_delta_mu += q.s_top - mu_n;
  s.sum_excess += (q.sum_signal - q.s_top) - (B - 1) * mu_n;
  s.sum_var_noise += var_n;
  ++s.n_queries;
  ++s.rank_hist[static_cast<size_t>(std::min(rank, kSnrMaxRank + 1) - 1)];
  return rank;
}

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

SnrSummary summarize_snr(const SnrStats& s, int64_t block_size, int64_t head_dim) {
  SnrSummary r;
  r.n_queries = s.n_queries;
  r.n_pairs = s.n_pairs;
  const double B = static_cast<double>(block_size);
  // The mean gap, the failure rate and B * mean(D) need one pair; the sample standard deviation
  // (and so snr_emp and its p_fail_theory) two.
  r.mean_d = r.std_d = r.snr_emp = r.p_fail_emp = r.p_fail_theory = r.delta_mu_eff_d = kNaN;
  if (s.n_pairs > 0) {
    r.mean_d = s.sum_d / s.n_pairs;
    r.p_fail_emp = static_cast<double>(s.n_negative) / s.n_pairs;
    r.delta_mu_eff_d = B * r.mean_d;
  }
  if (s.n_pairs > 1) {
    r.std_d = std::sqrt(std::max(0.0, (s.sum_d2 - s.sum_d * r.mean_d) / static_cast<double>(s.n_pairs - 1)));
    r.snr_emp = r.std_d > 0 ? r.mean_d / r.std_d : kNaN;
    r.p_fail_theory = normal_cdf(-r.snr_emp);
  }
  if (s.n_queries > 0) {
    const double nq = static_cast<double>(s.n_queries);
    r.delta_mu = s.sum_delta_mu / nq;
    r.cluster_excess = s.sum_excess / nq;
    r.mu_cluster_rel = block_size > 1 ? r.cluster_excess / (B - 1) : kNaN;
    r.delta_mu_eff = r.delta_mu + r.cluster_excess;
    r.sigma = std::sqrt(s.sum_var_noise / nq);
    r.sigma2_d = r.sigma * r.sigma * static_cast<double>(head_dim);
    r.snr_theory = r.sigma > 0 ? r.delta_mu_eff / (r.sigma * std::sqrt(2.0 * B)) : kNaN;
    r.rank1_share = static_cast<double>(s.rank_hist[0]) / nq;
  } else {
    r.delta_mu = r.cluster_excess = r.mu_cluster_rel = r.delta_mu_eff = r.sigma = r.sigma2_d = r.snr_theory =
        r.rank1_share = kNaN;
  }
  return r;
}

double retrieval_probability(double snr, int64_t n_routable, int top_k) {
  if (n_routable <= top_k - 1) return 1.0;
  if (top_k <= 1 || !std::isfinite(snr)) return top_k <= 1 ? 0.0 : kNaN;
  const int64_t n_noise = n_routable - 1;
  const int max_beaters = top_k - 2;
  // Trapezoid over z in [-8, 8] against the standard normal density.
  constexpr int kSteps = 320;
  const double lo = -8.0, h = 16.0 / kSteps, shift = std::sqrt(2.0) * snr;
  double total = 0;
  for (int i = 0; i <= kSteps; ++i) {
    const double z = lo + h * i;
    const double w = (i == 0 || i == kSteps ? 0.5 : 1.0) * h * std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI);
    const double p = normal_cdf(-(z + shift));  // one noise block beats the signal
    double cdf;
    if (p <= 0) {
      cdf = 1.0;
    } else if (p >= 1) {
      cdf = max_beaters >= n_noise ? 1.0 : 0.0;
    } else {
      // P(Binomial(n_noise, p) <= max_beaters), terms in log space.
      const double lp = std::log(p), lq = std::log1p(-p);
      cdf = 0;
      for (int64_t x = 0; x <= std::min<int64_t>(max_beaters, n_noise); ++x) {
        const double lc = std::lgamma(n_noise + 1.0) - std::lgamma(x + 1.0) - std::lgamma(n_noise - x + 1.0);
        cdf += std::exp(lc + x * lp + (n_noise - x) * lq);
      }
      cdf = std::min(1.0, cdf);
    }
    total += w * cdf;
  }
  return std::min(1.0, total);
}

namespace {
// std::exp(x), without the C library's underflow path where the result is +0 anyway (x below
// ln 2^-1075 = -745.13...: no double is nearer): that path (errno) was a fifth of
// retrieval_probabilities' time where the binomial terms vanish.
inline double exp_or_zero(double x) { return x < -745.2 ? 0.0 : std::exp(x); }
}  // namespace

std::vector<double> retrieval_probabilities(double snr, int64_t max_routable, int top_k) {
  const auto n_c = static_cast<size_t>(std::max<int64_t>(max_routable, -1) + 1);
  std::vector<double> out(n_c);
  for (size_t c = 0; c < n_c; ++c)  // the cases retrieval_probability answers without integrating
    out[c] = static_cast<int64_t>(c) <= top_k - 1 ? 1.0 : top_k <= 1 ? 0.0 : kNaN;
  if (top_k <= 1 || !std::isfinite(snr) || max_routable <= top_k - 1) return out;
  // For each z, F(n) = P(Binomial(n, p) <= m) for every n_noise = n in [m + 1, N] from the top
  // down: F(N) summed term by term as retrieval_probability does, then
  //   F(n) = F(n + 1) + p pmf(n, m),  pmf(n, m) = pmf(n + 1, m) (n + 1 - m) / ((n + 1) q)
  // (X_{n+1} = X_n + Bernoulli(p) exceeds m only from X_n = m), adding positive terms only. A
  // term below half an ulp of F leaves F unchanged and is skipped (no exp), which is exact.
  const int64_t m = top_k - 2, N = max_routable - 1;
  std::vector<double> log_ratio(static_cast<size_t>(N + 1), 0.0);  // ln((n + 1) / (n + 1 - m)), n >= m
  for (int64_t n = m; n < N; ++n) log_ratio[static_cast<size_t>(n)] = std::log((n + 1.0) / (n + 1.0 - m));
  constexpr int kSteps = 320;
  const double lo = -8.0, h = 16.0 / kSteps, shift = std::sqrt(2.0) * snr;
  const double lc_m = std::lgamma(N + 1.0) - std::lgamma(m + 1.0) - std::lgamma(N - m + 1.0);
  // ln C(N, x) for x in [0, m], the same for every z (hoisted: the same values, m + 1 lgamma
  // triples instead of one per (z, x)).
  std::vector<double> lc(static_cast<size_t>(m + 1));
  for (int64_t x = 0; x <= m; ++x)
    lc[static_cast<size_t>(x)] = std::lgamma(N + 1.0) - std::lgamma(x + 1.0) - std::lgamma(N - x + 1.0);
  // w(z) F_z(n) per integration point (rows independent: OpenMP), then summed over z in order.
  const auto width = static_cast<size_t>(N + 1);
  // Entries n in [m + 1, N] of every row are written below (the others are never read): not
  // zeroed first (5 MB for B = 16 at 32K tokens).
  const std::unique_ptr<double[]> wf(new double[static_cast<size_t>(kSteps + 1) * width]);
#pragma omp parallel for schedule(dynamic, 8) if ((kSteps + 1) * (N - m) > (1 << 16))
  for (int i = 0; i <= kSteps; ++i) {
    double* row = wf.get() + static_cast<size_t>(i) * width;
    const double z = lo + h * i;
    const double w = (i == 0 || i == kSteps ? 0.5 : 1.0) * h * std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI);
    const double p = normal_cdf(-(z + shift));
    if (p <= 0) {
      for (int64_t n = m + 1; n <= N; ++n) row[n] = w;
      continue;
    }
    if (p >= 1) {  // F = 0 for every n > m
      std::fill(row + m + 1, row + N + 1, 0.0);
      continue;
    }
    const double lp = std::log(p), lq = std::log1p(-p);
    double F = 0;
    for (int64_t x = 0; x <= m; ++x) F += exp_or_zero(lc[static_cast<size_t>(x)] + x * lp + (N - x) * lq);
    F = std::min(1.0, F);
    row[N] = w * F;
    double lpmf = lc_m + m * lp + (N - m) * lq;  // ln pmf(N, m)
    // log_f = ln F as last taken. F only grows, so a stale log_f lets through terms the current
    // one would skip, each below F 2^-57 and so leaving F as it is: the same sums. Retaken when
    // F has doubled, not after every term.
    double log_f = F > 0 ? std::log(F) : -INFINITY, f_logged = F;
    for (int64_t n = N - 1; n > m; --n) {
      lpmf -= lq + log_ratio[static_cast<size_t>(n)];  // ln pmf(n, m)
      if (lp + lpmf > log_f - 40.0) {                  // else p pmf < F 2^-57: F + it == F
        F = std::min(1.0, F + exp_or_zero(lp + lpmf));
        if (F > 2 * f_logged) log_f = std::log(F), f_logged = F;
      }
      row[n] = w * F;
    }
  }
  std::vector<double> total(width, 0.0);
  for (int i = 0; i <= kSteps; ++i)
    for (int64_t n = m + 1; n <= N; ++n) total[static_cast<size_t>(n)] += wf[static_cast<size_t>(i) * width + n];
  for (int64_t n = m + 1; n <= N; ++n) out[static_cast<size_t>(n + 1)] = std::min(1.0, total[static_cast<size_t>(n)]);
  return out;
}

namespace {
// retrieval_probabilities is a pure function of (snr, max_routable, top_k), and the summaries
// ask for the same arguments often (a synthetic dump's planted-recall prediction uses the same
// model SNR for every head of a block size): answered once per distinct argument, process-wide.
std::shared_ptr<const std::vector<double>> cached_retrieval_probabilities(double snr, int64_t max_routable,
                                                                          int top_k) {
  using Key = std::tuple<uint64_t, int64_t, int>;
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<const std::vector<double>>> memo;
  uint64_t bits;
  std::memcpy(&bits, &snr, sizeof bits);
  const Key key{bits, max_routable, top_k};
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
  }
  auto v = std::make_shared<const std::vector<double>>(retrieval_probabilities(snr, max_routable, top_k));
  std::lock_guard<std::mutex> lock(mu);
  if (memo.size() >= 4096) memo.clear();  // bounded: a long sweep's distinct empirical SNRs
  memo.emplace(key, v);
  return v;
}
}  // namespace

double mean_retrieval_probability(double snr, const std::vector<int64_t>& counts, int top_k) {
  const std::shared_ptr<const std::vector<double>> probs =
      cached_retrieval_probabilities(snr, static_cast<int64_t>(counts.size()) - 1, top_k);
  const std::vector<double>& prob = *probs;
  double sum = 0;
  int64_t n = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) continue;
    sum += counts[c] * prob[c];
    n += counts[c];
  }
  return n > 0 ? sum / n : kNaN;
}

}  // namespace moba::analysis
