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

namespace moba::gui {

// The choices the navigator offers for the current selection, from the file's configurations.
struct NavigatorOptions {
  std::vector<int> layers;
  std::vector<int64_t> heads;                       // of the selected layer
  std::vector<int64_t> heads_with_arrays;           // those with per-position arrays kept (any slot)
  std::vector<std::pair<int64_t, int>> slots;       // (B, k) of the selected layer and head
  std::vector<analysis::RouterKind> routers;        // of the selected slot
};

// The position axis shared by the mask and metrics panels: position t maps to pixel
// x = (t - t_begin) / t_per_px inside the plot area.
struct PositionAxis {
  double t_begin = 0;
  double t_per_px = 0;   // 0 = fit the whole sequence into the plot width (set on first draw)
  float plot_width = 0;  // of the last drawn mask plot, pixels
  // A requested range [begin, end) (e.g. from the command line), applied once the plot width
  // is known; end <= begin = none.
  double request_begin = 0, request_end = 0;
};

struct MaskViewState {
  bool compare_oracle = true;   // colour hits / false picks / misses when the oracle is present
  bool shade_causal = true;     // tint the causally available blocks (b <= current block)
  float block_rows_px = 0;      // drawn height per block, from the last frame (read-only)
};

struct MetricsViewState {
  bool follow_mask = true;      // plot the positions visible in the mask panel
  bool bucketed = false;        // bucket means (analyze's rule) instead of per-position values
  int n_buckets = 16;
  bool overlay_oracle = true;   // draw the oracle's coverage / kl beside the router's
  std::vector<std::string> shown = analysis::headline_position_metrics();
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

// The loaded data of the shown configuration, and what is derived from it.
struct LoadedView {
  analysis::ConfigKey key;
  std::shared_ptr<const analysis::PositionView> view;
  // Plot range per metric [lo, hi]: [0, 1] for shares, else up to the 99.5th percentile of the
  // router's and oracle's finite values (larger values are clipped at the top).
  std::map<std::string, std::pair<float, float>> ranges;
  // Bucket means per shown metric (router; oracle where present), for `buckets_n` buckets.
  int buckets_n = 0;
  std::vector<std::string> bucket_metrics;
  std::vector<analysis::BucketSeries> router_buckets, oracle_buckets;
};

struct ViewerState {
  const analysis::ResultsFile* file = nullptr;
  analysis::ConfigKey selection;     // what the user asked for: one configuration of the file
  NavigatorOptions nav;
  int64_t pinned_t = -1;             // query position whose details are listed
  PositionAxis axis;
  MaskViewState mask;
  MetricsViewState metrics;
  SummaryViewState summary;

  LoadedView loaded;                 // what is on screen (may lag `selection` while loading)
  std::string load_error;
  bool loading = false;
  analysis::ConfigKey pending_key;
  std::future<std::shared_ptr<const analysis::PositionView>> pending;
};

// Builds the initial state: the first configuration matching `initial` (without a router, a
// router other than the oracle is preferred). Returns false when nothing matches.
bool init_viewer(ViewerState* s, const analysis::ResultsFile& file, const analysis::ConfigFilter& initial);
// Per frame, before drawing: snap the selection to what exists, start / adopt loads, refresh
// caches. Cheap when nothing changed.
void update_viewer(ViewerState* s);
// True while a load is running or about to start.
bool viewer_busy(const ViewerState& s);
// Moves the selection to the configuration of a summary.csv row (used by the table).
void select_summary_row(ViewerState* s, int row);

}  // namespace moba::gui
