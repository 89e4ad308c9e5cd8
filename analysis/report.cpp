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

namespace {

// The text table's columns after router, B and k: its short heading, the summary column it
// shows, and the printf formats of heading and value (one space before each).
struct TableColumn {
  const char* heading;
  SummaryColumn column;
  const char* heading_format;
  const char* value_format;
};
constexpr TableColumn kTableColumns[] = {
    {"tok_spar", SummaryColumn::sparsity_mean, " %8s", " %8.3f"},
    {"k_sel", SummaryColumn::selected_mean, " %6s", " %6.2f"},
    {"coverage", SummaryColumn::coverage_mean, " %8s", " %8.4f"},
    {"oracle", SummaryColumn::oracle_coverage_mean, " %8s", " %8.4f"},
    {"KL", SummaryColumn::kl_mean, " %7s", " %7.4f"},
    {"recall", SummaryColumn::block_recall_mean, " %7s", " %7.3f"},
    {"tok@n", SummaryColumn::token_recall_mean, " %7s", " %7.3f"},
    {"out_err", SummaryColumn::output_rel_err_mean, " %9s", " %9.2e"},
    {"SNR", SummaryColumn::snr_emp, " %7s", " %7.3f"},
    {"SNRmod", SummaryColumn::snr_theory, " %7s", " %7.3f"},
    {"p_fail", SummaryColumn::p_fail_emp, " %7s", " %7.4f"},
    {"sig@k", SummaryColumn::signal_recall, " %7s", " %7.3f"},
};

}  // namespace

std::string format_table(const std::vector<SummaryRow>& rows) {
  std::string s;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%-14s %5s %5s", "router", "B", "k");
  s += buf;
  for (const auto& c : kTableColumns) {
    std::snprintf(buf, sizeof buf, c.heading_format, c.heading);
    s += buf;
  }
  s += "\n";
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "%-14s %5lld %5d", router_name(r.key.router),
                  static_cast<long long>(r.key.block_size), r.key.top_k);
    s += buf;
    for (const auto& c : kTableColumns) {
      std::snprintf(buf, sizeof buf, c.value_format, r.get(c.column));
      s += buf;
    }
    s += "\n";
  }
  return s;
}

std::string table_legend() {
  std::string s = "columns (docs/metrics.md#names):";
  for (const auto& c : kTableColumns) s += std::string(" ") + c.heading + " = " + summary_column(c.column).name + ",";
  s.back() = '\n';
  return s;
}

}  // namespace moba::analysis
