// ResultsFile and friends (analysis/results_file.h): analyze's output directory as plain
// structs, through core's generic HDF5 reader.
#include "analysis/results_file.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <tuple>

#include "analysis/metrics.h"
#include "analysis/results_schema.h"
#include "analysis/summary.h"
#include "core/errors.h"
#include "core/h5_input.h"

namespace fs = std::filesystem;

namespace moba::analysis {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double parse_cell(const std::string& s) {
  if (s.empty()) return kNaN;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return kNaN;
  return v;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',') out.emplace_back();
    else if (c != '\r') out.back() += c;
  }
  return out;
}

// One row of a head table's keys (layout 2, results_schema.h): `configurations` (block_size,
// top_k, router) or `snr_configurations` (block_size, router; top_k 0). `known` is false for a
// router name that is not a RouterKind (such rows are skipped, as layout 1's groups are).
struct TableKey {
  int64_t block_size = 0;
  int top_k = 0;
  RouterKind router = RouterKind::moba;
  bool known = false;
};

std::vector<TableKey> read_table_keys(const H5Input& h5, const std::string& file, const std::string& ds, bool with_k) {
  std::vector<int64_t> shape;
  const std::vector<int32_t> v = h5.read_i32(ds, &shape);
  const int64_t n_cols = with_k ? 3 : 2;
  if (shape.size() != 2 || shape[1] != n_cols)
    throw ShapeError(file, ds, "expected [n_rows, " + std::to_string(n_cols) + "] integers (" +
                                   (with_k ? kConfigurationColumns : kSnrConfigurationColumns) + ")");
  const std::optional<std::string> router_names = h5.attribute(ds, "routers");
  if (!router_names)
    throw FormatError(file, ds, "the attribute `routers` (the names its router column indexes) is missing");
  const std::vector<std::string> routers = split_names(*router_names);
  std::vector<TableKey> keys(static_cast<size_t>(shape[0]));
  for (size_t r = 0; r < keys.size(); ++r) {
    const int32_t* row = v.data() + r * static_cast<size_t>(n_cols);
    const int32_t router = row[n_cols - 1];
    TableKey& k = keys[r];
    k.block_size = row[0];
    k.top_k = with_k ? row[1] : 0;
    if (k.block_size < 1 || (with_k && k.top_k < 1))
      throw FormatError(file, ds,
                        "row " + std::to_string(r) + ": block size " + std::to_string(row[0]) +
                            (with_k ? ", top-k " + std::to_string(row[1]) : std::string()) + " (must be >= 1)");
    if (router < 0 || static_cast<size_t>(router) >= routers.size())
      throw FormatError(file, ds,
                        "row " + std::to_string(r) + ": router " + std::to_string(router) +
                            " outside the attribute `routers` (" + std::to_string(routers.size()) + " names)");
    k.known = parse_router(routers[static_cast<size_t>(router)], &k.router);
  }
  return keys;
}

}  // namespace

const std::vector<std::string>& known_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& m : position_metrics()) v.push_back(m.name);
    return v;
  }();
  return names;
}

const std::vector<float>* ResultArrays::metric(const std::string& name) const {
  auto it = metrics.find(name);
  return it == metrics.end() ? nullptr : &it->second;
}

const BucketSeries* ResultArrays::bucket_curve(const std::string& name) const {
  auto it = bucket_curves.find(name);
  return it == bucket_curves.end() ? nullptr : &it->second;
}

double ResultArrays::summary_value(const std::string& name) const {
  auto it = summary.find(name);
  return it == summary.end() ? kNaN : it->second;
}

int SummaryTable::column(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  return -1;
}

SummaryTable read_summary_csv(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw FileNotFoundError(path, "", std::string("cannot open: ") + std::strerror(errno));
  SummaryTable t;
  t.path = path;
  std::string line;
  if (!std::getline(f, line) || line.empty()) throw FormatError(path, "line 1", "no header line");
  t.columns = split_csv_line(line);
  int64_t line_no = 1;
  while (std::getline(f, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    SummaryTable::Row row;
    row.text = split_csv_line(line);
    if (row.text.size() != t.columns.size())
      throw FormatError(path, "line " + std::to_string(line_no),
                        std::to_string(row.text.size()) + " cells, the header has " + std::to_string(t.columns.size()));
    for (const auto& c : row.text) row.value.push_back(parse_cell(c));
    t.rows.push_back(std::move(row));
  }
  return t;
}

ResultsFile::ResultsFile(const std::string& dir_or_h5) {
  std::error_code ec;
  const fs::path given(dir_or_h5);
  if (!fs::exists(given, ec)) throw FileNotFoundError(dir_or_h5, "", "no such file or directory");
  if (fs::is_directory(given, ec)) {
    dir_ = given.string();
    h5_path_ = (given / "analysis.h5").string();
    if (!fs::exists(h5_path_, ec))
      throw FileNotFoundError(h5_path_, "", "missing: is " + dir_ + " a `moba analyze --out` directory?");
  } else {
    h5_path_ = given.string();
    dir_ = given.has_parent_path() ? given.parent_path().string() : std::string(".");
  }
  h5_ = std::make_unique<H5Input>(h5_path_);
  if (!h5_->has_group(kLayersGroup))
    throw FormatError(h5_path_, kLayersGroup, "group is missing: not a `moba analyze` analysis.h5");
  attributes_ = h5_->attributes("/");
  // The layout version (results_schema.h): absent in layout 1's files.
  int64_t layout = 1;
  if (auto it = attributes_.find(kAttrLayout); it != attributes_.end()) {
    if (!parse_index_name(it->second, &layout) || layout < 2)
      throw FormatError(h5_path_, std::string("/@") + kAttrLayout, "'" + it->second + "' is not a layout version");
    if (layout > kLayoutVersion)
      throw FormatError(h5_path_, std::string("/@") + kAttrLayout,
                        "layout " + it->second + " is newer than this build reads (up to " +
                            std::to_string(kLayoutVersion) + "): use a newer moba");
  }

  // Layout 2: each head's `configurations` table lists every configuration (row = its row in
  // the head's tables); the configuration groups, where present, hold kept arrays. Layout 1:
  // the groups hold everything.
  std::map<ConfigKey, size_t> index;
  const auto entry = [&](const ConfigKey& key) -> size_t {
    auto [it, added] = index.emplace(key, configs_.size());
    if (added) {
      configs_.push_back(key);
      stored_.emplace_back();
      rows_.push_back(-1);
    }
    return it->second;
  };
  for (const std::string& lname : h5_->list_groups(kLayersGroup)) {
    int64_t layer = 0;
    if (!parse_index_name(lname, &layer)) continue;
    const std::string lpath = heads_path(static_cast<int>(layer));
    if (!h5_->has_group(lpath)) continue;
    for (const std::string& hname : h5_->list_groups(lpath)) {
      int64_t head = 0;
      if (!parse_index_name(hname, &head)) continue;
      const int L = static_cast<int>(layer);
      const std::string hpath = head_path(L, head);
      const std::string table = head_table_path(L, head, kConfigurationsDataset);
      const bool has_table = h5_->has_dataset(table);
      if (layout >= 2 && !has_table)
        throw FormatError(h5_path_, table, "missing: every head of a layout " + std::to_string(layout) +
                                               " file has its configurations table");
      if (has_table) {
        const std::vector<TableKey> keys = read_table_keys(*h5_, h5_path_, table, true);
        const bool buckets = h5_->has_dataset(head_table_path(L, head, kBucketMeansDataset));
        for (size_t r = 0; r < keys.size(); ++r) {
          if (!keys[r].known) continue;
          const size_t i = entry({L, head, keys[r].block_size, keys[r].top_k, keys[r].router});
          stored_[i].buckets = buckets;
          rows_[i] = static_cast<int>(r);
        }
      }
      for (const std::string& sname : h5_->list_groups(hpath)) {
        ConfigKey key;
        key.layer = L;
        key.head = head;
        if (!parse_slot_name(sname, &key.block_size, &key.top_k)) continue;  // e.g. B<b>/ (SNR histograms)
        for (const std::string& router : h5_->list_groups(hpath + "/" + sname)) {
          if (!parse_router(router, &key.router)) continue;
          StoredLevels st;
          for (const std::string& ds : h5_->list_datasets(group_path(key))) {
            if (ds == kSelectedDataset) st.selection = true;
            else if (ds == kBucketMeansDataset) st.buckets = true;
            else if (ds.rfind("bucket_", 0) != 0) st.metrics = true;
          }
          if (!st.selection && !st.metrics && !st.buckets && !index.count(key)) continue;
          StoredLevels& have = stored_[entry(key)];
          have.selection = have.selection || st.selection;
          have.metrics = have.metrics || st.metrics;
          have.buckets = have.buckets || st.buckets;
        }
      }
    }
  }
  if (configs_.empty())
    throw FormatError(h5_path_, kLayersGroup,
                      "no configurations: neither /layers/L/heads/H/configurations tables nor "
                      "/layers/L/heads/H/B<b>_k<k>/<router> groups with data");
  std::vector<size_t> order(configs_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return configs_[a] < configs_[b]; });
  std::vector<ConfigKey> keys;
  std::vector<StoredLevels> levels;
  std::vector<int> rows;
  for (const size_t i : order) {
    keys.push_back(configs_[i]);
    levels.push_back(stored_[i]);
    rows.push_back(rows_[i]);
  }
  configs_ = std::move(keys);
  stored_ = std::move(levels);
  rows_ = std::move(rows);

  const fs::path csv = fs::path(dir_) / "summary.csv";
  if (fs::exists(csv, ec)) summary_ = read_summary_csv(csv.string());
}

ResultsFile::~ResultsFile() = default;

const ConfigKey* ResultsFile::find(const ConfigKey& key) const {
  const int64_t i = index_of(key);
  return i < 0 ? nullptr : &configs_[static_cast<size_t>(i)];
}

int64_t ResultsFile::n_table_rows(const ConfigKey& key) const {
  return h5_->dataset_info(head_table_path(key.layer, key.head, kConfigurationsDataset)).shape.at(0);
}

int64_t ResultsFile::table_row(const ConfigKey& key) const {
  const int64_t i = index_of(key);
  return i < 0 ? -1 : rows_[static_cast<size_t>(i)];
}

int64_t ResultsFile::index_of(const ConfigKey& key) const {
  const auto it = std::lower_bound(configs_.begin(), configs_.end(), key);
  return it != configs_.end() && *it == key ? it - configs_.begin() : -1;
}

StoredLevels ResultsFile::stored(const ConfigKey& key) const {
  const int64_t i = index_of(key);
  return i < 0 ? StoredLevels{} : stored_[static_cast<size_t>(i)];
}

std::string ResultsFile::keep_rule() const {
  auto it = attributes_.find(kAttrPositionsRule);
  return it == attributes_.end() ? std::string() : it->second;
}

std::string ResultsFile::missing_text(const ConfigKey& key) const {
  const StoredLevels st = stored(key);
  if (st.selection && st.metrics) return "";
  std::string what;
  if (!st.metrics && !st.selection) what = "per-position arrays and selections not kept";
  else if (!st.metrics) what = "per-position metric arrays not kept";
  else what = "the selection not kept";
  const std::string rule = keep_rule();
  std::string s = what + " for " + key.name();
  if (!rule.empty()) s += " (analyze kept: " + rule + ")";
  s += "; rerun moba analyze with --positions all, or ";
  if (st.metrics && !st.selection) return s + "--positions selected";
  // --positions selected with them: --keep-* name what that level keeps (not allowed with none)
  return s + "--positions selected --keep-heads " + std::to_string(key.head) + " --keep-configs " +
         slot_name(key.block_size, key.top_k);
}

ResultArrays ResultsFile::load(const ConfigKey& config) const {
  const std::string group = group_path(config);
  const int64_t row = table_row(config);
  // Layout 2: the head's tables have `rows` rows (row `row` is this configuration's).
  const int64_t rows = row < 0 ? -1 : n_table_rows(config);
  const auto table = [&](const char* dataset) { return head_table_path(config.layer, config.head, dataset); };
  ResultArrays a;
  a.config = config;
  a.stored = stored(config);
  const std::string selected = selected_path(config);
  // n_tokens: from the selection, else the bucket edges, else a metric array.
  if (a.stored.selection) {
    std::vector<int64_t> shape;
    a.selected = h5_->read_i32(selected, &shape);  // int8 / int16 / int32 alike
    if (shape.size() != 2 || shape[1] != config.top_k)
      throw ShapeError(h5_path_, selected, "expected [n_tokens, " + std::to_string(config.top_k) + "] integers");
    a.n_tokens = shape[0];
  }
  if (a.stored.buckets) {
    const std::string base = row >= 0 ? head_path(config.layer, config.head) : group;
    const std::string means_path = base + "/" + kBucketMeansDataset;
    std::vector<int64_t> shape, edge_shape, choice_shape;
    const std::vector<int32_t> edges = h5_->read_i32(base + "/" + kBucketEdgesDataset, &edge_shape);
    const std::vector<int32_t> n_choice = h5_->read_i32(base + "/" + kBucketChoiceDataset, &choice_shape);
    const std::vector<float> means = h5_->read_f32(means_path, &shape);
    const std::vector<std::string>& names = bucket_metric_names();
    const auto n_names = static_cast<int64_t>(names.size());
    // Layout 1: [n_buckets + 1], [n_buckets], [n_buckets, 5]; layout 2 adds the head's rows as
    // a leading axis to the counts and the means. Each error names the dataset that disagrees.
    if (edge_shape.size() != 1 || edge_shape[0] < 2)
      throw ShapeError(h5_path_, base + "/" + kBucketEdgesDataset, "expected [n_buckets + 1] integers, n_buckets >= 1");
    const int64_t n = edge_shape[0] - 1;
    const std::vector<int64_t> want_choice = row < 0 ? std::vector<int64_t>{n} : std::vector<int64_t>{rows, n};
    if (choice_shape != want_choice)
      throw ShapeError(h5_path_, base + "/" + kBucketChoiceDataset,
                       row < 0 ? "expected [n_buckets] = [" + std::to_string(n) + "] (bucket_edges)"
                               : "expected [n_rows, n_buckets] = [" + std::to_string(rows) + ", " + std::to_string(n) +
                                     "] (configurations, bucket_edges)");
    const std::vector<int64_t> want_means =
        row < 0 ? std::vector<int64_t>{n, n_names} : std::vector<int64_t>{rows, n, n_names};
    if (shape != want_means)
      throw ShapeError(h5_path_, means_path,
                       row < 0 ? "expected [n_buckets, " + std::to_string(n_names) + "] = [" + std::to_string(n) +
                                     ", " + std::to_string(n_names) + "] (bucket_edges)"
                               : "expected [n_rows, n_buckets, " + std::to_string(n_names) + "] = [" +
                                     std::to_string(rows) + ", " + std::to_string(n) + ", " + std::to_string(n_names) +
                                     "] (configurations, bucket_edges)");
    const size_t first = static_cast<size_t>(std::max<int64_t>(row, 0) * n);
    for (size_t m = 0; m < names.size(); ++m) {
      BucketSeries b;
      b.edges.assign(edges.begin(), edges.end());
      for (int64_t i = 0; i < n; ++i) b.mean.push_back(means[(first + static_cast<size_t>(i)) * names.size() + m]);
      a.bucket_curves[names[m]] = std::move(b);
    }
    a.bucket_n_choice.assign(n_choice.begin() + static_cast<std::ptrdiff_t>(first),
                             n_choice.begin() + static_cast<std::ptrdiff_t>(first + static_cast<size_t>(n)));
    if (!a.stored.selection && !edges.empty()) a.n_tokens = edges.back();
  }
  bool length_known = a.stored.selection || a.stored.buckets;
  const std::vector<std::string> datasets =
      a.stored.selection || a.stored.metrics || row < 0 ? h5_->list_datasets(group) : std::vector<std::string>();
  for (const std::string& name : datasets) {
    if (name == kSelectedDataset || name.rfind("bucket_", 0) == 0) continue;
    const std::string ds = group + "/" + name;
    const H5DatasetInfo info = h5_->dataset_info(ds);
    if (info.shape.size() != 1 || info.dtype.rfind("float", 0) != 0) continue;  // not a per-position metric
    if (!length_known) {
      a.n_tokens = info.shape[0];
      length_known = true;
    }
    if (info.shape[0] != a.n_tokens)
      throw ShapeError(h5_path_, ds, "length " + std::to_string(info.shape[0]) + ", the configuration has " +
                                         std::to_string(a.n_tokens) + " positions");
    a.metrics[name] = h5_->read_f32(ds);
  }
  a.n_blocks = (a.n_tokens + config.block_size - 1) / config.block_size;
  for (const int32_t b : a.selected)
    if (b < -1 || b >= a.n_blocks)
      throw ShapeError(h5_path_, selected,
                       "block index " + std::to_string(b) + " outside [-1, " + std::to_string(a.n_blocks) + ")");
  if (row < 0) {
    const std::string hist = snr_hist_path(config);
    if (h5_->has_dataset(hist)) a.signal_rank_hist = h5_->read_i32(hist);
    for (const auto& [name, text] : h5_->attributes(group)) {
      const double v = parse_cell(text);
      if (!text.empty() && (std::isfinite(v) || text == "nan" || text == "-nan" || text == "inf" || text == "-inf"))
        a.summary[name] = v;
    }
    return a;
  }
  const std::string summary = table(kSummaryDataset);
  std::vector<int64_t> shape;
  const std::vector<double> values = h5_->read_f64(summary, &shape);
  const std::optional<std::string> column_names = h5_->attribute(summary, "columns");
  if (!column_names) throw FormatError(h5_path_, summary, "the attribute `columns` (its column names) is missing");
  const std::vector<std::string> columns = split_names(*column_names);
  const auto n_cols = static_cast<int64_t>(columns.size());
  if (shape != std::vector<int64_t>{rows, n_cols})
    throw ShapeError(h5_path_, summary, "expected [n_rows, n_cols] = [" + std::to_string(rows) + ", " +
                                            std::to_string(n_cols) + "] (configurations, the attribute `columns`)");
  for (int64_t c = 0; c < n_cols; ++c)
    a.summary[columns[static_cast<size_t>(c)]] = values[static_cast<size_t>(row * n_cols + c)];
  const std::string snr_keys = table(kSnrConfigurationsDataset);
  if (h5_->has_dataset(snr_keys)) {
    const std::vector<TableKey> keys = read_table_keys(*h5_, h5_path_, snr_keys, false);
    for (size_t r = 0; r < keys.size(); ++r) {
      if (!keys[r].known || keys[r].block_size != config.block_size || keys[r].router != config.router) continue;
      const std::string hist = table(kSnrHistDataset);
      std::vector<int64_t> hist_shape;
      const std::vector<int32_t> all = h5_->read_i32(hist, &hist_shape);
      if (hist_shape.size() != 2 || hist_shape[0] != static_cast<int64_t>(keys.size()))
        throw ShapeError(h5_path_, hist,
                         "expected [" + std::to_string(keys.size()) + " (snr_configurations), n_ranks]");
      const auto w = static_cast<size_t>(hist_shape[1]);
      a.signal_rank_hist.assign(all.begin() + static_cast<std::ptrdiff_t>(r * w),
                                all.begin() + static_cast<std::ptrdiff_t>((r + 1) * w));
      break;
    }
  }
  return a;
}

int64_t ResultsFile::n_tokens(const ConfigKey& key) const {
  const StoredLevels st = stored(key);
  const bool layout2 = table_row(key) >= 0;
  const std::string group = group_path(key);
  if (st.selection) return h5_->dataset_info(selected_path(key)).shape.at(0);
  if (st.buckets) {
    const std::string base = layout2 ? head_path(key.layer, key.head) : group;
    const std::vector<int32_t> edges = h5_->read_i32(base + "/" + kBucketEdgesDataset);
    if (!edges.empty()) return edges.back();
  }
  if (!st.metrics && layout2) return -1;
  for (const std::string& name : h5_->list_datasets(group)) {
    if (name.rfind("bucket_", 0) == 0) continue;
    const H5DatasetInfo info = h5_->dataset_info(group + "/" + name);
    if (info.shape.size() == 1) return info.shape[0];
  }
  return -1;
}

std::string ResultsFile::dump_path(std::string* why) const {
  auto it = attributes_.find("dump");
  if (it == attributes_.end() || it->second.empty()) {
    if (why) *why = h5_path_ + " does not name its dump (root attribute `dump`)";
    return "";
  }
  const fs::path given(it->second);
  std::error_code ec;
  std::vector<fs::path> tries{given};
  if (given.is_relative()) {
    tries.push_back(fs::path(dir_) / given);
    tries.push_back(fs::path(dir_).parent_path() / given);
    tries.push_back(fs::path(dir_) / given.filename());
    tries.push_back(fs::path(dir_).parent_path() / given.filename());
  }
  for (const fs::path& p : tries)
    if (fs::is_regular_file(p, ec)) return p.string();
  if (why) *why = "the dump " + it->second + " is not found (looked beside " + dir_ + " too)";
  return "";
}

std::vector<int32_t> ResultsFile::load_planted(int layer, int64_t head, std::string* why) const {
  std::string reason;
  const std::string dump = dump_path(&reason);
  std::vector<int32_t> out;
  if (!dump.empty()) {
    try {
      const H5Input in(dump);
      const std::string ds = std::string(kLayersGroup) + "/" + std::to_string(layer) + "/planted";
      if (!in.has_dataset(ds)) {
        reason = dump + " has no planted truth (" + ds + "): not a `moba synth` dump";
      } else {
        std::vector<int64_t> shape;
        const std::vector<int32_t> all = in.read_i32(ds, &shape);
        if (shape.size() != 2 || head >= shape[0]) {
          reason = dump + ": " + ds + " has no row for head " + std::to_string(head);
        } else {
          const size_t T = static_cast<size_t>(shape[1]);
          out.assign(all.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(head) * T),
                     all.begin() + static_cast<std::ptrdiff_t>((static_cast<size_t>(head) + 1) * T));
        }
      }
    } catch (const std::exception& e) {
      reason = std::string("cannot read the planted truth: ") + e.what();
    }
  }
  if (why) *why = out.empty() ? reason : "";
  return out;
}

const char* mask_cell_name(MaskCell c) {
  switch (c) {
    case MaskCell::current: return "current block";
    case MaskCell::selected: return "selected";
    case MaskCell::hit: return "hit (router and oracle)";
    case MaskCell::false_pick: return "false pick (router only)";
    case MaskCell::miss: return "miss (oracle only)";
  }
  return "none";
}

int MaskComparison::cell_at(int64_t t, int64_t block) const {
  if (t < 0 || t >= n_tokens) return 0;
  const size_t row = static_cast<size_t>(t) * static_cast<size_t>(width);
  for (int i = 0; i < width; ++i)
    if (blocks[row + i] == block) return static_cast<int>(cells[row + i]);
  return 0;
}

namespace {

// Merges two ascending, -1 padded selection rows per query into `m` (blocks, cells, counts):
// entries in both are `hit`, only in `a` `false_pick`, only in `b` `miss` (`b` null: every
// entry of `a` is `selected`); the current block is `current`.
void merge_selections(const int32_t* a, int ka, const int32_t* b, int kb, MaskComparison* m) {
  const int64_t T = m->n_tokens, B = m->block_size;
  m->blocks.assign(static_cast<size_t>(T * m->width), -1);
  m->cells.assign(static_cast<size_t>(T * m->width), MaskCell::selected);
  m->n_hit.assign(static_cast<size_t>(T), 0);
  m->n_false.assign(static_cast<size_t>(T), 0);
  m->n_miss.assign(static_cast<size_t>(T), 0);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = t / B;
    const int32_t* rs = a + t * ka;
    const int32_t* os = b ? b + t * kb : nullptr;
    int32_t* out_b = &m->blocks[static_cast<size_t>(t * m->width)];
    MaskCell* out_c = &m->cells[static_cast<size_t>(t * m->width)];
    // Both rows are ascending, -1 padded: merge them.
    int i = 0, j = 0, n = 0;
    const auto valid = [](const int32_t* s, int k, int idx) { return s && idx < k && s[idx] >= 0; };
    while (valid(rs, ka, i) || valid(os, kb, j)) {
      const bool take_r = valid(rs, ka, i), take_o = valid(os, kb, j);
      int32_t block;
      bool in_r = false, in_o = false;
      if (take_r && take_o && rs[i] == os[j]) {
        block = rs[i++];
        ++j;
        in_r = in_o = true;
      } else if (take_r && (!take_o || rs[i] < os[j])) {
        block = rs[i++];
        in_r = true;
      } else {
        block = os[j++];
        in_o = true;
      }
      MaskCell cell;
      if (block == c) cell = MaskCell::current;
      else if (!b) cell = MaskCell::selected;
      else if (in_r && in_o) cell = MaskCell::hit, ++m->n_hit[t];
      else if (in_r) cell = MaskCell::false_pick, ++m->n_false[t];
      else cell = MaskCell::miss, ++m->n_miss[t];
      out_b[n] = block;
      out_c[n] = cell;
      ++n;
    }
    m->total_hit += m->n_hit[t];
    m->total_false += m->n_false[t];
    m->total_miss += m->n_miss[t];
  }
}

}  // namespace

MaskComparison compare_selections(const ResultArrays& router, const ResultArrays* oracle) {
  const int K = router.config.top_k;
  const int64_t T = router.n_tokens, B = router.config.block_size;
  if (oracle && (oracle->n_tokens != T || oracle->config.top_k != K || oracle->config.block_size != B))
    throw ShapeError(group_path(oracle->config), kSelectedDataset, "the oracle's selection does not match the router's shape");
  MaskComparison m;
  m.n_tokens = T;
  m.n_blocks = router.n_blocks;
  m.block_size = B;
  m.with_oracle = oracle != nullptr;
  m.width = oracle ? 2 * K : K;
  merge_selections(router.selected.data(), K, oracle ? oracle->selected.data() : nullptr, K, &m);
  return m;
}

MaskComparison compare_selection_pair(const ResultArrays& a, const ResultArrays& b) {
  if (!a.has_selection() || !b.has_selection())
    throw ShapeError(group_path(a.has_selection() ? b.config : a.config), kSelectedDataset, "selection not stored");
  if (a.n_tokens != b.n_tokens || a.config.block_size != b.config.block_size)
    throw ShapeError(group_path(b.config), kSelectedDataset,
                     "a difference needs the same block size and sequence (" + a.config.name() + " vs " + b.config.name() + ")");
  MaskComparison m;
  m.n_tokens = a.n_tokens;
  m.n_blocks = a.n_blocks;
  m.block_size = a.config.block_size;
  m.with_oracle = true;
  m.width = a.config.top_k + b.config.top_k;
  merge_selections(a.selected.data(), a.config.top_k, b.selected.data(), b.config.top_k, &m);
  return m;
}

BucketSeries bucket_means(const std::vector<float>& values, int64_t block_size, int top_k, int n_buckets) {
  BucketSeries s;
  const int64_t T = static_cast<int64_t>(values.size());
  s.edges = bucket_edges(T, std::max(1, n_buckets), 0);
  std::vector<uint8_t> choice(values.size());
  for (int64_t t = 0; t < T; ++t) choice[static_cast<size_t>(t)] = has_choice(t, block_size, top_k) ? 1 : 0;
  for (size_t e = 0; e + 1 < s.edges.size(); ++e)
    s.mean.push_back(static_cast<float>(summarize(values, choice, s.edges[e], s.edges[e + 1]).mean));
  return s;
}

PositionView load_position_view(const ResultsFile& file, const ConfigKey& config) {
  PositionView v;
  v.router = file.load(config);
  if (config.router != RouterKind::oracle) {
    if (const ConfigKey* o = file.find(config.with_router(RouterKind::oracle))) {
      v.oracle = file.load(*o);
      v.has_oracle = true;
    }
  }
  v.missing = file.missing_text(config);
  v.has_mask = v.router.has_selection();
  if (v.has_mask)
    v.mask = compare_selections(v.router, v.has_oracle && v.oracle.has_selection() ? &v.oracle : nullptr);
  return v;
}

}  // namespace moba::analysis
