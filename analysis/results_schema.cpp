// analysis.h5 paths and writers (analysis/results_schema.h).
#include "analysis/results_schema.h"

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

void write_configuration(H5Output& h5, const PositionArrays& arrays, const SummaryRow& row, int64_t n_tokens) {
  const std::string base = group_path(arrays.key);
  h5.write_i32(base + "/" + kSelectedDataset, {n_tokens, arrays.key.top_k}, arrays.selected.data());
  for (const auto& m : position_metrics())
    h5.write_f32(base + "/" + m.name, {n_tokens}, arrays.metric(m.metric).data());
  for (const auto& c : summary_columns()) h5.set_number(base, c.name, row.get(c.column));
}

void write_snr_hist(H5Output& h5, const SnrSums& sums) {
  const auto& hist = sums.stats.rank_hist;
  const std::vector<int32_t> h32(hist.begin(), hist.end());
  h5.write_i32(snr_hist_path(sums.key), {static_cast<int64_t>(h32.size())}, h32.data());
}

}  // namespace moba::analysis
