#pragma once
// The layout of analysis.h5, written by analyze (analysis/analyze.h) and read back by
// ResultsFile (analysis/results_file.h). Both sides build and parse paths only here.
//
//   /                                          attributes dump, git_commit, device, layout
//                                              (kLayoutVersion), and the keep rule
//                                              (positions, positions_rule, n_configurations, ...)
//   /layers/L/heads/H/                         head_path: one group per analysed head, holding
//                                              the tables of EVERY analysed configuration,
//                                              one row per (B, k, router):
//       configurations  int32 [n_rows, 3]        block_size, top_k, router; attributes `columns`
//                                                (kConfigurationColumns) and `routers` (router
//                                                names, comma-separated: `router` indexes them)
//       summary         float64 [n_rows, n_cols] the summary columns of each row (summary.csv's
//                                                head rows, analysis/summary.h; attribute
//                                                `columns`)
//       bucket_edges    int32 [n_buckets + 1]    position-bucket edges (analyze's buckets)
//       bucket_n_choice int32 [n_rows, n_buckets]  queries with a choice per bucket
//       bucket_means    float32 [n_rows, n_buckets, 5]  means over queries with a choice,
//                                                columns bucket_metric_names() (attribute
//                                                `columns`); = buckets.csv's rows
//       signal_rank_hist   int32 [n_snr, kSnrMaxRank + 1]  gate routers only, one row per
//       snr_configurations int32 [n_snr, 2]      (block_size, router) of snr_configurations
//                                                (attributes `columns`, `routers` as above)
//   /layers/L/heads/H/B<b>_k<k>/<router>/      group_path(key): only where the keep rule keeps
//                                              per-position data (analysis/position_keep.h):
//       selected        int8|int16|int32 [n_tokens, top_k]  block indices, ascending, current
//                                                block included, -1 padded; the smallest signed
//                                                width holding n_blocks - 1 (files written
//                                                before keep rules: int32)
//       <metric>        float32 [n_tokens]       one per PositionMetric, NaN where undefined
//     selected and <metric> are chunked along axis 0 and deflate-compressed (shuffle +
//     deflate 4, lossless); readers see plain arrays.
//
// Layout 1 (files without the root attribute `layout`): no head tables; every configuration
// has its group, whose attributes are its summary columns and which holds its own
// bucket_edges [n_buckets + 1], bucket_n_choice [n_buckets] and bucket_means [n_buckets, 5];
// the SNR histograms are /layers/L/heads/H/B<b>/<router>/signal_rank_hist [kSnrMaxRank + 1].
// ResultsFile reads both.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/config_key.h"
#include "analysis/report.h"
#include "analysis/summary.h"
#include "core/h5_output.h"

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
constexpr const char* kAttrLayout = "layout";  // root attribute: the layout version
constexpr int kLayoutVersion = 2;
constexpr const char* kConfigurationsDataset = "configurations";
constexpr const char* kSummaryDataset = "summary";
constexpr const char* kSnrConfigurationsDataset = "snr_configurations";
constexpr const char* kConfigurationColumns = "block_size,top_k,router";
constexpr const char* kSnrConfigurationColumns = "block_size,router";
constexpr const char* kSelectedDataset = "selected";
constexpr const char* kSnrHistDataset = "signal_rank_hist";
constexpr const char* kBucketEdgesDataset = "bucket_edges";
constexpr const char* kBucketChoiceDataset = "bucket_n_choice";
constexpr const char* kBucketMeansDataset = "bucket_means";
// The columns of bucket_means, in order (BucketRow's means; buckets.csv's <name>_mean).
const std::vector<std::string>& bucket_metric_names();
// BucketRow's mean of column `i` of bucket_metric_names().
double bucket_row_mean(const BucketRow& row, size_t i);

// Root attributes saying what was kept (written by `moba analyze`, read by `moba info` and
// the viewer): positions (the level name), positions_rule (PositionKeep::describe()),
// n_configurations, n_with_arrays, n_with_selection, positions_budget_bytes (the default kept
// set's per-head budget, 0 = none), positions_kept_bytes (position_bytes summed over
// one kept head's pairs) (integers).
constexpr const char* kAttrPositions = "positions";
constexpr const char* kAttrPositionsRule = "positions_rule";
constexpr const char* kAttrNConfigurations = "n_configurations";
constexpr const char* kAttrNWithArrays = "n_with_arrays";
constexpr const char* kAttrNWithSelection = "n_with_selection";
constexpr const char* kAttrPositionsBudget = "positions_budget_bytes";
constexpr const char* kAttrPositionsKeptBytes = "positions_kept_bytes";

// The stored width of a selection over n_blocks blocks: the smallest of 8, 16, 32 bits
// holding [-1, n_blocks - 1].
int selection_bits(int64_t n_blocks);

std::string heads_path(int layer);                 // /layers/L/heads
std::string head_path(int layer, int64_t head);    // /layers/L/heads/H
std::string slot_name(int64_t block_size, int top_k);  // B<b>_k<k>
// Parses slot_name's form (b, k >= 1); false for anything else (e.g. the B<b> SNR groups).
bool parse_slot_name(const std::string& s, int64_t* block_size, int* top_k);
// Parses a whole non-negative decimal index (layer, head names); false for anything else.
bool parse_index_name(const std::string& s, int64_t* out);
std::string group_path(const ConfigKey& key);      // /layers/L/heads/H/B<b>_k<k>/<router>
std::string selected_path(const ConfigKey& key);   // group_path/selected
// Layout 1's SNR histogram: /layers/L/heads/H/B<b>/<router>/signal_rank_hist (k ignored).
std::string snr_hist_path(const ConfigKey& key);
std::string head_table_path(int layer, int64_t head, const char* dataset);  // head_path/dataset

// Names joined with commas (the `columns` and `routers` attributes), and split back.
std::string join_names(const std::vector<std::string>& names);
std::vector<std::string> split_names(const std::string& text);

// Writes one head's tables (the layout above): `rows` = the head's summary rows, one per
// (configuration, router), all of one (layer, head); `buckets` = their bucket rows, `n_buckets`
// per row in row order, in position order; `snr` = the head's SNR sums (gate routers).
// `routers` = the analysed routers: the `routers` attribute, which every key's router indexes.
void write_head_tables(H5Output& h5, const std::vector<SummaryRow>& rows, const std::vector<RouterKind>& routers,
                       const BucketRow* buckets, size_t n_buckets, const SnrSums* snr, size_t n_snr);
// Writes one configuration's kept per-position data, when asked: the metric arrays
// (`with_arrays`) and the selection (`with_selection`, stored at selection_bits(n_blocks)).
// `n_tokens` = arrays' length; `n_blocks` = ceil(n_tokens / block_size). Nothing (no group)
// when neither is asked.
void write_kept_arrays(H5Output& h5, const PositionArrays& arrays, int64_t n_tokens, bool with_arrays,
                       bool with_selection);
// The items write_kept_arrays would write, appended to `items` (pointing into `arrays`, which
// must outlive their write): a head's configurations go to H5Output::write_batch together, so
// that all their chunks are compressed side by side.
void kept_array_items(const PositionArrays& arrays, int64_t n_tokens, bool with_arrays, bool with_selection,
                      std::vector<H5Output::Item>* items);

}  // namespace moba::analysis
