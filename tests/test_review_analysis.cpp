// Review findings on `moba analyze` as a library (analysis/analyze.h, DESIGN.md §4, §7).
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>

#include "analysis/analyze.h"
#include "test_analysis_util.h"

using namespace moba;

TEST_CASE("aggregate rows: n_tokens and n_blocks are the layer's, not sums weighted by n_choice",
          "[analysis][metrics][review]") {
  const int64_t T = 200, d = 16, B = 16;
  const Tensor3 q = analysis_test::random_tensor(2, T, d, 11);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 12);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 13);
  analysis::AnalyzeOptions opt;
  opt.block_sizes = {B};
  opt.top_ks = {2};
  const analysis::GroupResult r = analysis_test::analyze_all(q, k, v, opt);
  REQUIRE(r.rows.size() == 4);  // 2 heads x 2 routers
  for (const bool per_layer : {true, false}) {
    const auto agg = analysis::aggregate_rows(r.rows, r.snr, d, per_layer);
    REQUIRE(agg.size() == 2);
    for (const auto& row : agg) {
      CHECK(row.get(analysis::SummaryColumn::n_tokens) == T);
      CHECK(row.get(analysis::SummaryColumn::n_blocks) == (T + B - 1) / B);
      // counts are sums over the heads
      CHECK(row.get(analysis::SummaryColumn::n_queries) == 2 * T);
      CHECK(row.get(analysis::SummaryColumn::n_choice) == 2 * (T - 2 * B));  // t / B > 1
    }
  }
}

TEST_CASE("analyze --gqa shared: the oracle is the group's choice from summed block masses, as moba route's",
          "[analysis][metrics][review]") {
  // analysis/router.h: under `shared` the oracle selects from the KV group's summed block
  // masses; analyze's oracle (its selections in analysis.h5, oracle coverage, block recall)
  // must be the same router as `moba route --router oracle --gqa shared`.
  const int64_t T = 300, d = 16, G = 4;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 21, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 22, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 23);
  analysis::AnalyzeOptions opt;
  opt.block_sizes = {16, 32};
  opt.top_ks = {2, 3};
  opt.routing.gqa = kernels::GqaMode::shared;
  opt.routers = {analysis::RouterKind::moba, analysis::RouterKind::oracle};
  const analysis::GroupResult r = analysis_test::analyze_all(q, k, v, opt);
  for (const int64_t B : opt.block_sizes)
    for (const int K : opt.top_ks) {
      std::vector<int32_t> ref(static_cast<size_t>(G * T * K));
      analysis::route_group(q.view(), k.view(), v.view(), DType::f32, analysis::RouterKind::oracle, opt.routing, B, K,
                            analysis::Device::cpu, ref.data(), nullptr, nullptr);
      for (int64_t h = 0; h < G; ++h) {
        INFO("B=" << B << " K=" << K << " head " << h);
        const auto& oracle = analysis_test::find_arrays(r, h, analysis::RouterKind::oracle, B, K);
        const std::vector<int32_t> want(ref.begin() + h * T * K, ref.begin() + (h + 1) * T * K);
        int64_t differ = 0;
        for (int64_t t = 0; t < T; ++t)
          differ += std::equal(want.begin() + t * K, want.begin() + (t + 1) * K, oracle.selected.begin() + t * K) ? 0 : 1;
        CHECK(differ == 0);
        // Block recall is measured against that same oracle: the oracle's own recall is 1.
        for (int64_t t = 0; t < T; ++t)
          if (oracle.choice[t] && K > 1) REQUIRE(oracle.block_recall[t] == 1.0f);
      }
    }
}

TEST_CASE("analyze: oracle_coverage_mean is reported without the oracle router in --routers",
          "[analysis][metrics][review]") {
  // DESIGN.md §7: every summary row carries oracle_coverage_mean (§4's R*_t); the oracle is
  // computed for block recall whatever routers are listed.
  const int64_t T = 256, d = 16;
  const Tensor3 q = analysis_test::random_tensor(1, T, d, 31, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 32, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 33);
  analysis::AnalyzeOptions opt;
  opt.block_sizes = {16};
  opt.top_ks = {3};
  opt.routers = {analysis::RouterKind::moba, analysis::RouterKind::oracle};
  const analysis::GroupResult both = analysis_test::analyze_all(q, k, v, opt);
  opt.routers = {analysis::RouterKind::moba};
  const analysis::GroupResult alone = analysis_test::analyze_all(q, k, v, opt);
  REQUIRE(both.rows.size() == 2);
  REQUIRE(alone.rows.size() == 1);
  const double want = both.rows[0].get(analysis::SummaryColumn::oracle_coverage_mean);
  REQUIRE(std::isfinite(want));
  CHECK(want == both.rows[1].get(analysis::SummaryColumn::coverage_mean));  // the oracle row's own coverage
  CHECK(alone.rows[0].get(analysis::SummaryColumn::oracle_coverage_mean) == want);
  CHECK(alone.rows[0].get(analysis::SummaryColumn::block_recall_mean) == both.rows[0].get(analysis::SummaryColumn::block_recall_mean));
}

TEST_CASE("aggregate rows: sparsity_nominal survives a configuration where no query has a choice",
          "[analysis][metrics][review]") {
  // T <= k B: every query attends densely, n_choice = 0; the nominal sparsity 1 - k B / T is
  // a property of the configuration, the same in head rows and layer rows.
  const int64_t T = 100, d = 8;
  const Tensor3 q = analysis_test::random_tensor(2, T, d, 51);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 52);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 53);
  analysis::AnalyzeOptions opt;
  opt.block_sizes = {16};
  opt.top_ks = {4, 7};
  const analysis::GroupResult r = analysis_test::analyze_all(q, k, v, opt);
  for (const bool per_layer : {true, false})
    for (const auto& row : analysis::aggregate_rows(r.rows, r.snr, d, per_layer)) {
      INFO("k " << row.key.top_k);
      CHECK(row.get(analysis::SummaryColumn::sparsity_nominal) == Approx(1.0 - row.key.top_k * 16.0 / T));
    }
}
