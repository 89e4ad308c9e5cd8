#pragma once
// analyze's tables as text: summary.csv / aggregate.csv, summary.json, buckets.csv and the
// fixed-width table printed on stdout. Columns come from the catalogue (analysis/summary.h).
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/config_key.h"
#include "analysis/summary.h"

namespace moba::analysis {

// Per-position-bucket means (queries with a choice) of one head x router x configuration.
struct BucketRow {
  ConfigKey key;
  int64_t t_begin = 0, t_end = 0, n_choice = 0;
  double coverage = 0, kl = 0, block_recall = 0, token_recall = 0, output_rel_err = 0;
};

// CSV: the key columns layer, head, scope, router, block_size, top_k (negative layer / head
// as "all"), then every summary column in catalogue order; numbers by format_number
// (core/json_writer.h), NaN as "nan". Empty text for no rows.
std::string rows_to_csv(const std::vector<SummaryRow>& rows);
// summary.csv's header line (its key and summary columns), without the newline.
std::string summary_csv_header();
// JSON: an array of one-line objects with the same keys (negative layer / head and
// non-finite values as null).
std::string rows_to_json(const std::vector<SummaryRow>& rows);
std::string buckets_to_csv(const std::vector<BucketRow>& rows);

// A fixed-width text table of rows (one line per row): router, B, k, sparsity, coverage,
// oracle coverage, KL, block and token recall, output error, SNR (measured, model), p_fail,
// signal recall.
std::string format_table(const std::vector<SummaryRow>& rows);
// One line naming the summary column behind each of format_table's short headings.
std::string table_legend();

}  // namespace moba::analysis
