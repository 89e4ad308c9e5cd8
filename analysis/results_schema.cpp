// analysis.h5 paths and writers (analysis/results_schema.h).
#include "analysis/results_schema.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "core/h5_output.h"

namespace moba::analysis {

std::vector<float>& PositionArrays::metric(PositionMetric m) {
  return const_cast<std::vector<float>&>(static_cast<const PositionArrays*>(this)->metric(m));
}

const std::vector<float>& PositionArrays::metric(PositionMetric m) const {
  switch (m) {
    case PositionMetric::coverage: return coverage;
    case PositionMetric::kl: return kl;
    case PositionMetric::block_recall: return block_recall;
    case PositionMetric::token_recall: return token_recall;
    case PositionMetric::output_rel_err: return output_rel_err;
    case PositionMetric::output_cosine: return output_cosine;
    case PositionMetric::sparsity_token: return sparsity_token;
    case PositionMetric::block_density:
    case PositionMetric::count_: break;
  }
  return block_density;
}

std::string heads_path(int layer) { return std::string(kLayersGroup) + "/" + std::to_string(layer) + "/heads"; }

std::string head_path(int layer, int64_t head) { return heads_path(layer) + "/" + std::to_string(head); }

std::string slot_name(int64_t block_size, int top_k) {
  return "B" + std::to_string(block_size) + "_k" + std::to_string(top_k);
}

bool parse_index_name(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  *out = std::strtoll(s.c_str(), nullptr, 10);
  return true;
}

bool parse_slot_name(const std::string& s, int64_t* block_size, int* top_k) {
  if (s.size() < 4 || s[0] != 'B') return false;
  const size_t us = s.find("_k");
  if (us == std::string::npos) return false;
  int64_t b = 0, k = 0;
  if (!parse_index_name(s.substr(1, us - 1), &b) || !parse_index_name(s.substr(us + 2), &k) || b < 1 || k < 1 ||
      k > INT32_MAX)
    return false;
  *block_size = b;
  *top_k = static_cast<int>(k);
  return true;
}

std::string group_path(const ConfigKey& key) {
  return head_path(key.layer, key.head) + "/" + slot_name(key.block_size, key.top_k) + "/" + router_name(key.router);
}

std::string selected_path(const ConfigKey& key) { return group_path(key) + "/" + kSelectedDataset; }

std::string snr_hist_path(const ConfigKey& key) {
  return head_path(key.layer, key.head) + "/B" + std::to_string(key.block_size) + "/" + router_name(key.router) + "/" +
         kSnrHistDataset;
}

const std::vector<std::string>& bucket_metric_names() {
  static const std::vector<std::string> names{"coverage", "kl", "block_recall", "token_recall", "output_rel_err"};
  return names;
}

double bucket_row_mean(const BucketRow& r, size_t i) {
  switch (i) {
    case 0: return r.coverage;
    case 1: return r.kl;
    case 2: return r.block_recall;
    case 3: return r.token_recall;
    default: break;
  }
  return r.output_rel_err;
}

int selection_bits(int64_t n_blocks) {
  const int bits = int_bits_for(-1, std::max<int64_t>(0, n_blocks - 1));
  return bits == 0 ? 32 : bits;
}

std::string head_table_path(int layer, int64_t head, const char* dataset) {
  return head_path(layer, head) + "/" + dataset;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
  return s;
}

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

namespace {

// The index of `r` in `routers`; std::logic_error when absent (a row of a router not analysed).
int32_t router_index(const std::vector<RouterKind>& routers, RouterKind r) {
  for (size_t i = 0; i < routers.size(); ++i)
    if (routers[i] == r) return static_cast<int32_t>(i);
  throw std::logic_error(std::string("analysis.h5: router ") + router_name(r) + " is not among the analysed routers");
}

std::string router_names(const std::vector<RouterKind>& routers) {
  std::vector<std::string> names;
  for (const RouterKind r : routers) names.emplace_back(router_name(r));
  return join_names(names);
}

}  // namespace

void write_head_tables(H5Output& h5, const std::vector<SummaryRow>& rows, const std::vector<RouterKind>& routers,
                       const BucketRow* buckets, size_t n_buckets, const SnrSums* snr, size_t n_snr) {
  if (rows.empty()) return;
  const int layer = rows[0].key.layer;
  const int64_t head = rows[0].key.head;
  const auto path = [&](const char* dataset) { return head_table_path(layer, head, dataset); };
  const auto n_rows = static_cast<int64_t>(rows.size());
  const std::string routers_attr = router_names(routers);

  std::vector<int32_t> keys;
  std::vector<double> values;
  const auto& columns = summary_columns();
  std::vector<std::string> column_names;
  for (const auto& c : columns) column_names.emplace_back(c.name);
  for (const SummaryRow& row : rows) {
    if (row.key.layer != layer || row.key.head != head)
      throw std::logic_error("analysis.h5: one head's tables got a row of " + row.key.name());
    keys.push_back(static_cast<int32_t>(row.key.block_size));
    keys.push_back(row.key.top_k);
    keys.push_back(router_index(routers, row.key.router));
    for (const auto& c : columns) values.push_back(row.get(c.column));
  }
  const std::string configs = path(kConfigurationsDataset), summary = path(kSummaryDataset);
  h5.write_i32(configs, {n_rows, 3}, keys.data());
  h5.set_string(configs, "columns", kConfigurationColumns);
  h5.set_string(configs, "routers", routers_attr);
  h5.write_f64(summary, {n_rows, static_cast<int64_t>(columns.size())}, values.data());
  h5.set_string(summary, "columns", join_names(column_names));

  if (n_buckets > 0) {
    const std::vector<std::string>& names = bucket_metric_names();
    std::vector<int32_t> edges, n_choice;
    std::vector<float> means;
    for (size_t i = 0; i < n_buckets; ++i) edges.push_back(static_cast<int32_t>(buckets[i].t_begin));
    edges.push_back(static_cast<int32_t>(buckets[n_buckets - 1].t_end));
    for (size_t r = 0; r < rows.size(); ++r)
      for (size_t i = 0; i < n_buckets; ++i) {
        const BucketRow& b = buckets[r * n_buckets + i];
        if (b.t_begin != edges[i] || b.t_end != edges[i + 1])
          throw std::logic_error("analysis.h5: the bucket edges of " + rows[r].key.name() + " differ from its head's");
        n_choice.push_back(static_cast<int32_t>(b.n_choice));
        for (size_t m = 0; m < names.size(); ++m) means.push_back(static_cast<float>(bucket_row_mean(b, m)));
      }
    const auto nb = static_cast<int64_t>(n_buckets);
    h5.write_i32(path(kBucketEdgesDataset), {nb + 1}, edges.data());
    h5.write_i32(path(kBucketChoiceDataset), {n_rows, nb}, n_choice.data());
    h5.write_f32(path(kBucketMeansDataset), {n_rows, nb, static_cast<int64_t>(names.size())}, means.data());
    h5.set_string(path(kBucketMeansDataset), "columns", join_names(names));
  }

  if (n_snr > 0) {
    std::vector<int32_t> snr_keys, hists;
    for (size_t i = 0; i < n_snr; ++i) {
      snr_keys.push_back(static_cast<int32_t>(snr[i].key.block_size));
      snr_keys.push_back(router_index(routers, snr[i].key.router));
      const auto& hist = snr[i].stats.rank_hist;
      for (const int64_t c : hist) hists.push_back(static_cast<int32_t>(c));
    }
    const auto n = static_cast<int64_t>(n_snr);
    const std::string keys_path = path(kSnrConfigurationsDataset);
    h5.write_i32(keys_path, {n, 2}, snr_keys.data());
    h5.set_string(keys_path, "columns", kSnrConfigurationColumns);
    h5.set_string(keys_path, "routers", routers_attr);
    h5.write_i32(path(kSnrHistDataset), {n, static_cast<int64_t>(hists.size()) / n}, hists.data());
  }
}

void kept_array_items(const PositionArrays& arrays, int64_t n_tokens, bool with_arrays, bool with_selection,
                      std::vector<H5Output::Item>* items) {
  const std::string base = group_path(arrays.key);
  if (with_selection) {
    const int64_t n_blocks = (n_tokens + arrays.key.block_size - 1) / arrays.key.block_size;
    items->push_back(H5Output::Item::ints(base + "/" + kSelectedDataset, {n_tokens, arrays.key.top_k},
                                          arrays.selected.data(), selection_bits(n_blocks),
                                          compressed_storage(arrays.key.top_k)));
  }
  if (with_arrays)
    for (const auto& m : position_metrics())
      items->push_back(H5Output::Item::floats(base + "/" + m.name, {n_tokens}, arrays.metric(m.metric).data(),
                                              compressed_storage(1)));
}

void write_kept_arrays(H5Output& h5, const PositionArrays& arrays, int64_t n_tokens, bool with_arrays,
                       bool with_selection) {
  // The kept arrays in one batch: their chunks are compressed side by side.
  std::vector<H5Output::Item> items;
  kept_array_items(arrays, n_tokens, with_arrays, with_selection, &items);
  if (!items.empty()) h5.write_batch(items);
}

}  // namespace moba::analysis
