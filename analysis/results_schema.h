#pragma once
// The layout of analysis.h5, written by analyze (analysis/analyze.h) and read back by
// ResultsFile (analysis/results_file.h). Both sides build and parse paths only here.
//
//   /                                          attributes dump, git_commit, device
//   /layers/L/heads/H/B<b>_k<k>/<router>/      group_path(key); attributes: the summary
//                                              columns of that row (analysis/summary.h)
//       selected        int32 [n_tokens, top_k]  block indices, ascending, current block
//                                                included, -1 padded
//       <metric>        float32 [n_tokens]       one per PositionMetric, NaN where undefined
//   /layers/L/heads/H/B<b>/<router>/signal_rank_hist  int32 [kSnrMaxRank + 1]
//                                              snr_hist_path(key), gate routers only
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/config_key.h"
#include "analysis/summary.h"

namespace moba {
class H5Output;
}

namespace moba::analysis {

// Per-position arrays of one configuration (length n_tokens; NaN where a metric is
// undefined), and the selection [n_tokens, top_k].
struct PositionArrays {
  ConfigKey key;
  std::vector<int32_t> selected;
  std::vector<float> coverage, kl, block_recall, token_recall, output_rel_err, output_cosine,
      sparsity_token, block_density;
  std::vector<uint8_t> choice;  // 1 where t has a choice (not written)
  std::vector<float>& metric(PositionMetric m);
  const std::vector<float>& metric(PositionMetric m) const;
};

constexpr const char* kLayersGroup = "/layers";
constexpr const char* kSelectedDataset = "selected";
constexpr const char* kSnrHistDataset = "signal_rank_hist";

std::string heads_path(int layer);                 // /layers/L/heads
std::string head_path(int layer, int64_t head);    // /layers/L/heads/H
std::string slot_name(int64_t block_size, int top_k);  // B<b>_k<k>
// Parses slot_name's form (b, k >= 1); false for anything else (e.g. the B<b> SNR groups).
bool parse_slot_name(const std::string& s, int64_t* block_size, int* top_k);
// Parses a whole non-negative decimal index (layer, head names); false for anything else.
bool parse_index_name(const std::string& s, int64_t* out);
std::string group_path(const ConfigKey& key);      // /layers/L/heads/H/B<b>_k<k>/<router>
std::string selected_path(const ConfigKey& key);   // group_path/selected
std::string snr_hist_path(const ConfigKey& key);   // /layers/L/heads/H/B<b>/<router>/signal_rank_hist (k ignored)

// Writes one configuration: selected, every position metric, and the row's summary columns
// as number attributes of the group. `n_tokens` = arrays' length.
void write_configuration(H5Output& h5, const PositionArrays& arrays, const SummaryRow& row, int64_t n_tokens);
// Writes the SNR rank histogram of one (layer, head, B, gate router).
void write_snr_hist(H5Output& h5, const SnrSums& sums);

}  // namespace moba::analysis
