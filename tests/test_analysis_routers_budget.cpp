// nsa-shared, moba-threshold and oracle-topp (docs/routing.md) against brute-force
// double-precision versions written here: fresh random inputs and exact integer inputs, a
// ragged last block, k = 1, k >= n_blocks (uncapped), both tie rules, per-head and shared GQA;
// analyze's selections equal route_group's, its realised budget column is the mean |S_t|, and
// the GPU-resident analysis declines the three.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "analysis/analyze.h"
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/metrics.h"
#include "analysis/router.h"
#include "kernels/backend.h"
#include "test_analysis_util.h"

using namespace moba;
using namespace moba::analysis;

namespace {

using analysis_test::int_tensor;
using analysis_test::ref_order;
using analysis_test::ref_row;

// Block means of k [1, T, d] in double (the ragged last block over its real length).
std::vector<std::vector<double>> ref_means(const Tensor3& k, int64_t B) {
  const int64_t T = k.n_tokens, d = k.head_dim, nb = (T + B - 1) / B;
  std::vector<std::vector<double>> m(static_cast<size_t>(nb), std::vector<double>(static_cast<size_t>(d), 0.0));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * B, hi = std::min(T, lo + B);
    for (int64_t j = lo; j < hi; ++j)
      for (int64_t c = 0; c < d; ++c) m[b][c] += k.view().row(0, j)[c] / static_cast<double>(hi - lo);
  }
  return m;
}

// Double gate scores q_t . kbar_b of head h (of every head summed when `shared`), b < c.
std::vector<double> ref_gate(const Tensor3& q, const std::vector<std::vector<double>>& kbar, int64_t B, int64_t h,
                             bool shared, int64_t t) {
  const int64_t c = t / B, d = q.head_dim;
  std::vector<double> s(static_cast<size_t>(c), 0.0);
  for (int64_t hh = shared ? 0 : h; hh < (shared ? q.n_heads : h + 1); ++hh)
    for (int64_t b = 0; b < c; ++b)
      for (int64_t ch = 0; ch < d; ++ch) s[b] += q.view().row(hh, t)[ch] * kbar[b][ch];
  return s;
}

std::vector<double> ref_softmax(const std::vector<double>& s, double scale) {
  std::vector<double> p(s.size());
  if (s.empty()) return p;
  const double mx = *std::max_element(s.begin(), s.end());
  double sum = 0;
  for (size_t b = 0; b < s.size(); ++b) sum += (p[b] = std::exp(scale * (s[b] - mx)));
  for (double& x : p) x /= sum;
  return p;
}

// Brute force of the variable budget: the smallest m in [0, min(k-1, c)] such that
// current + the m best-ranked routable blocks' mass reaches tau (m = min(k-1, c) if none).
std::vector<int32_t> ref_mass_select(const std::vector<double>& rank, const std::vector<double>& mass,
                                     double current, int64_t c, int k, double tau, kernels::TieRule tie) {
  const std::vector<int32_t> order = ref_order(rank, tie);
  const int64_t cap = std::min<int64_t>(k - 1, c);
  int64_t m = 0;
  for (; m < cap; ++m) {
    double s = current;
    for (int64_t j = 0; j < m; ++j) s += mass[order[j]];
    if (s >= tau) break;
  }
  return ref_row(std::vector<int32_t>(order.begin(), order.begin() + m), c, k);
}

std::vector<int32_t> route(RouterKind router, const Tensor3& q, const Tensor3& k, int64_t B, int K,
                           kernels::TieRule tie, kernels::GqaMode gqa, double tau) {
  RoutingOptions opt;
  opt.tie = tie;
  opt.gqa = gqa;
  opt.pool_fp32 = true;
  opt.tau = tau;
  return analysis_test::route_rows(router, q, k, B, K, opt);
}

// Keys constant within each block (so the fp32 block means are exact) from integers.
Tensor3 blockwise_int_keys(int64_t T, int64_t d, int64_t B, uint32_t seed) {
  Tensor3 k = int_tensor(1, T, d, seed);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t ch = 0; ch < d; ++ch) k.data[t * d + ch] = k.data[((t / B) * B) * d + ch];
  return k;
}

}  // namespace

TEST_CASE("moba-threshold: exact against a double brute force on integer inputs", "[analysis][router][budget]") {
  const int64_t T = 45, d = 8, G = 2;  // B = 8: 6 blocks, the last of 5 tokens
  const Tensor3 q = int_tensor(G, T, d, 61, 1);
  for (const int64_t B : {8, 5, 1}) {
    const Tensor3 k = blockwise_int_keys(T, d, B, 62);
    const auto kbar = ref_means(k, B);
    const int64_t nb = (T + B - 1) / B;
    for (const double tau : {0.3, 0.9, 1.0})
      for (const int K : {1, 2, 4, static_cast<int>(nb), static_cast<int>(nb) + 3})
        for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older})
          for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared}) {
            const bool shared = gqa == kernels::GqaMode::shared;
            const std::vector<int32_t> sel = route(RouterKind::moba_threshold, q, k, B, K, tie, gqa, tau);
            int64_t mismatches = 0;
            for (int64_t h = 0; h < G; ++h)
              for (int64_t t = 0; t < T; ++t) {
                const int64_t c = t / B;
                const std::vector<double> s = ref_gate(q, kbar, B, h, shared, t);
                const std::vector<int32_t> want =
                    ref_mass_select(s, ref_softmax(s, 1.0 / std::sqrt(double(d))), 0.0, c, K, tau, tie);
                mismatches += std::equal(want.begin(), want.end(), sel.begin() + (h * T + t) * K) ? 0 : 1;
              }
            INFO("B=" << B << " k=" << K << " tau " << tau << " tie " << tie_name(tie) << " gqa " << gqa_name(gqa));
            CHECK(mismatches == 0);
          }
  }
}

TEST_CASE("moba-threshold: equal scores select ceil(tau c) blocks by the tie rule, and tau = 1 with cap k is moba",
          "[analysis][router][budget]") {
  const int64_t T = 50, d = 4, B = 8;  // last query: c = 6
  Tensor3 q(1, T, d), k(1, T, d);
  std::fill(q.data.begin(), q.data.end(), 1.0f);
  std::fill(k.data.begin(), k.data.end(), 0.5f);
  for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older}) {
    const std::vector<int32_t> sel = route(RouterKind::moba_threshold, q, k, B, 7, tie, kernels::GqaMode::per_head, 0.5);
    const int32_t* last = sel.data() + (T - 1) * 7;  // p = 1/6 each: 3 blocks reach 0.5
    const std::vector<int32_t> want = tie == kernels::TieRule::recent ? std::vector<int32_t>{3, 4, 5, 6, -1, -1, -1}
                                                                      : std::vector<int32_t>{0, 1, 2, 6, -1, -1, -1};
    CHECK(std::vector<int32_t>(last, last + 7) == want);
  }
  // tau = 1 can only stop at the cap (or at every routable block): moba's top-k.
  const Tensor3 qr = analysis_test::random_tensor(2, 120, 16, 71);
  const Tensor3 kr = analysis_test::random_tensor(1, 120, 16, 72);
  for (const int K : {1, 3, 5})
    CHECK(route(RouterKind::moba_threshold, qr, kr, 10, K, kernels::TieRule::recent, kernels::GqaMode::per_head, 1.0) ==
          route(RouterKind::moba, qr, kr, 10, K, kernels::TieRule::recent, kernels::GqaMode::per_head, 1.0));
}

TEST_CASE("moba-threshold on random inputs: reaches tau with the fewest blocks, up to rounding",
          "[analysis][router][budget]") {
  const int64_t T = 203, d = 16, G = 2, B = 16;  // 13 blocks, the last of 11 tokens
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 81, 1.5f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 82, 1.5f);
  const auto kbar = ref_means(k, B);
  for (const double tau : {0.5, 0.9})
    for (const int K : {1, 4, 13, 20}) {
      const std::vector<int32_t> sel =
          route(RouterKind::moba_threshold, q, k, B, K, kernels::TieRule::recent, kernels::GqaMode::per_head, tau);
      int64_t exact = 0, n = 0;
      for (int64_t h = 0; h < G; ++h)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t c = t / B;
          const std::vector<double> s = ref_gate(q, kbar, B, h, false, t);
          const std::vector<double> p = ref_softmax(s, 1.0 / std::sqrt(double(d)));
          const int32_t* row = sel.data() + (h * T + t) * K;
          const int cnt = selection_count(row, K);
          REQUIRE(row[cnt - 1] == c);
          double mass = 0;
          for (int j = 0; j + 1 < cnt; ++j) mass += p[row[j]];
          // Reaches tau unless capped; the best cnt - 2 blocks do not (minimal), within rounding.
          if (cnt - 1 < std::min<int64_t>(K - 1, c)) CHECK(mass >= tau - 1e-6);
          if (cnt >= 2) {
            std::vector<double> sorted = p;
            std::sort(sorted.rbegin(), sorted.rend());
            CHECK(std::accumulate(sorted.begin(), sorted.begin() + (cnt - 2), 0.0) < tau + 1e-6);
          }
          const std::vector<int32_t> want = ref_mass_select(s, p, 0.0, c, K, tau, kernels::TieRule::recent);
          exact += std::equal(want.begin(), want.end(), row) ? 1 : 0;
          ++n;
        }
      INFO("tau " << tau << " k=" << K << ": " << exact << " of " << n << " rows as the double brute force");
      CHECK(exact >= n - 2);  // near-ties of fp32 vs double scores only
    }
}

TEST_CASE("nsa-shared: the top-k of the group's summed softmax, one row per group, not --gqa shared moba",
          "[analysis][router][budget]") {
  const int64_t T = 203, d = 16, G = 3, B = 16;
  // Heads of very different scale: summed softmax probabilities != softmax of summed scores.
  Tensor3 q = analysis_test::random_tensor(G, T, d, 91, 1.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t ch = 0; ch < d; ++ch) q.data[(0 * T + t) * d + ch] *= 6.0f;
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 92, 1.5f);
  const auto kbar = ref_means(k, B);
  int64_t differs_from_shared_moba = 0;
  for (const int K : {1, 2, 5, 13, 20})
    for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older})
      for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared}) {
        INFO("k=" << K << " tie " << tie_name(tie) << " gqa " << gqa_name(gqa));
        const std::vector<int32_t> sel = route(RouterKind::nsa_shared, q, k, B, K, tie, gqa, 0.9);
        const std::vector<int32_t> moba = route(RouterKind::moba, q, k, B, K, tie, kernels::GqaMode::shared, 0.9);
        int64_t exact = 0;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t c = t / B;
          std::vector<double> sum(static_cast<size_t>(c), 0.0);
          for (int64_t h = 0; h < G; ++h) {
            const std::vector<double> p = ref_softmax(ref_gate(q, kbar, B, h, false, t), 1.0 / std::sqrt(double(d)));
            for (int64_t b = 0; b < c; ++b) sum[b] += p[b];
          }
          const std::vector<int32_t> order = ref_order(sum, tie);
          const std::vector<int32_t> want =
              ref_row(std::vector<int32_t>(order.begin(), order.begin() + std::min<int64_t>(K - 1, c)), c, K);
          const int32_t* row = sel.data() + t * K;
          exact += std::equal(want.begin(), want.end(), row) ? 1 : 0;
          // Every selected routable block's summed probability >= every unselected one's.
          const int cnt = selection_count(row, K);
          double worst_in = 1e300, best_out = -1e300;
          std::vector<bool> in(static_cast<size_t>(c), false);
          for (int j = 0; j + 1 < cnt; ++j) in[row[j]] = true;
          for (int64_t b = 0; b < c; ++b)
            if (in[b]) worst_in = std::min(worst_in, sum[b]);
            else best_out = std::max(best_out, sum[b]);
          if (cnt > 1 && cnt - 1 < c) CHECK(worst_in >= best_out - 1e-6);
          for (int64_t h = 1; h < G; ++h) CHECK(std::equal(row, row + K, sel.data() + (h * T + t) * K));
          differs_from_shared_moba += std::equal(row, row + K, moba.data() + t * K) ? 0 : 1;
        }
        CHECK(exact >= T - 2);
      }
  CHECK(differs_from_shared_moba > 0);
}

TEST_CASE("oracle-topp: the fewest blocks whose exact mass reaches tau (double full attention)",
          "[analysis][router][budget]") {
  const int64_t T = 150, d = 16, G = 2;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 101, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 102, 2.0f);
  for (const int64_t B : {16, 7, 1})
    for (const double tau : {0.5, 0.9})
      for (const int K : {1, 3, 1000})
        for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared}) {
          const bool shared = gqa == kernels::GqaMode::shared;
          const std::vector<int32_t> sel = route(RouterKind::oracle_topp, q, k, B, K, kernels::TieRule::recent, gqa, tau);
          int64_t exact = 0;
          for (int64_t t = 0; t < T; ++t) {
            const int64_t c = t / B;
            std::vector<double> m(static_cast<size_t>(c + 1), 0.0);  // mean over the chooser's heads
            for (int64_t h = 0; h < G; ++h) {
              if (!shared && h != 0) continue;
              const std::vector<double> P = analysis_test::full_probs(q, k, h, t);
              for (int64_t j = 0; j <= t; ++j) m[j / B] += P[j] / (shared ? double(G) : 1.0);
            }
            const std::vector<double> routable(m.begin(), m.begin() + c);
            const std::vector<int32_t> want = ref_mass_select(routable, routable, m[c], c, K, tau, kernels::TieRule::recent);
            const int32_t* row = sel.data() + t * K;  // head 0
            exact += std::equal(want.begin(), want.end(), row) ? 1 : 0;
            const int cnt = selection_count(row, K);
            double cov = 0;
            for (int j = 0; j < cnt; ++j) cov += m[row[j]];
            if (cnt - 1 < std::min<int64_t>(K - 1, c)) CHECK(cov >= tau - 1e-5);
            if (shared)
              for (int64_t h = 1; h < G; ++h) CHECK(std::equal(row, row + K, sel.data() + (h * T + t) * K));
          }
          INFO("B=" << B << " tau " << tau << " k=" << K << " gqa " << gqa_name(gqa) << ": " << exact << " of " << T);
          CHECK(exact >= T - 2);
        }
}

TEST_CASE("analyze and route_group agree for the new routers, and selected_blocks_mean is the mean realised budget",
          "[analysis][router][budget]") {
  const int64_t T = 150, d = 16, G = 2;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 111, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 112, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 113);
  const std::vector<RouterKind> mine{RouterKind::moba_threshold, RouterKind::nsa_shared, RouterKind::oracle_topp};
  for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared}) {
    AnalyzeOptions opt;
    opt.block_sizes = {16, 7};
    opt.top_ks = {1, 3, 6};
    opt.query_chunk = 64;
    opt.routing.gqa = gqa;
    opt.routing.tau = 0.7;
    opt.routers = {RouterKind::moba, RouterKind::moba_threshold, RouterKind::nsa_shared, RouterKind::oracle,
                   RouterKind::oracle_topp};
    const GroupResult r = analysis_test::analyze_all(q, k, v, opt);
    for (const RouterKind router : mine)
      for (const int64_t B : {16, 7})
        for (const int K : {1, 3, 6}) {
          std::vector<int32_t> ref(static_cast<size_t>(G * T * K));
          route_group(q.view(), k.view(), v.view(), DType::f32, router, opt.routing, B, K, Device::cpu, ref.data(),
                      nullptr, nullptr);
          for (int64_t h = 0; h < G; ++h) {
            INFO(router_name(router) << " gqa " << gqa_name(gqa) << " B=" << B << " k=" << K << " head " << h);
            const auto& a = analysis_test::find_arrays(r, h, router, B, K);
            CHECK(std::equal(a.selected.begin(), a.selected.end(), ref.begin() + h * T * K));
            double sum = 0;
            int64_t n = 0;
            for (int64_t t = 0; t < T; ++t)
              if (has_choice(t, B, K)) {
                sum += selection_count(a.selected.data() + t * K, K);
                ++n;
              }
            for (const SummaryRow& row : r.rows)
              if (row.key.head == h && row.key.router == router && row.key.block_size == B && row.key.top_k == K) {
                CHECK(row.get(SummaryColumn::selected_mean) == Approx(sum / n));
                if (!router_is_variable_budget(router)) CHECK(row.get(SummaryColumn::selected_mean) == K);
                CHECK(std::isnan(row.get(SummaryColumn::snr_emp)));
              }
          }
        }
    for (const SummaryRow& row : r.rows)
      if (row.key.router == RouterKind::moba && row.get(SummaryColumn::n_choice) > 0)
        CHECK(row.get(SummaryColumn::selected_mean) == row.key.top_k);
  }
}

TEST_CASE("the GPU-resident analysis takes every router", "[analysis][router][budget]") {
  AnalyzeOptions opt;
  opt.block_sizes = {16, 64};
  opt.top_ks = {2, 4};
  // Every router at once (kconv and moba are its two gates; nsa-shared's row sums the group's
  // heads, all resident on the device).
  opt.routers = {RouterKind::moba,          RouterKind::moba_kconv,     RouterKind::oracle,
                 RouterKind::quest,         RouterKind::sink_window,    RouterKind::minference_bs,
                 RouterKind::moba_threshold, RouterKind::oracle_topp,   RouterKind::nsa_shared};
  const std::string why = gpu_analysis_unsupported(opt, make_plan(opt, 1024), 64);
  INFO(why);
  if (kernels::cuda_compiled())
    CHECK(why.empty());
  else
    CHECK(why == "this build has no CUDA backend");
}
