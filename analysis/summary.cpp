// The column and metric catalogues and table-driven pooling (analysis/summary.h).
#include "analysis/summary.h"

#include <cmath>
#include <limits>

namespace moba::analysis {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using C = SummaryColumn;
using A = SummaryAgg;

// name, label, aggregation, weight, share, headline, format
const std::vector<SummaryColumnInfo>& column_table() {
  static const std::vector<SummaryColumnInfo> t{
      {C::kv_head, "kv_head", "KV head", A::per_head, C::count_, false, false, "%.0f"},
      {C::n_tokens, "n_tokens", "n_tokens", A::mean, C::count_, false, false, "%.0f"},
      {C::n_blocks, "n_blocks", "n_blocks", A::mean, C::count_, false, false, "%.0f"},
      {C::sparsity_nominal, "sparsity_nominal", "nominal sparsity 1 - kB/T", A::mean, C::count_, false, false, "%.4f"},
      {C::n_queries, "n_queries", "queries", A::sum, C::count_, false, false, "%.0f"},
      {C::n_choice, "n_choice", "queries with a choice", A::sum, C::count_, false, false, "%.0f"},
      {C::sparsity_mean, "sparsity_mean", "sparsity (token, causal)", A::weighted_mean, C::n_choice, true, true, "%.4f"},
      {C::sparsity_p50, "sparsity_p50", "sparsity p50", A::per_head, C::count_, true, false, "%.4f"},
      {C::block_density_mean, "block_density_mean", "block density", A::weighted_mean, C::n_choice, true, false, "%.4f"},
      {C::selected_mean, "selected_blocks_mean", "selected blocks |S_t| (realised k)", A::weighted_mean, C::n_choice, false, false, "%.2f"},
      {C::coverage_mean, "coverage_mean", "coverage", A::weighted_mean, C::n_choice, true, true, "%.4f"},
      {C::coverage_p5, "coverage_p5", "coverage p5", A::per_head, C::count_, true, false, "%.4f"},
      {C::coverage_p50, "coverage_p50", "coverage p50", A::per_head, C::count_, true, false, "%.4f"},
      {C::oracle_coverage_mean, "oracle_coverage_mean", "oracle coverage", A::weighted_mean, C::n_choice, true, true, "%.4f"},
      {C::kl_mean, "kl_mean", "KL -ln R", A::weighted_mean, C::n_choice, false, true, "%.4f"},
      {C::kl_p50, "kl_p50", "KL p50", A::per_head, C::count_, false, false, "%.4f"},
      {C::kl_p95, "kl_p95", "KL p95", A::per_head, C::count_, false, false, "%.4f"},
      {C::block_recall_mean, "block_recall_mean", "block recall", A::weighted_mean, C::n_choice, true, true, "%.4f"},
      {C::block_recall_p5, "block_recall_p5", "block recall p5", A::per_head, C::count_, true, false, "%.4f"},
      {C::block_recall_p50, "block_recall_p50", "block recall p50", A::per_head, C::count_, true, false, "%.4f"},
      {C::token_recall_mean, "token_recall_mean", "token recall", A::weighted_mean, C::n_choice, true, true, "%.4f"},
      {C::token_recall_p5, "token_recall_p5", "token recall p5", A::per_head, C::count_, true, false, "%.4f"},
      {C::token_recall_p50, "token_recall_p50", "token recall p50", A::per_head, C::count_, true, false, "%.4f"},
      {C::output_rel_err_mean, "output_rel_err_mean", "output rel err", A::weighted_mean, C::n_choice, false, true, "%.4f"},
      {C::output_rel_err_p50, "output_rel_err_p50", "output rel err p50", A::per_head, C::count_, false, false, "%.4f"},
      {C::output_rel_err_p95, "output_rel_err_p95", "output rel err p95", A::per_head, C::count_, false, false, "%.4f"},
      {C::output_cosine_mean, "output_cosine_mean", "output cosine", A::weighted_mean, C::n_choice, false, false, "%.4f"},
      {C::output_cosine_p5, "output_cosine_p5", "output cosine p5", A::per_head, C::count_, false, false, "%.4f"},
      {C::n_choice_trail, "n_choice_trail", "trailing queries with a choice", A::sum, C::count_, false, false, "%.0f"},
      {C::coverage_trail_mean, "coverage_trail_mean", "coverage (trailing)", A::weighted_mean, C::n_choice_trail, true, false, "%.4f"},
      {C::kl_trail_mean, "kl_trail_mean", "KL (trailing)", A::weighted_mean, C::n_choice_trail, false, false, "%.4f"},
      {C::block_recall_trail_mean, "block_recall_trail_mean", "block recall (trailing)", A::weighted_mean, C::n_choice_trail, true, false, "%.4f"},
      {C::token_recall_trail_mean, "token_recall_trail_mean", "token recall (trailing)", A::weighted_mean, C::n_choice_trail, true, false, "%.4f"},
      {C::output_rel_err_trail_mean, "output_rel_err_trail_mean", "output rel err (trailing)", A::weighted_mean, C::n_choice_trail, false, false, "%.4f"},
      {C::coverage_all_mean, "coverage_all_mean", "coverage (all queries)", A::weighted_mean, C::n_queries, true, false, "%.4f"},
      {C::snr_emp, "snr_emp", "SNR measured", A::pooled_snr, C::count_, false, true, "%.3f"},
      {C::snr_theory, "snr_theory", "SNR model", A::pooled_snr, C::count_, false, true, "%.3f"},
      {C::p_fail_emp, "p_fail_emp", "p_fail measured", A::pooled_snr, C::count_, true, true, "%.4f"},
      {C::p_fail_theory, "p_fail_theory", "p_fail model", A::pooled_snr, C::count_, true, false, "%.4f"},
      {C::snr_mean_d, "snr_mean_d", "mean gate-score gap", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::snr_std_d, "snr_std_d", "std gate-score gap", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::delta_mu, "delta_mu", "delta_mu", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::sigma, "sigma", "sigma", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::sigma2_d, "sigma2_d", "sigma^2 d", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::mu_cluster_rel, "mu_cluster_rel", "mu_cluster / delta_mu", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::cluster_excess, "cluster_excess", "cluster excess", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::delta_mu_eff, "delta_mu_eff", "delta_mu_eff", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::delta_mu_eff_d, "delta_mu_eff_d", "delta_mu_eff sqrt(d)", A::pooled_snr, C::count_, false, false, "%.4f"},
      {C::snr_queries, "snr_queries", "SNR queries", A::pooled_snr, C::count_, false, false, "%.0f"},
      {C::signal_rank1_share, "signal_rank1_share", "signal block ranked first", A::pooled_snr, C::count_, true, false, "%.4f"},
      {C::signal_queries, "signal_queries", "signal queries", A::sum, C::count_, false, false, "%.0f"},
      {C::signal_recall, "signal_recall", "signal recall", A::weighted_mean, C::signal_queries, true, false, "%.4f"},
      {C::signal_recall_pred, "signal_recall_pred", "signal recall (model)", A::weighted_mean, C::signal_queries, true, false, "%.4f"},
      {C::snr_synth, "snr_synth", "SNR synth", A::weighted_mean, C::n_choice, false, false, "%.3f"},
      {C::planted_queries, "planted_queries", "planted queries", A::sum, C::count_, false, false, "%.0f"},
      {C::planted_recall, "planted_recall", "planted recall", A::weighted_mean, C::planted_queries, true, false, "%.4f"},
      {C::planted_recall_pred, "planted_recall_pred", "planted recall (model)", A::weighted_mean, C::planted_queries, true, false, "%.4f"},
  };
  return t;
}

using M = PositionMetric;

const std::vector<PositionMetricInfo>& metric_table() {
  static const std::vector<PositionMetricInfo> t{
      {M::coverage, "coverage", "coverage R", PlotRange::share, true, true},
      {M::kl, "kl", "KL -ln R", PlotRange::data, true, true},
      {M::block_recall, "block_recall", "block recall", PlotRange::share, false, true},
      {M::token_recall, "token_recall", "token recall", PlotRange::share, true, false},
      {M::output_rel_err, "output_rel_err", "output rel err", PlotRange::data, true, true},
      {M::output_cosine, "output_cosine", "output cosine", PlotRange::data_up_to_one, true, false},
      {M::sparsity_token, "sparsity_token", "token sparsity", PlotRange::share, true, false},
      {M::block_density, "block_density", "block density", PlotRange::share, true, false},
  };
  return t;
}

}  // namespace

const std::vector<SummaryColumnInfo>& summary_columns() { return column_table(); }

const SummaryColumnInfo& summary_column(SummaryColumn c) { return column_table()[static_cast<size_t>(c)]; }

bool parse_summary_column(const std::string& name, SummaryColumn* out) {
  for (const auto& info : column_table())
    if (name == info.name) {
      *out = info.column;
      return true;
    }
  return false;
}

double snr_column_value(const SnrSummary& s, SummaryColumn c) {
  switch (c) {
    case C::snr_emp: return s.snr_emp;
    case C::snr_theory: return s.snr_theory;
    case C::p_fail_emp: return s.p_fail_emp;
    case C::p_fail_theory: return s.p_fail_theory;
    case C::snr_mean_d: return s.mean_d;
    case C::snr_std_d: return s.std_d;
    case C::delta_mu: return s.delta_mu;
    case C::sigma: return s.sigma;
    case C::sigma2_d: return s.sigma2_d;
    case C::mu_cluster_rel: return s.mu_cluster_rel;
    case C::cluster_excess: return s.cluster_excess;
    case C::delta_mu_eff: return s.delta_mu_eff;
    case C::delta_mu_eff_d: return s.delta_mu_eff_d;
    case C::snr_queries: return static_cast<double>(s.n_queries);
    case C::signal_rank1_share: return s.rank1_share;
    default: return kNaN;
  }
}

SummaryRow::SummaryRow() { values.fill(kNaN); }

std::vector<SummaryRow> aggregate_rows(const std::vector<SummaryRow>& head_rows, const std::vector<SnrSums>& snr,
                                       int64_t head_dim, bool per_layer) {
  struct Group {
    SummaryRow row;
    std::array<double, kSummaryColumnCount> wsum{}, sum{};
    SnrStats stats;
    bool have_snr = false;
  };
  const auto& columns = column_table();
  std::vector<Group> groups;
  for (const SummaryRow& r : head_rows) {
    ConfigKey key = r.key;
    key.layer = per_layer ? r.key.layer : -1;
    key.head = -1;
    Group* g = nullptr;
    for (auto& x : groups)
      if (x.row.key == key) g = &x;
    if (!g) {
      groups.push_back(Group());
      g = &groups.back();
      g->row.key = key;
      g->row.scope = per_layer ? Scope::layer : Scope::overall;
      // Whether this router has gate scores at this B anywhere in the run.
      for (const auto& s : snr)
        if (s.key.router == key.router && s.key.block_size == key.block_size) g->have_snr = true;
    }
    for (const auto& info : columns) {
      const size_t i = static_cast<size_t>(info.column);
      const double v = r.values[i];
      double w = 0;
      switch (info.agg) {
        case A::sum:
          if (std::isfinite(v)) g->sum[i] += v;
          g->wsum[i] = 1;
          continue;
        case A::mean: w = 1.0; break;
        case A::weighted_mean: w = r.get(info.weight); break;
        case A::per_head:
        case A::pooled_snr: continue;
      }
      if (std::isfinite(v) && std::isfinite(w) && w > 0) {
        g->sum[i] += w * v;
        g->wsum[i] += w;
      }
    }
  }
  std::vector<SummaryRow> out;
  for (auto& g : groups) {
    for (const auto& s : snr) {
      if (s.key.router != g.row.key.router || s.key.block_size != g.row.key.block_size) continue;
      if (per_layer && s.key.layer != g.row.key.layer) continue;
      g.stats.merge(s.stats);
    }
    const SnrSummary ss = summarize_snr(g.stats, g.row.key.block_size, head_dim);
    for (const auto& info : columns) {
      const size_t i = static_cast<size_t>(info.column);
      double v = kNaN;
      switch (info.agg) {
        case A::per_head: break;
        case A::pooled_snr: v = g.have_snr ? snr_column_value(ss, info.column) : kNaN; break;
        case A::sum: v = g.wsum[i] > 0 ? g.sum[i] : kNaN; break;
        case A::mean:
        case A::weighted_mean: v = g.wsum[i] > 0 ? g.sum[i] / g.wsum[i] : kNaN; break;
      }
      g.row.values[i] = v;
    }
    out.push_back(std::move(g.row));
  }
  return out;
}

const std::vector<PositionMetricInfo>& position_metrics() { return metric_table(); }

const PositionMetricInfo& position_metric(PositionMetric m) { return metric_table()[static_cast<size_t>(m)]; }

const PositionMetricInfo* find_position_metric(const std::string& name) {
  for (const auto& info : metric_table())
    if (name == info.name) return &info;
  return nullptr;
}

std::vector<std::string> headline_position_metrics() {
  std::vector<std::string> names;
  for (const auto& info : metric_table())
    if (info.headline) names.push_back(info.name);
  return names;
}

}  // namespace moba::analysis
