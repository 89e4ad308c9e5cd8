#pragma once
// What analyze measures, as two catalogues, and the summary rows built from them.
//
// Summary columns: one value per (head, router, B, k) row of summary.csv, in column order.
// Each column states how layer / overall rows pool it (SummaryAgg). Per-position metrics:
// the [n_tokens] arrays of analysis.h5, with the viewer's label and plot range.
//
// Everything that prints, writes, pools or labels these (analysis/report.h, analysis.h5
// attributes, `moba demo`, the viewer) reads these tables; no other list of names exists.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/config_key.h"
#include "analysis/snr.h"

namespace moba::analysis {

// Summary columns in CSV order.
enum class SummaryColumn {
  kv_head, n_tokens, n_blocks, sparsity_nominal, n_queries, n_choice,
  sparsity_mean, sparsity_p50, block_density_mean, selected_mean,
  coverage_mean, coverage_p5, coverage_p50, oracle_coverage_mean,
  kl_mean, kl_p50, kl_p95,
  block_recall_mean, block_recall_p5, block_recall_p50,
  token_recall_mean, token_recall_p5, token_recall_p50,
  output_rel_err_mean, output_rel_err_p50, output_rel_err_p95,
  output_cosine_mean, output_cosine_p5,
  n_choice_trail, coverage_trail_mean, kl_trail_mean, block_recall_trail_mean, token_recall_trail_mean,
  output_rel_err_trail_mean, coverage_all_mean,
  snr_emp, snr_theory, p_fail_emp, p_fail_theory, snr_mean_d, snr_std_d, delta_mu, sigma, sigma2_d,
  mu_cluster_rel, cluster_excess, delta_mu_eff, delta_mu_eff_d, snr_queries, signal_rank1_share,
  signal_queries, signal_recall, signal_recall_pred, snr_synth,
  planted_queries, planted_recall, planted_recall_pred,
  count_
};
constexpr int kSummaryColumnCount = static_cast<int>(SummaryColumn::count_);

// How layer / overall rows pool a column over head rows.
enum class SummaryAgg {
  per_head,       // NaN in pooled rows (quantiles, kv_head)
  sum,            // a count: sum of the finite head values
  mean,           // a property of the layer and configuration: plain mean of the finite values
  weighted_mean,  // mean of the finite values weighted by the head row's `weight` column
                  // (heads whose weight is not finite and > 0 are skipped)
  pooled_snr,     // recomputed from the pooled SNR sums (summarize_snr); NaN for routers
                  // without gate scores
};

struct SummaryColumnInfo {
  SummaryColumn column;
  const char* name;       // CSV / JSON / HDF5 attribute name
  const char* label;      // human label (viewer)
  SummaryAgg agg;
  SummaryColumn weight;   // weighted_mean only
  bool share;             // a share in [0, 1]
  bool headline;          // shown by default (viewer table and numbers)
  const char* format;     // printf format of one value in the viewer
};
const SummaryColumnInfo& summary_column(SummaryColumn c);
const std::vector<SummaryColumnInfo>& summary_columns();  // in CSV order
// false when `name` is not a summary column.
bool parse_summary_column(const std::string& name, SummaryColumn* out);

// The value of a pooled_snr column in `s` (snr_queries as a double).
double snr_column_value(const SnrSummary& s, SummaryColumn c);

// One summary row: its key, its scope, and one value per column (NaN where undefined).
// Pooled rows: key.head = -1; overall rows also key.layer = -1.
struct SummaryRow {
  ConfigKey key;
  Scope scope = Scope::head;
  std::array<double, kSummaryColumnCount> values;
  SummaryRow();  // every value NaN
  double get(SummaryColumn c) const { return values[static_cast<size_t>(c)]; }
  void set(SummaryColumn c, double v) { values[static_cast<size_t>(c)] = v; }
};

// SNR sums of one (layer, head, B, gate router), for pooling; key.top_k = 0 (SNR does not
// depend on k).
struct SnrSums {
  ConfigKey key;
  SnrStats stats;
};

// Pools head rows into layer rows (per_layer) or overall rows, by each column's SummaryAgg.
// Groups (layer or all, router, B, k) appear in first-seen order. Pooled SNR columns merge
// the `snr` sums of the group's router and B (and layer, per_layer), summarised at head_dim.
std::vector<SummaryRow> aggregate_rows(const std::vector<SummaryRow>& head_rows, const std::vector<SnrSums>& snr,
                                       int64_t head_dim, bool per_layer);

// Per-position metrics: the float32 [n_tokens] datasets of one configuration in analysis.h5.
enum class PositionMetric {
  coverage, kl, block_recall, token_recall, output_rel_err, output_cosine, sparsity_token, block_density,
  count_
};
constexpr int kPositionMetricCount = static_cast<int>(PositionMetric::count_);

// The viewer's plot range of a metric.
enum class PlotRange {
  share,          // [0, 1]
  data,           // [min(0, data min), 99.5th percentile of the data]
  data_up_to_one  // lower end from the data, upper end 1
};

struct PositionMetricInfo {
  PositionMetric metric;
  const char* name;     // dataset name
  const char* label;    // viewer label
  PlotRange range;
  bool oracle_overlay;  // the oracle's values are a different quantity worth drawing beside
                        // the router's (not block recall: the oracle against itself is 1)
  bool headline;        // plotted by default
};
const PositionMetricInfo& position_metric(PositionMetric m);
const std::vector<PositionMetricInfo>& position_metrics();  // in display order
// nullptr when `name` is not a known metric.
const PositionMetricInfo* find_position_metric(const std::string& name);
// The names of the headline metrics, in display order.
std::vector<std::string> headline_position_metrics();

}  // namespace moba::analysis
