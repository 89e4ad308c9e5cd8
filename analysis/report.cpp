// analyze's tables as text (analysis/report.h).
#include "analysis/report.h"

#include <cmath>
#include <cstdio>

#include "core/json_writer.h"

namespace moba::analysis {

namespace {

std::string index_or_all(int64_t i) { return i < 0 ? std::string("all") : std::to_string(i); }

}  // namespace

// The tables' writers append every cell to one string (append_number: no temporary per
// number); the bytes are those of format_number and JsonObject (B4's 800 rows of 57 numbers and
// 12,000 bucket rows are written at the end of the run, after the last head).
std::string summary_csv_header() {
  std::string s;
  for (int c = 0; c < static_cast<int>(KeyColumn::count_); ++c)
    s += std::string(c ? "," : "") + key_column_name(static_cast<KeyColumn>(c));
  for (const auto& info : summary_columns()) s += std::string(",") + info.name;
  return s;
}

std::string rows_to_csv(const std::vector<SummaryRow>& rows) {
  if (rows.empty()) return "";
  std::string s = summary_csv_header() + "\n";
  s.reserve(s.size() + rows.size() * (48 + 10 * kSummaryColumnCount));
  for (const auto& r : rows) {
    s += index_or_all(r.key.layer);
    s += ',';
    s += index_or_all(r.key.head);
    s += ',';
    s += scope_name(r.scope);
    s += ',';
    s += router_name(r.key.router);
    s += ',';
    s += std::to_string(r.key.block_size);
    s += ',';
    s += std::to_string(r.key.top_k);
    for (const double v : r.values) {
      s += ',';
      append_number(s, v);
    }
    s += '\n';
  }
  return s;
}

std::string rows_to_json(const std::vector<SummaryRow>& rows) {
  // JsonObject's layout, {"key": value, "key2": value2}, with each member's '"key": ' made once.
  const auto key = [](const char* name) { return json_string(name) + ": "; };
  const auto key_of = [&](KeyColumn c) { return key(key_column_name(c)); };
  const std::string k_layer = key_of(KeyColumn::layer), k_head = key_of(KeyColumn::head),
                    k_scope = key_of(KeyColumn::scope), k_router = key_of(KeyColumn::router),
                    k_block = key_of(KeyColumn::block_size), k_top = key_of(KeyColumn::top_k);
  std::vector<std::pair<std::string, SummaryColumn>> columns;
  for (const auto& info : summary_columns()) columns.emplace_back(", " + key(info.name), info.column);
  const auto index_or_null = [](std::string& s, int64_t i) { s += i < 0 ? std::string("null") : std::to_string(i); };
  std::string s = "[";
  s.reserve(rows.size() * (160 + 36 * columns.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    s += i ? ",\n {" : "\n {";
    s += k_layer;
    index_or_null(s, r.key.layer);
    s += ", " + k_head;
    index_or_null(s, r.key.head);
    s += ", " + k_scope + json_string(scope_name(r.scope));
    s += ", " + k_router + json_string(router_name(r.key.router));
    s += ", " + k_block + std::to_string(r.key.block_size);
    s += ", " + k_top + std::to_string(r.key.top_k);
    for (const auto& [prefix, column] : columns) {
      s += prefix;
      const double v = r.get(column);
      if (std::isfinite(v))
        append_number(s, v);
      else
        s += "null";
    }
    s += '}';
  }
  s += "\n]\n";
  return s;
}

std::string buckets_to_csv(const std::vector<BucketRow>& rows) {
  std::string s = "layer,head,router,block_size,top_k,t_begin,t_end,n_choice,coverage_mean,kl_mean,block_recall_mean,"
                  "token_recall_mean,output_rel_err_mean\n";
  s.reserve(s.size() + rows.size() * 110);
  for (const auto& r : rows) {
    for (const int64_t x : {static_cast<int64_t>(r.key.layer), r.key.head}) {
      s += std::to_string(x);
      s += ',';
    }
    s += router_name(r.key.router);
    for (const int64_t x : {r.key.block_size, static_cast<int64_t>(r.key.top_k), r.t_begin, r.t_end, r.n_choice}) {
      s += ',';
      s += std::to_string(x);
    }
    for (const double v : {r.coverage, r.kl, r.block_recall, r.token_recall, r.output_rel_err}) {
      s += ',';
      append_number(s, v);
    }
    s += '\n';
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
