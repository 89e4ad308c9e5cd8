#pragma once
// The viewer's entry point (`moba gui DIR`, experiments/cmd_gui.cpp). Only this header is
// seen outside gui/; it carries no ImGui, GLFW or OpenGL types.
#include <cstdint>
#include <string>

#include "analysis/config_key.h"

namespace moba::analysis {
class ResultsFile;
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
  // Headless verification: render `frames` frames (after loading settles), write the
  // framebuffer as a PNG to `screenshot`, and return.
  std::string screenshot;
  int frames = 5;
  float hover_x = -1, hover_y = -1;  // screenshot only: a pointer position (shows tooltips)
};

// Opens a window and runs the viewer until it is closed (or the screenshot is written).
// Throws UsageError when an initial-view option names something the file lacks, and
// std::runtime_error when no window can be opened (no display: run under xvfb-run).
void run_viewer(const analysis::ResultsFile& file, const GuiOptions& options);

}  // namespace moba::gui
