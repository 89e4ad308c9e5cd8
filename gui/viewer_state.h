#pragma once
// All of the viewer's state, in plain structs (STYLE.md rule 11): the panels' draw functions
// (gui/panels.h) read it and record the user's intent in it; update_viewer() — once per frame,
// before drawing — turns intent into work: it starts loads on a worker thread, adopts finished
// ones, and refreshes the derived caches. Nothing here is an ImGui type.
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "analysis/results_file.h"
#include "analysis/summary.h"
#include "analysis/view_lod.h"

namespace moba::gui {

// The choices the navigator offers for the current selection, from the file's configurations.
struct NavigatorOptions {
  std::vector<int> layers;
  std::vector<int64_t> heads;                       // of the selected layer
  std::vector<int64_t> heads_with_arrays;           // those with per-position arrays kept (any slot)
  std::vector<std::pair<int64_t, int>> slots;       // (B, k) of the selected layer and head
  std::vector<std::pair<int64_t, int>> slots_with_arrays;  // those with per-position arrays kept (any router)
  std::vector<analysis::RouterKind> routers;        // of the selected slot
  std::vector<analysis::RouterKind> routers_with_arrays;   // those with per-position arrays kept
};

// The panels of the right-hand column (the navigator is always on the left), in the order
// `moba gui --panels` names them.
enum class Panel { mask, metrics, summary, overview, configs, snr, count_ };
constexpr int kPanelCount = static_cast<int>(Panel::count_);
const char* panel_name(Panel p);          // "mask", "metrics", "summary", "overview", "configs", "snr"
const char* panel_list();                 // "mask, metrics, summary, overview, configs, snr"
bool parse_panel(const std::string& s, Panel* out);

struct LayoutState {
  std::vector<Panel> shown{Panel::mask, Panel::metrics, Panel::summary};
  float weight[kPanelCount] = {3.0f, 2.2f, 1.6f, 2.0f, 2.0f, 1.8f};  // share of the column's height
};

// A 1-D view axis: value v (a query position on x, a key position on y) maps to pixel
// (v - t_begin) / t_per_px from the plot's origin. The mask's x axis is the query position
// shared with the metric plots; its y axis is the key position, so block b of block size B
// spans keys [b B, (b + 1) B) and configurations of different B line up.
struct PositionAxis {
  double t_begin = 0;
  double t_per_px = 0;   // 0 = fit the whole sequence into the plot width (set on first draw)
  float plot_width = 0;  // of the last drawn mask plot, pixels
  double last_fit = 0;   // the fitting t_per_px of the last clamp: an axis at fit stays fitted
  // A requested range [begin, end) (e.g. from the command line), applied once the plot width
  // is known; end <= begin = none.
  double request_begin = 0, request_end = 0;
};

struct MaskViewState {
  bool compare_oracle = true;   // colour hits / false picks / misses when the oracle is present
  bool shade_causal = true;     // tint the causally available blocks (b <= current block)
  analysis::CellColouring cells = analysis::CellColouring::density;  // zoomed-out cell colours (analysis/view_lod.h)
  bool planted = false;         // lighten the planted key's block (synthetic dumps)
  float block_rows_px = 0;      // drawn height per block, from the last frame (read-only)
  int level_x = 0, level_y = 0; // tile level drawn last frame (read-only)
  bool level_top_known = false; // its density scale (analysis::level_max_counts), once computed (read-only)
  analysis::ChannelCounts level_top{};
};

// A second configuration beside the shown one (router vs router, B vs B, k vs k).
struct CompareState {
  bool on = false;
  analysis::ConfigKey key;      // snapped like the selection, with its own B / k / router
  bool difference = false;      // one mask of both / only shown / only compared (same B only)
};

// The overview grids: layer x head, and B x k of the selected head, coloured by one
// summary.csv column at the selected configuration.
struct OverviewState {
  std::string metric = "coverage_mean";
  bool log_scale = false;
};

struct MetricsViewState {
  bool follow_mask = true;      // plot the positions visible in the mask panel
  bool bucketed = false;        // bucket means (analyze's rule) instead of per-position values
  int n_buckets = 16;
  bool overlay_oracle = true;   // draw the oracle's coverage / kl beside the router's
  std::vector<std::string> shown = analysis::headline_position_metrics();
  bool auto_range = true;       // y range from the visible values (else the whole sequence's)
  bool difference = false;      // plot router - oracle (or shown - compared) instead of both
};

struct SummaryViewState {
  bool only_selected_head = true;  // rows of the selected layer and head only
  bool only_selected_slot = false; // rows of the selected B and k only
  std::vector<int> columns;        // summary.csv column indices shown
  std::vector<int> order;          // row indices in display order (sorted)
  int sort_column = -1;            // index into `columns`, -1 = file order
  bool sort_descending = false;
  bool order_dirty = true;         // rebuild `order` in update_viewer()
  int scroll_to = -1;              // position in `order` to scroll to once (the shown row)
  bool keep_scroll = false;        // the selection came from a click in the table: stay put
};

// Everything one load produces on the worker thread: the configuration's data, the series
// mipmaps, and the planted truth.
struct ViewData {
  analysis::PositionView view;
  std::map<std::string, analysis::SeriesLod> router_lod, oracle_lod, diff_lod;  // diff: router - oracle
  std::map<std::string, std::vector<float>> diff_values;
  std::shared_ptr<const std::vector<int32_t>> planted;   // null when the dump has none
  std::string planted_missing;                           // why not
  // Whole-sequence plot range per metric: [0, 1] for shares, else up to the 99.5th percentile.
  std::map<std::string, std::pair<float, float>> ranges;
  double load_ms = 0;
};

// d's mask as a shared object for the tile workers (it keeps d alive); null without one. Made
// where it is handed on, not stored in d: a pointer in d that owns d is a cycle, and every view
// loaded would stay in memory for the process's life.
std::shared_ptr<const analysis::MaskComparison> shared_mask(const std::shared_ptr<const ViewData>& d);

// The compared configuration: its data, and what pairs it with the shown one.
struct CompareData {
  std::shared_ptr<const ViewData> b;
  std::shared_ptr<const analysis::MaskComparison> pair;  // difference mask; null when B differs
  std::string pair_missing;
  std::map<std::string, std::vector<float>> diff_values; // shown - compared, per metric
  std::map<std::string, analysis::SeriesLod> diff_lod;
};

// The loaded data of the shown configuration, and what is derived from it.
struct LoadedView {
  analysis::ConfigKey key;
  std::shared_ptr<const analysis::PositionView> view;
  std::shared_ptr<const ViewData> data;
  // Plot range per metric [lo, hi]: [0, 1] for shares, else up to the 99.5th percentile of the
  // router's and oracle's finite values (larger values are clipped at the top).
  std::map<std::string, std::pair<float, float>> ranges;
  // Bucket means per shown metric (router; oracle where present; the compared configuration's
  // and the difference curve's, shown - compared or router - oracle, at the shown B and k's
  // first choice), for `buckets_n` buckets; `buckets_of` is the data they were made from.
  int buckets_n = 0;
  std::vector<std::string> bucket_metrics;
  std::vector<analysis::BucketSeries> router_buckets, oracle_buckets, compared_buckets, diff_buckets;
  const void* buckets_of[2] = {};
};

struct ViewerState {
  const analysis::ResultsFile* file = nullptr;
  analysis::ConfigKey selection;     // what the user asked for: one configuration of the file
  NavigatorOptions nav;
  int64_t pinned_t = -1;             // query position whose details are listed
  PositionAxis axis;                 // x: query position (mask and metrics)
  PositionAxis key_axis;             // y of the mask: key position
  MaskViewState mask;
  CompareState compare;
  OverviewState overview;
  LayoutState layout;
  MetricsViewState metrics;
  SummaryViewState summary;

  LoadedView loaded;                 // what is on screen (may lag `selection` while loading)
  std::string load_error;
  bool loading = false;
  analysis::ConfigKey pending_key;
  std::future<std::shared_ptr<const ViewData>> pending;

  // The compared configuration (compare.on): loaded like the shown one, after it.
  analysis::ConfigKey compare_loaded_key;
  std::shared_ptr<const ViewData> compare_for;       // the shown data the pair was built against
  std::shared_ptr<const CompareData> compared;
  std::string compare_error;
  bool compare_loading = false;
  std::future<std::shared_ptr<const CompareData>> compare_pending;
  NavigatorOptions compare_nav;
};

// Builds the initial state: the first configuration matching `initial` (without a router, a
// router other than the oracle is preferred). Returns false when nothing matches.
bool init_viewer(ViewerState* s, const analysis::ResultsFile& file, const analysis::ConfigFilter& initial);
// Per frame, before drawing: snap the selection to what exists, start / adopt loads, refresh
// caches. Cheap when nothing changed.
void update_viewer(ViewerState* s);
// Snaps a compare key onto what exists, as the selection is snapped (same layer and head as
// `s->selection`).
void snap_compare(ViewerState* s);
// True while a load is running or about to start.
bool viewer_busy(const ViewerState& s);
// Moves the selection to the configuration of a summary.csv row (used by the table).
void select_summary_row(ViewerState* s, int row);

}  // namespace moba::gui
