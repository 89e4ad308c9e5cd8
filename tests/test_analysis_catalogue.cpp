// The seams of the analysis data model: ConfigKey order and names, the summary column
// catalogue's pooling rules, analysis.h5 paths written by results_schema and read back by
// ResultsFile, and the JSON / number formatters of core/json_writer.h.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
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

  CHECK(head_table_path(2, 5, kSummaryDataset) == "/layers/2/heads/5/summary");
  CHECK(split_names(join_names({"a", "b_c", ""})) == std::vector<std::string>{"a", "b_c", ""});
  CHECK(split_names("").empty());

  // One head of layout 2: two configurations x two routers in the tables; only `key`'s
  // per-position data kept.
  io_test::ScratchDir dir("schema");
  const int64_t T = 20;
  const std::vector<RouterKind> routers{RouterKind::oracle, RouterKind::moba_kconv};
  PositionArrays arrays;
  arrays.key = key;
  arrays.selected.assign(static_cast<size_t>(T * key.top_k), -1);
  for (int64_t t = 0; t < T; ++t) arrays.selected[static_cast<size_t>(t * key.top_k)] = static_cast<int32_t>(t / 16);
  for (const auto& m : position_metrics())
    arrays.metric(m.metric).assign(static_cast<size_t>(T), static_cast<float>(static_cast<int>(m.metric)));
  std::vector<SummaryRow> rows;
  std::vector<BucketRow> buckets;
  for (const int64_t b : {16, 8})
    for (const RouterKind r : {RouterKind::moba_kconv, RouterKind::oracle}) {
      SummaryRow row;
      row.key = {2, 5, b, 3, r};
      row.set(SummaryColumn::coverage_mean, 0.625 + static_cast<double>(rows.size()) / 3);
      row.set(SummaryColumn::n_tokens, static_cast<double>(T));
      for (int e = 0; e < 2; ++e) {
        BucketRow br;
        br.key = row.key;
        br.t_begin = e * 10;
        br.t_end = e * 10 + 10;
        br.n_choice = 7 + e + static_cast<int64_t>(rows.size());
        br.coverage = 0.5 + e;
        br.kl = kNaN;
        br.output_rel_err = static_cast<double>(rows.size());
        buckets.push_back(br);
      }
      rows.push_back(row);
    }
  std::vector<SnrSums> sums(2);
  sums[0].key = {2, 5, 16, 0, RouterKind::moba_kconv};
  sums[0].stats.rank_hist[0] = 11;
  sums[1].key = {2, 5, 8, 0, RouterKind::moba_kconv};
  sums[1].stats.rank_hist[kSnrMaxRank] = 4;
  {
    H5Output h5(dir.file("analysis.h5"));
    write_head_tables(h5, rows, routers, buckets.data(), 2, sums.data(), sums.size());
    write_kept_arrays(h5, arrays, T, true, true);
    PositionArrays none;
    none.key = rows[1].key;
    write_kept_arrays(h5, none, T, false, false);  // writes nothing
    h5.commit();
  }
  const ResultsFile f(dir.dir.string());
  REQUIRE(f.configs().size() == 4);
  CHECK(f.configs()[0] == ConfigKey{2, 5, 8, 3, RouterKind::moba_kconv});  // sorted, not in table order
  REQUIRE(f.find(key));
  CHECK((f.stored(key).selection && f.stored(key).metrics && f.stored(key).buckets));
  const StoredLevels bare = f.stored(rows[1].key);
  CHECK((!bare.selection && !bare.metrics && bare.buckets));
  CHECK(f.n_tokens(key) == T);
  CHECK(f.n_tokens(rows[3].key) == T);
  const ResultArrays a = f.load(key);
  CHECK(a.selected == arrays.selected);
  CHECK(a.metrics.size() == position_metrics().size());
  for (const auto& m : position_metrics()) {
    REQUIRE(a.metric(m.name));
    CHECK(a.metric(m.name)->at(7) == static_cast<float>(static_cast<int>(m.metric)));
  }
  CHECK(a.summary_value("coverage_mean") == 0.625);
  CHECK(std::isnan(a.summary_value("kl_mean")));
  CHECK(a.summary.size() == summary_columns().size());
  CHECK(a.signal_rank_hist.size() == static_cast<size_t>(kSnrMaxRank + 1));
  CHECK(a.signal_rank_hist.at(0) == 11);
  CHECK(a.bucket_n_choice == std::vector<int64_t>{7, 8});
  REQUIRE(a.bucket_curve("coverage"));
  CHECK(a.bucket_curve("coverage")->edges == std::vector<int64_t>{0, 10, 20});
  CHECK(a.bucket_curve("coverage")->mean == std::vector<float>{0.5f, 1.5f});
  // The last row (B 8, oracle): its own summary, bucket rows and no SNR histogram (not a gate router).
  const ResultArrays o = f.load(rows[3].key);
  CHECK(o.summary_value("coverage_mean") == 0.625 + 1.0);
  CHECK(o.bucket_n_choice == std::vector<int64_t>{10, 11});
  CHECK(o.bucket_curve("output_rel_err")->mean == std::vector<float>{3.f, 3.f});
  CHECK(std::isnan(o.bucket_curve("kl")->mean[1]));
  CHECK(o.signal_rank_hist.empty());
  CHECK(o.n_tokens == T);
  CHECK(o.selected.empty());
  CHECK(o.metrics.empty());
  CHECK(f.load(rows[2].key).signal_rank_hist.at(kSnrMaxRank) == 4);

  // Layout 1 (files written before the head tables): the group's attributes, its own bucket
  // datasets and the B<b>/<router> SNR histogram are read the same way.
  {
    io_test::ScratchDir old_dir("schema_layout1");
    const ConfigKey k1{0, 1, 8, 2, RouterKind::moba};
    const std::string g = group_path(k1);
    const std::vector<int32_t> edges{0, 4, 9}, n_choice{3, 5}, hist{0, 6, 1};
    const std::vector<float> means{0.25f, 0, 0, 0, 0, 0.75f, 0, 0, 0, 0};
    {
      H5Output h5(old_dir.file("analysis.h5"));
      h5.set_numbers(g, {{"coverage_mean", 0.375}, {"kl_mean", kNaN}});
      h5.write_i32(g + "/" + kBucketEdgesDataset, {3}, edges.data());
      h5.write_i32(g + "/" + kBucketChoiceDataset, {2}, n_choice.data());
      h5.write_f32(g + "/" + kBucketMeansDataset, {2, 5}, means.data());
      h5.write_i32(snr_hist_path(k1), {3}, hist.data());
      h5.commit();
    }
    const ResultsFile f1(old_dir.dir.string());
    REQUIRE(f1.configs().size() == 1);
    CHECK(f1.configs()[0] == k1);
    CHECK(f1.n_tokens(k1) == 9);
    const ResultArrays a1 = f1.load(k1);
    CHECK(a1.summary_value("coverage_mean") == 0.375);
    CHECK(std::isnan(a1.summary_value("kl_mean")));
    CHECK(a1.summary.size() == 2);
    CHECK(a1.bucket_n_choice == std::vector<int64_t>{3, 5});
    CHECK(a1.bucket_curve("coverage")->mean == std::vector<float>{0.25f, 0.75f});
    CHECK(a1.signal_rank_hist == hist);
    CHECK(a1.n_tokens == 9);
  }

  // A table whose router index lies outside its `routers` attribute: FormatError naming it.
  {
    const std::vector<int32_t> bad{16, 3, 2};
    H5Output h5(dir.file("bad.h5"));
    h5.write_i32("/layers/0/heads/0/configurations", {1, 3}, bad.data());
    h5.set_string("/layers/0/heads/0/configurations", "routers", "moba,oracle");
    h5.commit();
  }
  try {
    const ResultsFile bad(dir.file("bad.h5"));
    FAIL("no error");
  } catch (const FormatError& e) {
    CHECK(e.field() == "/layers/0/heads/0/configurations");
    CHECK_THAT(e.what(), Catch::Contains("router 2 outside"));
  }
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

// format_number's contract is printf's: integers below 1e15 as "%lld" of the value, the rest
// "%.6g" (append_number writes it with std::to_chars). Checked against printf on random bit
// patterns, every scale and the edges (-0, 1e15 +- 1 ulp, denormals, halfway cases).
TEST_CASE("json_writer: format_number is printf's %lld / %.6g", "[core][json]") {
  const auto printf_number = [](double v) -> std::string {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 1e15)
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else
      std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
  };
  std::vector<double> xs = {0.0, -0.0, 1e15, std::nextafter(1e15, 0.0), std::nextafter(1e15, 2e15), -1e15, 5e-324,
                            2.2250738585072014e-308, 1.0000005, 0.12345650000000001, 999999.5, 9999995.0, 1e-5, 1e-4,
                            123456.5, -7.0, 1e300, -1e-300};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    uint64_t bits = rng();
    double v = 0;
    std::memcpy(&v, &bits, sizeof v);
    xs.push_back(v);
    xs.push_back(std::ldexp(static_cast<double>(rng() % 2000000) - 1e6, static_cast<int>(rng() % 80) - 60));
  }
  int bad = 0;
  for (const double v : xs)
    if (format_number(v) != printf_number(v) && ++bad <= 5)
      FAIL_CHECK(v << ": " << format_number(v) << " vs " << printf_number(v));
  CHECK(bad == 0);
  std::string out = "x";
  append_number(out, 0.25);
  CHECK(out == "x0.25");
}
