// analyze's tables as text (analysis/report.h).
#include "analysis/report.h"

#include <cstdio>

#include "core/json_writer.h"

namespace moba::analysis {

namespace {

std::string index_or_all(int64_t i) { return i < 0 ? std::string("all") : std::to_string(i); }

}  // namespace

std::string rows_to_csv(const std::vector<SummaryRow>& rows) {
  std::string s;
  if (rows.empty()) return s;
  for (int c = 0; c < static_cast<int>(KeyColumn::count_); ++c)
    s += std::string(c ? "," : "") + key_column_name(static_cast<KeyColumn>(c));
  for (const auto& info : summary_columns()) s += std::string(",") + info.name;
  s += "\n";
  for (const auto& r : rows) {
    s += index_or_all(r.key.layer) + "," + index_or_all(r.key.head) + "," + scope_name(r.scope) + "," +
         router_name(r.key.router) + "," + std::to_string(r.key.block_size) + "," + std::to_string(r.key.top_k);
    for (const double v : r.values) s += "," + format_number(v);
    s += "\n";
  }
  return s;
}

std::string rows_to_json(const std::vector<SummaryRow>& rows) {
  std::string s = "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    JsonObject o;
    const auto index_or_null = [&](KeyColumn c, int64_t i) {
      if (i < 0) o.add_null(key_column_name(c));
      else o.add_integer(key_column_name(c), i);
    };
    index_or_null(KeyColumn::layer, r.key.layer);
    index_or_null(KeyColumn::head, r.key.head);
    o.add_string(key_column_name(KeyColumn::scope), scope_name(r.scope))
        .add_string(key_column_name(KeyColumn::router), router_name(r.key.router))
        .add_integer(key_column_name(KeyColumn::block_size), r.key.block_size)
        .add_integer(key_column_name(KeyColumn::top_k), r.key.top_k);
    for (const auto& info : summary_columns()) o.add_number(info.name, r.get(info.column));
    s += (i ? ",\n " : "\n ") + o.str();
  }
  return s + "\n]\n";
}

std::string buckets_to_csv(const std::vector<BucketRow>& rows) {
  std::string s = "layer,head,router,block_size,top_k,t_begin,t_end,n_choice,coverage_mean,kl_mean,block_recall_mean,"
                  "token_recall_mean,output_rel_err_mean\n";
  for (const auto& r : rows) {
    s += std::to_string(r.key.layer) + "," + std::to_string(r.key.head) + "," + router_name(r.key.router) + "," +
         std::to_string(r.key.block_size) + "," + std::to_string(r.key.top_k) + "," + std::to_string(r.t_begin) + "," +
         std::to_string(r.t_end) + "," + std::to_string(r.n_choice) + "," + format_number(r.coverage) + "," +
         format_number(r.kl) + "," + format_number(r.block_recall) + "," + format_number(r.token_recall) + "," +
         format_number(r.output_rel_err) + "\n";
  }
  return s;
}

std::string format_table(const std::vector<SummaryRow>& rows) {
  using C = SummaryColumn;
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-11s %5s %5s %8s %8s %8s %7s %7s %7s %9s %7s %7s %7s %7s\n", "router", "B", "k",
                "tok_spar", "coverage", "oracle", "KL", "recall", "tok@n", "out_err", "SNR", "SNRmod", "p_fail", "sig@k");
  s += buf;
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "%-11s %5lld %5d %8.3f %8.4f %8.4f %7.4f %7.3f %7.3f %9.2e %7.3f %7.3f %7.4f %7.3f\n",
                  router_name(r.key.router), static_cast<long long>(r.key.block_size), r.key.top_k,
                  r.get(C::sparsity_mean), r.get(C::coverage_mean), r.get(C::oracle_coverage_mean), r.get(C::kl_mean),
                  r.get(C::block_recall_mean), r.get(C::token_recall_mean), r.get(C::output_rel_err_mean),
                  r.get(C::snr_emp), r.get(C::snr_theory), r.get(C::p_fail_emp), r.get(C::signal_recall));
    s += buf;
  }
  return s;
}

}  // namespace moba::analysis
