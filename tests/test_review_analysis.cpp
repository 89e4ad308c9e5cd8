// Review findings on `moba analyze` as a library (analysis/analyze.h, DESIGN.md §4, §7).
#include <catch2/catch.hpp>
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
      CHECK(row.get("n_tokens") == T);
      CHECK(row.get("n_blocks") == (T + B - 1) / B);
      // counts are sums over the heads
      CHECK(row.get("n_queries") == 2 * T);
      CHECK(row.get("n_choice") == 2 * (T - 2 * B));  // t / B > 1
    }
  }
}
