// The seams of the analysis data model: ConfigKey order and names, the summary column
// catalogue's pooling rules, analysis.h5 paths written by results_schema and read back by
// ResultsFile, and the JSON / number formatters of core/json_writer.h.
#include <catch2/catch.hpp>
#include <cmath>
#include <iterator>
#include <limits>

#include "analysis/config_key.h"
#include "analysis/report.h"
#include "analysis/results_file.h"
#include "analysis/results_schema.h"
#include "analysis/summary.h"
#include "core/errors.h"
#include "core/h5_output.h"
#include "core/json_writer.h"
#include "test_io_util.h"

using namespace moba;
using namespace moba::analysis;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

SummaryRow head_row(int layer, int64_t head, RouterKind router) {
  SummaryRow r;
  r.key = {layer, head, 64, 4, router};
  return r;
}

}  // namespace

TEST_CASE("ConfigKey: order, equality and names", "[analysis][config_key]") {
  const ConfigKey a{0, 1, 64, 4, RouterKind::moba};
  ConfigKey b = a;
  CHECK(a == b);
  CHECK_FALSE(a < b);
  b.router = RouterKind::oracle;
  CHECK(a != b);
  CHECK(a < b);
  CHECK(a.same_slot(b));
  CHECK(a.with_router(RouterKind::oracle) == b);
  // Layer before head before B before k before router.
  CHECK(ConfigKey{0, 9, 999, 99, RouterKind::oracle} < ConfigKey{1, 0, 1, 1, RouterKind::moba});
  CHECK(ConfigKey{0, 1, 16, 99, RouterKind::oracle} < ConfigKey{0, 1, 32, 1, RouterKind::moba});
  CHECK(a.name() == "layer 0 head 1 B=64 k=4 moba");
  CHECK(ConfigKey{-1, -1, 8, 2, RouterKind::moba_kconv}.name() == "layer all head all B=8 k=2 moba-kconv");
  // Enum order is name order: sorting keys sorts router names as text.
  CHECK(std::string(router_name(RouterKind::moba)) < router_name(RouterKind::moba_kconv));
  CHECK(std::string(router_name(RouterKind::moba_kconv)) < router_name(RouterKind::oracle));
  const RouterKind all[] = {RouterKind::minference_bs, RouterKind::moba,        RouterKind::moba_kconv,
                            RouterKind::moba_threshold, RouterKind::nsa_shared, RouterKind::oracle,
                            RouterKind::oracle_topp,    RouterKind::quest,      RouterKind::sink_window};
  for (size_t i = 1; i < std::size(all); ++i) {
    CHECK(static_cast<int>(all[i - 1]) < static_cast<int>(all[i]));
    CHECK(std::string(router_name(all[i - 1])) < router_name(all[i]));
  }

  for (const RouterKind r : all) {
    RouterKind back = RouterKind::moba;
    REQUIRE(parse_router(router_name(r), &back));
    CHECK(back == r);
    CHECK(router_from_name(router_name(r)) == r);
  }
  RouterKind unused;
  CHECK_FALSE(parse_router("Oracle", &unused));
  CHECK_THROWS_AS(router_from_name("Quest"), UsageError);
  CHECK_THROWS_AS(router_from_name("sink"), UsageError);
  CHECK(tie_from_name(tie_name(kernels::TieRule::older)) == kernels::TieRule::older);
  CHECK(gqa_from_name(gqa_name(kernels::GqaMode::shared)) == kernels::GqaMode::shared);
  CHECK(pool_fp32_from_name(pool_precision_name(true)));
  CHECK_THROWS_AS(gqa_from_name("per_head"), UsageError);

  ConfigFilter f;
  CHECK(f.matches(a));
  f.block_size = 32;
  CHECK_FALSE(f.matches(a));
  f = ConfigFilter{};
  f.any_router = false;
  f.router = RouterKind::oracle;
  CHECK_FALSE(f.matches(a));
  CHECK(f.matches(b));
}

TEST_CASE("summary catalogue: one entry per column, in enum order, names unique", "[analysis][summary]") {
  const auto& cols = summary_columns();
  REQUIRE(static_cast<int>(cols.size()) == kSummaryColumnCount);
  for (int i = 0; i < kSummaryColumnCount; ++i) {
    INFO(cols[i].name);
    CHECK(static_cast<int>(cols[i].column) == i);
    SummaryColumn back;
    REQUIRE(parse_summary_column(cols[i].name, &back));
    CHECK(back == cols[i].column);
    if (cols[i].agg == SummaryAgg::weighted_mean) CHECK(summary_column(cols[i].weight).agg == SummaryAgg::sum);
  }
  SummaryColumn unused;
  CHECK_FALSE(parse_summary_column("coverage", &unused));
  // Quantiles are per head: "_p5" and "_p50" are distinct columns with the same rule, and
  // no mean column is caught by a quantile's name.
  CHECK(summary_column(SummaryColumn::coverage_p5).agg == SummaryAgg::per_head);
  CHECK(summary_column(SummaryColumn::coverage_p50).agg == SummaryAgg::per_head);
  CHECK(summary_column(SummaryColumn::kl_p95).agg == SummaryAgg::per_head);
  CHECK(summary_column(SummaryColumn::p_fail_emp).agg == SummaryAgg::pooled_snr);
  CHECK(summary_column(SummaryColumn::coverage_trail_mean).weight == SummaryColumn::n_choice_trail);
  CHECK(summary_column(SummaryColumn::planted_recall).weight == SummaryColumn::planted_queries);
  CHECK(summary_column(SummaryColumn::coverage_all_mean).weight == SummaryColumn::n_queries);

  REQUIRE(static_cast<int>(position_metrics().size()) == kPositionMetricCount);
  CHECK(find_position_metric("block_recall")->oracle_overlay == false);
  CHECK(find_position_metric("coverage")->range == PlotRange::share);
  CHECK(find_position_metric("nope") == nullptr);
  CHECK(headline_position_metrics() == std::vector<std::string>{"coverage", "kl", "block_recall", "output_rel_err"});
}

TEST_CASE("aggregate_rows: counts sum, means weight by their column, quantiles are per head",
          "[analysis][summary]") {
  using C = SummaryColumn;
  SummaryRow a = head_row(0, 0, RouterKind::oracle), b = head_row(0, 1, RouterKind::oracle);
  a.set(C::n_choice, 10);
  b.set(C::n_choice, 30);
  a.set(C::coverage_mean, 0.5);
  b.set(C::coverage_mean, 0.9);
  a.set(C::coverage_p5, 0.1);
  b.set(C::coverage_p5, 0.2);
  a.set(C::coverage_p50, 0.4);
  b.set(C::coverage_p50, 0.6);
  a.set(C::n_tokens, 100);
  b.set(C::n_tokens, 100);
  a.set(C::n_choice_trail, 1);
  b.set(C::n_choice_trail, 3);
  a.set(C::kl_trail_mean, 1.0);
  b.set(C::kl_trail_mean, 2.0);
  a.set(C::kv_head, 0);
  b.set(C::kv_head, 0);
  b.set(C::planted_recall, 0.75);  // a has no planted queries: NaN weight, skipped
  b.set(C::planted_queries, 4);
  const auto rows = aggregate_rows({a, b}, {}, 16, true);
  REQUIRE(rows.size() == 1);
  const SummaryRow& r = rows[0];
  CHECK(r.scope == Scope::layer);
  CHECK(r.key == ConfigKey{0, -1, 64, 4, RouterKind::oracle});
  CHECK(r.get(C::n_choice) == 40);
  CHECK(r.get(C::coverage_mean) == Approx((10 * 0.5 + 30 * 0.9) / 40));
  CHECK(r.get(C::n_tokens) == 100);
  CHECK(r.get(C::kl_trail_mean) == Approx((1 * 1.0 + 3 * 2.0) / 4));
  CHECK(r.get(C::planted_queries) == 4);
  CHECK(r.get(C::planted_recall) == 0.75);
  CHECK(std::isnan(r.get(C::coverage_p5)));
  CHECK(std::isnan(r.get(C::coverage_p50)));
  CHECK(std::isnan(r.get(C::kv_head)));
  CHECK(std::isnan(r.get(C::snr_emp)));  // no SNR sums: the oracle has no gate scores

  // Overall rows pool across layers.
  SummaryRow c = head_row(3, 0, RouterKind::oracle);
  c.set(C::n_choice, 60);
  c.set(C::coverage_mean, 0.2);
  const auto overall = aggregate_rows({a, b, c}, {}, 16, false);
  REQUIRE(overall.size() == 1);
  CHECK(overall[0].key.layer == -1);
  CHECK(overall[0].scope == Scope::overall);
  CHECK(overall[0].get(C::n_choice) == 100);
  CHECK(overall[0].get(C::coverage_mean) == Approx((5 + 27 + 12) / 100.0));
}

TEST_CASE("report: CSV and JSON keys and NaN spelling", "[analysis][report]") {
  SummaryRow r;
  r.key = {-1, -1, 32, 2, RouterKind::moba_kconv};
  r.scope = Scope::overall;
  r.set(SummaryColumn::kv_head, 3);
  r.set(SummaryColumn::n_tokens, 0.25);
  std::string keys;
  for (int c = 0; c < static_cast<int>(KeyColumn::count_); ++c)
    keys += std::string(c ? "," : "") + key_column_name(static_cast<KeyColumn>(c));
  CHECK(keys == "layer,head,scope,router,block_size,top_k");
  const std::string csv = rows_to_csv({r});
  CHECK(csv.rfind("layer,head,scope,router,block_size,top_k,kv_head,n_tokens,", 0) == 0);
  CHECK(csv.find("\nall,all,overall,moba-kconv,32,2,3,0.25,nan,") != std::string::npos);
  const std::string json = rows_to_json({r});
  CHECK(json.rfind("[\n {\"layer\": null, \"head\": null, \"scope\": \"overall\", \"router\": \"moba-kconv\", "
                   "\"block_size\": 32, \"top_k\": 2, \"kv_head\": 3, \"n_tokens\": 0.25, \"n_blocks\": null",
                   0) == 0);
  CHECK(json.substr(json.size() - 4) == "}\n]\n");
}

TEST_CASE("results_schema: paths and a written configuration read back by ResultsFile", "[analysis][results]") {
  const ConfigKey key{2, 5, 16, 3, RouterKind::moba_kconv};
  CHECK(group_path(key) == "/layers/2/heads/5/B16_k3/moba-kconv");
  CHECK(selected_path(key) == "/layers/2/heads/5/B16_k3/moba-kconv/selected");
  CHECK(snr_hist_path(key) == "/layers/2/heads/5/B16/moba-kconv/signal_rank_hist");
  int64_t B = 0;
  int k = 0;
  REQUIRE(parse_slot_name(slot_name(16, 3), &B, &k));
  CHECK((B == 16 && k == 3));
  CHECK_FALSE(parse_slot_name("B16", &B, &k));
  CHECK_FALSE(parse_slot_name("B0_k3", &B, &k));
  CHECK_FALSE(parse_slot_name("B16_kx", &B, &k));

  io_test::ScratchDir dir("schema");
  const int64_t T = 20;
  PositionArrays arrays;
  arrays.key = key;
  arrays.selected.assign(static_cast<size_t>(T * key.top_k), -1);
  for (int64_t t = 0; t < T; ++t) arrays.selected[static_cast<size_t>(t * key.top_k)] = static_cast<int32_t>(t / 16);
  for (const auto& m : position_metrics())
    arrays.metric(m.metric).assign(static_cast<size_t>(T), static_cast<float>(static_cast<int>(m.metric)));
  SummaryRow row;
  row.key = key;
  row.set(SummaryColumn::coverage_mean, 0.625);
  SnrSums sums;
  sums.key = {2, 5, 16, 0, RouterKind::moba_kconv};
  {
    H5Output h5(dir.file("analysis.h5"));
    write_configuration(h5, arrays, row, nullptr, 0, T, true, true);
    write_snr_hist(h5, sums);
    h5.commit();
  }
  const ResultsFile f(dir.dir.string());
  REQUIRE(f.configs().size() == 1);  // the SNR group is not a configuration
  CHECK(f.configs()[0] == key);
  const ResultArrays a = f.load(key);
  CHECK(a.selected == arrays.selected);
  CHECK(a.metrics.size() == position_metrics().size());
  for (const auto& m : position_metrics()) {
    REQUIRE(a.metric(m.name));
    CHECK(a.metric(m.name)->at(7) == static_cast<float>(static_cast<int>(m.metric)));
  }
  CHECK(a.summary_value("coverage_mean") == 0.625);
  CHECK(std::isnan(a.summary_value("kl_mean")));
}

TEST_CASE("json_writer: escaping, numbers and objects", "[core][json]") {
  CHECK(json_escape("a\"b\\c\nd\te\r\x01") == "a\\\"b\\\\c\\nd\\te\\r\\u0001");
  CHECK(json_string("x") == "\"x\"");
  CHECK(format_number(3.0) == "3");
  CHECK(format_number(-2.0) == "-2");
  CHECK(format_number(0.1) == "0.1");
  CHECK(format_number(1.0 / 3) == "0.333333");
  CHECK(format_number(1e15) == "1e+15");
  CHECK(format_number(kNaN) == "nan");
  CHECK(format_number(-INFINITY) == "-inf");
  CHECK(json_number(kNaN) == "null");
  CHECK(json_number(2.5) == "2.5");
  CHECK(format_g(1.0 / 3, 9) == "0.333333333");
  CHECK(format_shortest(0.1) == "0.1");
  CHECK(format_shortest(1.0 / 3) == "0.3333333333333333");
  CHECK(format_shortest(80) == "80");      // not the shorter "8e+01"
  CHECK(format_shortest(-1e6) == "-1000000");
  CHECK(format_shortest(1e300) == "1e+300");
  JsonObject inner;
  CHECK(inner.str() == "{}");
  inner.add_string("k", "v\"");
  const std::string s =
      JsonObject().add_integer("a", -3).add_number("b", kNaN).add_null("c").add_raw("d", inner.str()).str();
  CHECK(s == "{\"a\": -3, \"b\": null, \"c\": null, \"d\": {\"k\": \"v\\\"\"}}");
}
