#pragma once
// The viewer's entry point (`moba gui DIR`, experiments/cmd_gui.cpp). Only this header is
// seen outside gui/; it carries no ImGui, GLFW or OpenGL types.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/config_key.h"

namespace moba::analysis {
class ResultsFile;
enum class CellColouring : int;  // analysis/view_lod.h; value 0 is density
}

namespace moba::gui {

struct GuiOptions {
  int width = 1600, height = 1000;  // window size in screen pixels
  // Initial view: the first configuration in the file that matches (without a router, a
  // router other than the oracle is preferred).
  analysis::ConfigFilter initial;
  int64_t query = -1;               // a query position to pin (its details are shown)
  int buckets = 0;                  // > 0: metrics as means over this many position buckets
  int64_t t_begin = 0, t_end = 0;   // initial visible positions [t_begin, t_end); end <= begin = all
  int64_t b_begin = 0, b_end = 0;   // initial visible blocks [b_begin, b_end) of the shown B; end <= begin = all
  // A compared configuration: the shown one with these fields replaced (-1 / any_router: kept).
  bool compare = false;
  analysis::ConfigFilter compare_with;
  bool compare_difference = false;  // one difference mask instead of two side by side
  std::vector<std::string> panels;  // right-hand column, top to bottom (empty: the default)
  std::string metric;               // summary column colouring the overview grids ("" default)
  bool planted = false;             // planted-truth overlay on
  analysis::CellColouring cells{};  // how zoomed-out mask cells are coloured (density)
  std::vector<std::string> metrics; // per-position metric strips (empty: the catalogue's headline ones)
  bool difference_curves = false;   // strips show router - oracle (or shown - compared)
  // Headless verification: render `frames` frames (after loading settles), write the
  // framebuffer as a PNG to `screenshot`, and return.
  std::string screenshot;
  int frames = 5;
  // Timing (`frames` without a screenshot, or `timing`): after loading settles, zoom from the
  // whole sequence into the requested range (or 1000x into its middle) and back over
  // `frames` frames, each new tile level awaited; print frame and tile-build times.
  bool timing = false;
  double opened_ms = 0;             // time spent opening the file before run_viewer (reported)
  float hover_x = -1, hover_y = -1;  // screenshot only: a pointer position (shows tooltips)
};

// Checks every view option against the file (valid layer, head, B, k, router, compare target,
// panels, metric, ranges, planted truth) without opening a window. Throws UsageError naming
// the option and the valid choices.
void validate_view(const analysis::ResultsFile& file, const GuiOptions& options);

// Opens a window and runs the viewer until it is closed (or the screenshot is written).
// Throws UsageError when an initial-view option names something the file lacks, and
// std::runtime_error when no window can be opened (no display: run under xvfb-run).
void run_viewer(const analysis::ResultsFile& file, const GuiOptions& options);

}  // namespace moba::gui
