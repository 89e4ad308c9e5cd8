// Summary and bucket rows of one (head, configuration, router) (analysis/head_summary.h).
#include "analysis/head_summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "analysis/metrics.h"

namespace moba::analysis {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
double nan_if_empty(int64_t n, double v) { return n > 0 ? v : kNaN; }
}  // namespace

RetrievalCounts retrieval_counts(int64_t T, int64_t B, int K, int64_t n_blocks, const int32_t* planted) {
  RetrievalCounts r;
  r.signal.assign(static_cast<size_t>(n_blocks + 1), 0);
  r.planted = r.signal;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = t / B;
    if (c >= 2 && has_choice(t, B, K)) ++r.signal[c];
    if (planted && has_choice(t, B, K) && planted[t] >= 0 && planted[t] / B < c) ++r.planted[c];
  }
  for (const int64_t x : r.signal) r.n_signal += x;
  for (const int64_t x : r.planted) r.n_planted += x;
  return r;
}

ConfigStats config_stats(const PositionArrays& pa, const std::vector<float>& oracle_coverage,
                         const std::vector<int64_t>& edges, int64_t trailing) {
  const auto T = static_cast<int64_t>(pa.coverage.size());
  ConfigStats cs;
  for (const auto& info : position_metrics()) {
    const auto m = static_cast<size_t>(info.metric);
    const std::vector<float>& v = pa.metric(info.metric);
    cs.choice[m] = summarize(v, pa.choice, 0, T);
    cs.trailing[m] = summarize_mean(v, pa.choice, T - trailing, T);
  }
  for (size_t e = 0; e + 1 < edges.size(); ++e) {
    std::array<Stats, kPositionMetricCount> b{};
    for (const auto& info : position_metrics())
      b[static_cast<size_t>(info.metric)] = summarize_mean(pa.metric(info.metric), pa.choice, edges[e], edges[e + 1]);
    cs.buckets.push_back(b);
  }
  cs.coverage_all_mean = summarize_mean(pa.coverage, std::vector<uint8_t>(static_cast<size_t>(T), 1), 0, T).mean;
  cs.oracle_coverage_mean = summarize_mean(oracle_coverage, pa.choice, 0, T).mean;
  return cs;
}

SummaryRow head_summary_row(const HeadRowInput& in) {
  using Col = SummaryColumn;
  const ConfigStats& cs = *in.stats;
  const RetrievalCounts& counts = *in.counts;
  const int64_t T = in.n_tokens, B = in.key.block_size;
  const int K = in.key.top_k;
  SummaryRow row;
  row.key = in.key;
  row.scope = Scope::head;
  const auto put = [&](Col c, double v) { row.set(c, v); };
  const auto stat = [&](PositionMetric m) { return cs.choice[static_cast<size_t>(m)]; };
  put(Col::kv_head, static_cast<double>(in.kv_head));
  put(Col::n_tokens, static_cast<double>(T));
  put(Col::n_blocks, static_cast<double>(in.n_blocks));
  put(Col::sparsity_nominal, in.nominal_sparsity);
  put(Col::n_queries, static_cast<double>(T));
  // Statistics over the queries with a choice: per metric its mean and quantile columns
  // (count_: not reported).
  struct MetricColumns {
    PositionMetric metric;
    Col mean, p5, p50, p95;
  };
  static const MetricColumns kColumns[] = {
      {PositionMetric::sparsity_token, Col::sparsity_mean, Col::count_, Col::sparsity_p50, Col::count_},
      {PositionMetric::block_density, Col::block_density_mean, Col::count_, Col::count_, Col::count_},
      {PositionMetric::coverage, Col::coverage_mean, Col::coverage_p5, Col::coverage_p50, Col::count_},
      {PositionMetric::kl, Col::kl_mean, Col::count_, Col::kl_p50, Col::kl_p95},
      {PositionMetric::block_recall, Col::block_recall_mean, Col::block_recall_p5, Col::block_recall_p50, Col::count_},
      {PositionMetric::token_recall, Col::token_recall_mean, Col::token_recall_p5, Col::token_recall_p50, Col::count_},
      {PositionMetric::output_rel_err, Col::output_rel_err_mean, Col::count_, Col::output_rel_err_p50,
       Col::output_rel_err_p95},
      {PositionMetric::output_cosine, Col::output_cosine_mean, Col::output_cosine_p5, Col::count_, Col::count_},
  };
  for (const MetricColumns& m : kColumns) {
    const Stats st = stat(m.metric);
    put(m.mean, st.mean);
    if (m.p5 != Col::count_) put(m.p5, st.p5);
    if (m.p50 != Col::count_) put(m.p50, st.p50);
    if (m.p95 != Col::count_) put(m.p95, st.p95);
    if (m.metric == PositionMetric::coverage) put(Col::n_choice, static_cast<double>(st.n));
  }
  put(Col::oracle_coverage_mean, cs.oracle_coverage_mean);
  // Realised budget: measured on the host; a fixed-budget row with a choice selects exactly k.
  const double n_choice = row.get(Col::n_choice);
  put(Col::selected_mean, !std::isnan(cs.selected_mean) ? cs.selected_mean
                          : n_choice > 0 && !router_is_variable_budget(in.key.router) ? static_cast<double>(K)
                                                                                        : kNaN);
  // Means over the trailing window's queries with a choice.
  static const std::pair<PositionMetric, Col> kTrailing[] = {
      {PositionMetric::coverage, Col::coverage_trail_mean},
      {PositionMetric::kl, Col::kl_trail_mean},
      {PositionMetric::block_recall, Col::block_recall_trail_mean},
      {PositionMetric::token_recall, Col::token_recall_trail_mean},
      {PositionMetric::output_rel_err, Col::output_rel_err_trail_mean},
  };
  for (const auto& [metric, column] : kTrailing) {
    const Stats st = cs.trailing[static_cast<size_t>(metric)];
    put(column, st.mean);
    if (metric == PositionMetric::coverage) put(Col::n_choice_trail, static_cast<double>(st.n));
  }
  put(Col::coverage_all_mean, cs.coverage_all_mean);

  const bool have_snr = in.snr != nullptr;
  SnrSummary s{};
  if (have_snr) s = summarize_snr(*in.snr, B, in.head_dim);
  for (const auto& info : summary_columns())
    if (info.agg == SummaryAgg::pooled_snr) put(info.column, have_snr ? snr_column_value(s, info.column) : kNaN);
  put(Col::signal_queries, static_cast<double>(counts.n_signal));
  put(Col::signal_recall, have_snr ? nan_if_empty(counts.n_signal, static_cast<double>(in.signal_hits) /
                                                                       std::max<int64_t>(counts.n_signal, 1))
                                   : kNaN);
  put(Col::signal_recall_pred, have_snr ? mean_retrieval_probability(s.snr_emp, counts.signal, K) : kNaN);
  put(Col::snr_synth, in.snr_synth);
  put(Col::planted_queries, static_cast<double>(counts.n_planted));
  put(Col::planted_recall,
      nan_if_empty(counts.n_planted, static_cast<double>(in.planted_hits) / std::max<int64_t>(counts.n_planted, 1)));
  const double pred_snr = in.synth ? in.snr_synth : s.snr_emp;
  put(Col::planted_recall_pred, counts.n_planted > 0 && (have_snr || in.synth) && router_is_gate(in.key.router)
                                    ? mean_retrieval_probability(pred_snr, counts.planted, K)
                                    : kNaN);
  return row;
}

void add_bucket_rows(const ConfigKey& key, const ConfigStats& cs, const std::vector<int64_t>& edges,
                     std::vector<BucketRow>* out) {
  for (size_t e = 0; e + 1 < edges.size() && e < cs.buckets.size(); ++e) {
    const auto& b = cs.buckets[e];
    const auto mean = [&](PositionMetric m) { return b[static_cast<size_t>(m)].mean; };
    BucketRow br;
    br.key = key;
    br.t_begin = edges[e];
    br.t_end = edges[e + 1];
    br.n_choice = b[static_cast<size_t>(PositionMetric::coverage)].n;
    br.coverage = mean(PositionMetric::coverage);
    br.kl = mean(PositionMetric::kl);
    br.block_recall = mean(PositionMetric::block_recall);
    br.token_recall = mean(PositionMetric::token_recall);
    br.output_rel_err = mean(PositionMetric::output_rel_err);
    out->push_back(br);
  }
}

}  // namespace moba::analysis
