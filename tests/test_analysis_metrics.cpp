// Metrics of DESIGN.md §4 on tiny hand-computed cases and their identities: -ln R is the KL
// of the renormalised sparse distribution, the oracle covers at least as much as any router,
// the oracle's block recall is 1, and T <= k*B gives the dense output.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "analysis/metrics.h"
#include "analysis/router.h"
#include "analysis/snr.h"
#include "core/errors.h"
#include "test_analysis_util.h"

using namespace moba;
using namespace moba::analysis;
using moba::analysis_test::analyze_all;
using moba::analysis_test::find_arrays;
using moba::analysis_test::random_tensor;

TEST_CASE("metrics: hand-computed coverage, recall, token recall, sparsity, output error", "[analysis][metrics]") {
  // t = 9, B = 2: blocks 0..4, current block c = 4; k = 3.
  const float mass[5] = {0.1f, 0.05f, 0.4f, 0.15f, 0.3f};
  const int32_t sel[3] = {0, 2, 4};
  const int32_t oracle[3] = {2, 3, 4};
  CHECK(coverage(mass, sel, 3) == Approx(0.8));
  CHECK(coverage(mass, oracle, 3) == Approx(0.85));
  CHECK(block_recall(sel, oracle, 3, 4) == Approx(0.5));  // routed {0,2} vs {2,3}
  CHECK(block_recall(oracle, oracle, 3, 4) == 1.0);
  const int32_t k1[1] = {4};
  CHECK(std::isnan(block_recall(k1, k1, 1, 4)));  // k = 1: nothing routed, undefined
  const int32_t padded[3] = {0, 1, -1};          // t = 3: c = 1, only block 0 routable
  CHECK(selection_count(padded, 3) == 2);
  CHECK(block_recall(padded, padded, 3, 1) == 1.0);

  const int32_t top[4] = {9, 4, 6, -1};  // keys 9 (block 4), 4 (block 2), 6 (block 3)
  CHECK(token_recall(top, 4, sel, 3, 2) == Approx(2.0 / 3.0));
  CHECK(attended_keys(sel, 3, 2, 9, 10) == 6);
  CHECK(attended_keys(sel, 3, 2, 8, 10) == 5);  // current block causal: keys 8 only
  CHECK(attended_keys(sel, 3, 2, 9, 9) == 5);   // ragged last block [8, 9)

  const float o[2] = {1.0f, 1.0f}, ref[2] = {1.0f, 0.0f};
  double rel, cosine;
  output_error(o, ref, 2, &rel, &cosine);
  CHECK(rel == Approx(1.0));
  CHECK(cosine == Approx(1.0 / std::sqrt(2.0)));

  CHECK(has_choice(9, 2, 3));    // c = 4 > 2
  CHECK(!has_choice(5, 2, 3));   // c = 2: both routable blocks fit
  CHECK(!has_choice(1, 2, 1) );  // c = 0
  CHECK(has_choice(2, 2, 1));    // c = 1 > 0
}

TEST_CASE("metrics: summarize, quantiles and buckets", "[analysis][metrics]") {
  const std::vector<float> v = {1, 2, 3, 4, std::numeric_limits<float>::quiet_NaN(), 100};
  const std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 0};
  const Stats s = summarize(v, mask, 0, 6);
  CHECK(s.n == 4);
  CHECK(s.mean == Approx(2.5));
  CHECK(s.p50 == Approx(2.5));
  CHECK(s.p5 == Approx(1.15));  // numpy: 1 + 0.05 * 3 * (2 - 1)
  CHECK(std::isnan(summarize(v, mask, 4, 6).mean));
  CHECK(bucket_edges(100, 4, 0) == std::vector<int64_t>{0, 25, 50, 75, 100});
  CHECK(bucket_edges(100, 4, 40) == std::vector<int64_t>{0, 40, 80, 100});
}

TEST_CASE("metrics: fixed sparsity picks k = max(1, round((1 - s) T / B))", "[analysis][metrics]") {
  AnalyzeOptions opt;
  opt.block_sizes = {16, 32, 64, 128, 1024};
  opt.sparsities = {0.75};
  const auto cfgs = resolve_block_configs(opt, 1024);
  REQUIRE(cfgs.size() == 5);
  CHECK(cfgs[0].top_k == 16);
  CHECK(cfgs[1].top_k == 8);
  CHECK(cfgs[2].top_k == 4);
  CHECK(cfgs[3].top_k == 2);
  CHECK(cfgs[4].top_k == 1);  // round(0.25) = 0 -> 1
  CHECK(cfgs[0].nominal_sparsity == Approx(0.75));
  opt.top_ks = {2};
  CHECK_THROWS_AS(resolve_block_configs(opt, 1024), UsageError);  // both --top-k and --sparsity
  opt.sparsities.clear();
  opt.block_sizes = {16, 16};
  CHECK_THROWS_AS(resolve_block_configs(opt, 1024), UsageError);
}

TEST_CASE("metrics: -ln R equals the KL of the renormalised sparse distribution, computed directly",
          "[analysis][metrics]") {
  const int64_t T = 37, d = 8;
  const Tensor3 q = random_tensor(1, T, d, 11, 1.5f), k = random_tensor(1, T, d, 12, 1.5f), v = random_tensor(1, T, d, 13);
  AnalyzeOptions opt;
  opt.block_sizes = {4, 5};
  opt.top_ks = {3};
  opt.routers = {RouterKind::moba, RouterKind::oracle};
  opt.query_chunk = 7;  // several chunks, one ragged
  const GroupResult r = analyze_all(q, k, v, opt);
  for (const int64_t B : {4, 5})
    for (const RouterKind router : {RouterKind::moba, RouterKind::oracle}) {
      const PositionArrays& a = find_arrays(r, 0, router, B, 3);
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<double> P = analysis_test::full_probs(q, k, 0, t);
        const int32_t* sel = a.selected.data() + t * 3;
        auto in_sel = [&](int64_t j) {
          for (int i = 0; i < 3; ++i)
            if (sel[i] == j / B) return true;
          return false;
        };
        double R = 0;
        for (int64_t j = 0; j <= t; ++j) R += in_sel(j) ? P[j] : 0.0;
        double kl = 0;  // KL(p_S || P), p_S = P restricted to S and renormalised
        for (int64_t j = 0; j <= t; ++j)
          if (in_sel(j)) kl += (P[j] / R) * std::log((P[j] / R) / P[j]);
        INFO("router " << router_name(router) << " B " << B << " t " << t);
        CHECK(a.coverage[t] == Approx(R).margin(2e-6));
        CHECK(a.kl[t] == Approx(kl).margin(1e-5));
        CHECK(a.kl[t] == Approx(-std::log(a.coverage[t])).margin(1e-6));
      }
    }
}

TEST_CASE("metrics: the oracle covers at least as much as the router on every query, its recall is 1",
          "[analysis][metrics]") {
  const int64_t T = 150, d = 16;
  const Tensor3 q = random_tensor(2, T, d, 21, 2.0f), k = random_tensor(1, T, d, 22, 2.0f), v = random_tensor(1, T, d, 23);
  AnalyzeOptions opt;
  opt.block_sizes = {1, 8, 13};
  opt.top_ks = {1, 2, 4};
  opt.routers = {RouterKind::moba, RouterKind::moba_kconv, RouterKind::oracle};
  opt.query_chunk = 64;
  const GroupResult r = analyze_all(q, k, v, opt);
  int64_t checked = 0, recall_defined = 0;
  for (const auto& a : r.arrays) {
    const PositionArrays& o = find_arrays(r, a.key.head, RouterKind::oracle, a.key.block_size, a.key.top_k);
    for (int64_t t = 0; t < T; ++t) {
      INFO(router_name(a.key.router) << " head " << a.key.head << " B " << a.key.block_size << " k " << a.key.top_k << " t " << t);
      CHECK(o.coverage[t] >= a.coverage[t] - 1e-6f);
      if (a.key.router == RouterKind::oracle && !std::isnan(a.block_recall[t])) {
        CHECK(a.block_recall[t] == 1.0f);
        ++recall_defined;
      }
      ++checked;
    }
  }
  CHECK(checked == 2 * 9 * 3 * T);
  CHECK(recall_defined > 0);
  for (const auto& row : r.rows)
    if (row.key.router == RouterKind::oracle && row.key.top_k >= 2) CHECK(row.get(SummaryColumn::block_recall_mean) == 1.0);
}

TEST_CASE("metrics: T <= k*B gives the dense output (o_moba == o_full) and full coverage", "[analysis][metrics]") {
  const int64_t T = 45, d = 12;
  const Tensor3 q = random_tensor(1, T, d, 31), k = random_tensor(1, T, d, 32), v = random_tensor(1, T, d, 33);
  AnalyzeOptions opt;
  opt.block_sizes = {8, 45, 64};
  opt.top_ks = {6};  // 6 * 8 = 48 >= 45
  opt.routers = {RouterKind::moba, RouterKind::oracle};
  const GroupResult r = analyze_all(q, k, v, opt);
  for (const auto& a : r.arrays)
    for (int64_t t = 0; t < T; ++t) {
      INFO(router_name(a.key.router) << " B " << a.key.block_size << " t " << t);
      CHECK(a.output_rel_err[t] <= 1e-5f);
      CHECK(a.output_cosine[t] == Approx(1.0).margin(1e-6));
      CHECK(a.coverage[t] == Approx(1.0).margin(1e-5));
      CHECK(a.sparsity_token[t] == 0.0f);
      CHECK(a.choice[t] == 0);  // nobody has a choice: everything fits
    }
}

TEST_CASE("analysis: results do not depend on the thread count", "[analysis][metrics]") {
  const int64_t T = 300, d = 16;
  const Tensor3 q = random_tensor(1, T, d, 41, 2.0f), k = random_tensor(1, T, d, 42, 2.0f), v = random_tensor(1, T, d, 43);
  AnalyzeOptions opt;
  opt.block_sizes = {8, 32};
  opt.top_ks = {3};
  opt.routers = {RouterKind::moba, RouterKind::oracle};
  opt.query_chunk = 100;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const GroupResult a = analyze_all(q, k, v, opt);
  omp_set_num_threads(std::max(2, saved));
  const GroupResult b = analyze_all(q, k, v, opt);
  omp_set_num_threads(saved);
  REQUIRE(a.rows.size() == b.rows.size());
  for (size_t i = 0; i < a.rows.size(); ++i)
    for (const auto& info : summary_columns()) {
      const double x = a.rows[i].get(info.column), y = b.rows[i].get(info.column);
      INFO(info.name);
      CHECK(((std::isnan(x) && std::isnan(y)) || x == y));
    }
}

TEST_CASE("snr: pairs, rank and the retrieval model on hand-made scores", "[analysis][snr]") {
  SnrStats s;
  const float scores[4] = {1.0f, 3.0f, 2.0f, 3.0f};  // signal block 1 ties block 3
  SnrQuerySums sums;
  sums.s_top = 2.0;
  sums.sum_signal = 4.0;
  sums.sumsq_signal = 6.0;
  sums.sum_routable = 10.0;
  sums.sumsq_routable = 20.0;
  CHECK(snr_add_query(s, scores, 4, 1, kernels::TieRule::recent, sums, 2) == 2);  // block 3 wins the tie
  SnrStats s2;
  CHECK(snr_add_query(s2, scores, 4, 1, kernels::TieRule::older, sums, 2) == 1);
  CHECK(s.n_pairs == 3);
  CHECK(s.sum_d == Approx(2.0 + 0.0 + 1.0));
  CHECK(s.n_negative == 0);
  // noise: 6 keys, sum 6, sumsq 14 -> mu 1, var 14/6 - 1
  CHECK(s.sum_delta_mu == Approx(1.0));
  CHECK(s.sum_excess == Approx((4.0 - 2.0) - 1.0));
  CHECK(s.sum_var_noise == Approx(14.0 / 6.0 - 1.0));

  CHECK(normal_cdf(0) == Approx(0.5));
  CHECK(normal_cdf(-1.6448536) == Approx(0.05).epsilon(1e-6));
  // SNR 0: the signal block is a uniformly random one of n -> P(rank <= k-1) = (k-1)/n.
  CHECK(retrieval_probability(0.0, 10, 4) == Approx(0.3).margin(2e-3));
  CHECK(retrieval_probability(0.0, 2, 2) == Approx(0.5).margin(1e-3));
  // Two blocks: retrieved iff D > 0, P = Phi(SNR).
  CHECK(retrieval_probability(1.0, 2, 2) == Approx(normal_cdf(1.0)).margin(1e-4));
  CHECK(retrieval_probability(8.0, 100, 2) == Approx(1.0).margin(1e-6));
  CHECK(retrieval_probability(0.5, 3, 4) == 1.0);  // everything fits
}

TEST_CASE("retrieval_probabilities: every c at once equals retrieval_probability one by one", "[analysis][snr]") {
  for (const double snr : {0.0, 0.3, 1.2, 3.0, -0.5, 9.0})
    for (const int k : {1, 2, 3, 8, 40}) {
      const int64_t max_c = 150;
      const std::vector<double> all = retrieval_probabilities(snr, max_c, k);
      REQUIRE(all.size() == static_cast<size_t>(max_c + 1));
      double worst = 0;
      for (int64_t c = 0; c <= max_c; ++c) {
        const double one = retrieval_probability(snr, c, k);
        worst = std::max(worst, std::abs(all[static_cast<size_t>(c)] - one));
        CHECK(std::isnan(all[static_cast<size_t>(c)]) == std::isnan(one));
      }
      INFO("snr " << snr << " k " << k);
      CHECK(worst < 1e-12);
    }
  CHECK(std::isnan(retrieval_probabilities(std::nan(""), 10, 3)[5]));
  CHECK(retrieval_probabilities(std::nan(""), 10, 3)[2] == 1.0);
  CHECK(retrieval_probabilities(1.0, -1, 3).empty());
  // mean over counts: two values of c, weighted.
  const std::vector<int64_t> counts{0, 0, 0, 5, 0, 15};
  CHECK(mean_retrieval_probability(0.7, counts, 3) ==
        Approx((5 * retrieval_probability(0.7, 3, 3) + 15 * retrieval_probability(0.7, 5, 3)) / 20).epsilon(1e-12));
}

TEST_CASE("kconv weights: .npy and text files load, bad ones raise InputError naming the file", "[analysis][kconv]") {
  const std::string txt = "test_kconv_weights.txt", npy = "test_kconv_weights.npy", bad = "test_kconv_bad.txt";
  {
    std::ofstream f(txt);
    f << "# W=3, head_dim=2\n0.5, 0.25\n0.3 0.2\n\n0.1 0.05\n";
  }
  std::vector<float> w = load_kconv_weights(txt, 3, 2);
  CHECK(w == std::vector<float>{0.5f, 0.25f, 0.3f, 0.2f, 0.1f, 0.05f});
  {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
    while ((10 + header.size() + 1) % 64) header += ' ';
    header += '\n';
    std::ofstream f(npy, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const uint16_t n = static_cast<uint16_t>(header.size());
    f.put(static_cast<char>(n & 0xff));
    f.put(static_cast<char>(n >> 8));
    f << header;
    f.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
  }
  CHECK(load_kconv_weights(npy, 3, 2) == w);
  CHECK_THROWS_AS(load_kconv_weights(npy, 5, 2), InputError);  // wrong W
  CHECK_THROWS_WITH(load_kconv_weights(txt, 3, 4), Catch::Contains(txt) && Catch::Contains("head_dim=4"));
  {
    std::ofstream f(bad);
    f << "0.1 0.2\n0.3 nan\n0.1 0.1\n";
  }
  CHECK_THROWS_AS(load_kconv_weights(bad, 3, 2), InputError);
  {
    std::ofstream f(bad);
    f << "0.1 0.2\n0.3\n";
  }
  CHECK_THROWS_WITH(load_kconv_weights(bad, 2, 2), Catch::Contains(bad) && Catch::Contains("line 2"));
  CHECK_THROWS_AS(load_kconv_weights("no_such_weights.npy", 3, 2), FileNotFoundError);
  std::remove(txt.c_str());
  std::remove(npy.c_str());
  std::remove(bad.c_str());
}
