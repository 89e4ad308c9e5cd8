#pragma once
// Reading back what `moba analyze ... --out DIR` wrote (experiments/cmd_analyze.cpp), as plain
// structs: the list of analysed configurations in DIR/analysis.h5, their per-position arrays,
// and the rows of DIR/summary.csv. The viewer (gui/) draws these; nothing here knows about it.
//
// analysis.h5 layout: analysis/results_schema.h (its path functions are the only ones used
// here); both its layouts are read. Any float32 [n_tokens] dataset of a configuration group is
// loaded as a metric.
//
// Every number derived here (bucket means, the selection-vs-oracle comparison) is one the CLI
// also reports: bucket means use analyze's edges and "queries with a choice" rule, so at 16
// buckets they equal DIR/buckets.csv.
//
// Errors (core/errors.h), naming the file (and the dataset or CSV line):
//   FileNotFoundError  DIR or analysis.h5 missing; FormatError  not HDF5, no /layers, a
//   malformed CSV; ShapeError  a dataset's shape disagrees with the configuration.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "analysis/config_key.h"

namespace moba {
class H5Input;
}

namespace moba::analysis {

// Means of `values` over the queries with a choice (analysis/metrics.h has_choice) in each
// position bucket (analysis/metrics.h bucket_edges), NaN for an empty bucket.
struct BucketSeries {
  std::vector<int64_t> edges;  // n + 1
  std::vector<float> mean;     // n
};

// What analysis.h5 holds for one configuration (analysis/position_keep.h decides): the
// selection, per-position metric arrays, stored bucket curves (files written before keep
// rules have no bucket curves, and always the arrays and the selection).
struct StoredLevels {
  bool selection = false, metrics = false, buckets = false;
};

// The stored data of one configuration; every level may be absent (StoredLevels).
struct ResultArrays {
  ConfigKey config;
  StoredLevels stored;
  int64_t n_tokens = 0;                      // from whichever level is present
  int64_t n_blocks = 0;                      // ceil(n_tokens / block_size)
  std::vector<int32_t> selected;             // [n_tokens, top_k]; empty when not kept
  std::map<std::string, std::vector<float>> metrics;  // name -> [n_tokens]; empty when not kept
  // Stored bucket curves (bucket_metric_names() of analysis/results_schema.h) -> means over
  // queries with a choice; empty for files without them.
  std::map<std::string, BucketSeries> bucket_curves;
  std::vector<int64_t> bucket_n_choice;
  std::map<std::string, double> summary;     // the configuration's summary.csv row (the head's
                                             // summary table; layout 1: the group's numeric attributes)
  // The SNR probe's signal-rank histogram of (layer, head, B, router) (results_schema.h
  // snr_hist_path; gate routers only): entry r - 1 = queries whose signal block has rank r,
  // the last entry ranks above kSnrMaxRank. Empty when not stored.
  std::vector<int32_t> signal_rank_hist;
  bool has_selection() const { return stored.selection; }
  // nullptr when the file has no such metric.
  const std::vector<float>* metric(const std::string& name) const;
  // nullptr when the file has no such stored bucket curve.
  const BucketSeries* bucket_curve(const std::string& name) const;
  // The summary value, or NaN.
  double summary_value(const std::string& name) const;
};

// The metric datasets analyze writes, in display order (the names of analysis/summary.h
// position_metrics()).
const std::vector<std::string>& known_metric_names();

// DIR/summary.csv (or any CSV with a header line): text cells, and each cell's numeric value
// (NaN where not a number, e.g. "nan", "moba", "all").
struct SummaryTable {
  std::string path;
  std::vector<std::string> columns;
  struct Row {
    std::vector<std::string> text;
    std::vector<double> value;
  };
  std::vector<Row> rows;
  int column(const std::string& name) const;  // -1 when absent
  int column(KeyColumn c) const { return column(key_column_name(c)); }
};
// Throws FileNotFoundError when missing, FormatError naming the line for ragged rows.
SummaryTable read_summary_csv(const std::string& path);

class ResultsFile {
 public:
  // `dir_or_h5`: the analyze output directory, or its analysis.h5. Lists the configurations;
  // reads summary.csv beside the file when present.
  explicit ResultsFile(const std::string& dir_or_h5);
  ~ResultsFile();
  ResultsFile(const ResultsFile&) = delete;
  ResultsFile& operator=(const ResultsFile&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& h5_path() const { return h5_path_; }
  // Root attributes of analysis.h5 (dump, git_commit, device), as text.
  const std::map<std::string, std::string>& attributes() const { return attributes_; }
  // Sorted by ConfigKey's order: every row of the heads' `configurations` tables, and (files
  // of layout 1) every configuration group holding any dataset (selection, metric arrays or
  // bucket curves). Rows and groups whose router name is not a RouterKind are skipped.
  const std::vector<ConfigKey>& configs() const { return configs_; }
  // nullptr when absent.
  const ConfigKey* find(const ConfigKey& key) const;
  // What is stored for `key` (all false when absent).
  StoredLevels stored(const ConfigKey& key) const;
  // What is stored for each of configs(), in its order.
  const std::vector<StoredLevels>& stored_levels() const { return stored_; }
  // The keep rule analyze recorded (root attribute positions_rule), or "" for older files.
  std::string keep_rule() const;
  // Empty when `key` has its selection and metric arrays; else one line naming what is
  // missing and the `moba analyze` options that would keep it, e.g. "per-position arrays
  // and selections not kept for layer 0 head 5 (...); rerun moba analyze with --positions all
  // or --keep-heads 5".
  std::string missing_text(const ConfigKey& key) const;
  bool has_summary() const { return !summary_.path.empty(); }
  const SummaryTable& summary() const { return summary_; }

  // n_tokens of `key` from metadata (dataset shapes, bucket edges); -1 when unknown.
  int64_t n_tokens(const ConfigKey& key) const;
  // The dump analyze read (root attribute `dump`, as given to analyze): resolved against the
  // working directory, then against DIR and DIR's parent. "" when it is not found; `why`
  // then says so.
  std::string dump_path(std::string* why = nullptr) const;
  // The planted key per query of a synthetic dump (dump-format.md: /layers/L/planted row
  // `head`), [n_tokens], -1 where none. Empty, with `why` saying what is missing, when the
  // dump is not found, not HDF5, or has no planted truth for that layer.
  std::vector<int32_t> load_planted(int layer, int64_t head, std::string* why) const;

  // Reads one configuration's arrays. Safe to call from a worker thread while no other
  // thread calls load() on the same object (HDF5 calls are serialised inside core/io).
  ResultArrays load(const ConfigKey& config) const;

 private:
  std::string dir_, h5_path_;
  std::unique_ptr<H5Input> h5_;
  std::map<std::string, std::string> attributes_;
  std::vector<ConfigKey> configs_;
  std::vector<StoredLevels> stored_;  // [configs_]
  std::vector<int> rows_;             // [configs_]: the row of the head's tables (layout 2), or -1
  int64_t index_of(const ConfigKey& key) const;  // in configs_, or -1
  int64_t n_table_rows(const ConfigKey& key) const;  // rows of key's head tables (layout 2)
  int64_t table_row(const ConfigKey& key) const;     // key's row in them, or -1 (layout 1, absent)
  SummaryTable summary_;
};

// Per (query, block) classification of a router's selection against the oracle's for the same
// (layer, head, B, k). With no oracle, every selected block is `selected` (or `current`).
enum class MaskCell : uint8_t {
  current = 1,     // the current block floor(t / B), always selected by both
  selected = 2,    // chosen by the router (no oracle to compare with)
  hit = 3,         // router and oracle
  false_pick = 4,  // router only
  miss = 5,        // oracle only
};
const char* mask_cell_name(MaskCell c);

// The comparison for every query: row t holds up to `width` (block, cell) entries, ascending
// by block, unused entries have block -1.
struct MaskComparison {
  int64_t n_tokens = 0, n_blocks = 0, block_size = 0;
  int width = 0;                  // 2 * top_k with an oracle, top_k without
  bool with_oracle = false;
  std::vector<int32_t> blocks;    // [n_tokens, width]
  std::vector<MaskCell> cells;    // [n_tokens, width]
  // Per-query counts: routed blocks the router and the oracle share / the router alone / the
  // oracle alone (current block excluded).
  std::vector<int32_t> n_hit, n_false, n_miss;
  int64_t total_hit = 0, total_false = 0, total_miss = 0;  // sums over all queries
  // The cell of (t, block), or 0 when neither selected it.
  int cell_at(int64_t t, int64_t block) const;
};
// `oracle` may be null. Throws ShapeError when the two disagree on n_tokens or top_k.
MaskComparison compare_selections(const ResultArrays& router, const ResultArrays* oracle);
// Two selections of one sequence at the same block size, for a difference view: cells `hit` =
// both chose the block, `false_pick` = only `a`, `miss` = only `b`, `current` the current
// block; the counts likewise. Top-k may differ (width = top_k of a + top_k of b). Throws
// ShapeError when the block sizes or n_tokens differ or a selection is not stored.
MaskComparison compare_selection_pair(const ResultArrays& a, const ResultArrays& b);

// Means of `values` over the queries with a choice in `n_buckets` equal position buckets
// (analyze's rule; BucketSeries above).
BucketSeries bucket_means(const std::vector<float>& values, int64_t block_size, int top_k, int n_buckets);

// Everything the viewer shows for one (layer, head, B, k, router): the router's arrays, the
// oracle's when analysed for the same slot (and the router is not the oracle itself), and
// their comparison when the router's selection is stored (against the oracle's when that is
// stored too). Built on a worker thread, handed to the GUI whole.
struct PositionView {
  ResultArrays router;
  bool has_oracle = false;
  ResultArrays oracle;
  bool has_mask = false;  // the router's selection is stored: `mask` is filled
  MaskComparison mask;
  std::string missing;    // ResultsFile::missing_text of the router's key ("" = all present)
};
PositionView load_position_view(const ResultsFile& file, const ConfigKey& config);

}  // namespace moba::analysis
