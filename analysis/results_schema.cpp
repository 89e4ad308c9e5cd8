// analysis.h5 paths and writers (analysis/results_schema.h).
#include "analysis/results_schema.h"

#include <algorithm>
#include <cstdlib>

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

void write_configuration(H5Output& h5, const PositionArrays& arrays, const SummaryRow& row, const BucketRow* buckets,
                         size_t n_buckets, int64_t n_tokens, bool with_arrays, bool with_selection) {
  const std::string base = group_path(arrays.key);
  std::vector<std::pair<std::string, double>> attrs;
  for (const auto& c : summary_columns()) attrs.emplace_back(c.name, row.get(c.column));
  h5.set_numbers(base, attrs);

  const std::vector<std::string>& names = bucket_metric_names();
  std::vector<int32_t> edges, n_choice;
  std::vector<float> means;
  for (size_t i = 0; i < n_buckets; ++i) {
    const BucketRow& r = buckets[i];
    edges.push_back(static_cast<int32_t>(r.t_begin));
    n_choice.push_back(static_cast<int32_t>(r.n_choice));
    for (size_t m = 0; m < names.size(); ++m) means.push_back(static_cast<float>(bucket_row_mean(r, m)));
  }
  if (n_buckets > 0) {
    edges.push_back(static_cast<int32_t>(buckets[n_buckets - 1].t_end));
    const auto nb = static_cast<int64_t>(n_buckets);
    h5.write_i32(base + "/" + kBucketEdgesDataset, {nb + 1}, edges.data());
    h5.write_i32(base + "/" + kBucketChoiceDataset, {nb}, n_choice.data());
    h5.write_f32(base + "/" + kBucketMeansDataset, {nb, static_cast<int64_t>(names.size())}, means.data());
    std::string columns;
    for (const auto& n : names) columns += (columns.empty() ? "" : ",") + n;
    h5.set_string(base + "/" + kBucketMeansDataset, "columns", columns);
  }

  // The kept arrays in one batch: their chunks are compressed side by side.
  std::vector<H5Output::Item> items;
  if (with_selection) {
    const int64_t n_blocks = (n_tokens + arrays.key.block_size - 1) / arrays.key.block_size;
    items.push_back(H5Output::Item::ints(base + "/" + kSelectedDataset, {n_tokens, arrays.key.top_k},
                                         arrays.selected.data(), selection_bits(n_blocks),
                                         compressed_storage(arrays.key.top_k)));
  }
  if (with_arrays)
    for (const auto& m : position_metrics())
      items.push_back(H5Output::Item::floats(base + "/" + m.name, {n_tokens}, arrays.metric(m.metric).data(),
                                             compressed_storage(1)));
  if (!items.empty()) h5.write_batch(items);
}

void write_snr_hist(H5Output& h5, const SnrSums& sums) {
  const auto& hist = sums.stats.rank_hist;
  const std::vector<int32_t> h32(hist.begin(), hist.end());
  h5.write_i32(snr_hist_path(sums.key), {static_cast<int64_t>(h32.size())}, h32.data());
}

}  // namespace moba::analysis
