// The viewer's state machine without a window (gui/viewer_state.h): loads run on worker
// threads and are adopted by update_viewer, as in `moba gui`. Built with -DMOBA_GUI=ON only.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "analysis/results_file.h"
#include "gui/viewer_state.h"

using namespace moba;
using namespace moba::gui;

namespace {

// update_viewer until nothing is loading (at most ~20 s).
void settle(ViewerState* s) {
  for (int i = 0; i < 4000 && viewer_busy(*s); ++i) {
    update_viewer(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE_FALSE(viewer_busy(*s));
}

}  // namespace

// A view's data used to hold an aliasing pointer to its own mask (for the tile workers), which
// owned the data itself: a cycle, so every configuration the user looked at stayed in memory
// for the viewer's life (found by LeakSanitizer on `moba gui`).
TEST_CASE("gui: a loaded configuration is freed once the viewer moves on and the tiles let go") {
  // Layout-1 fixture (test_results_file.cpp): 2 heads x B 16, 32 x k 2 x 3 routers, the
  // selection kept for head 1 at B16_k2 only.
  const analysis::ResultsFile file(std::string(MOBA_SOURCE_DIR) + "/tests/data/analysis_layout1");
  analysis::ConfigFilter shown;
  shown.head = 1;
  shown.block_size = 16;
  shown.top_k = 2;
  shown.any_router = false;
  shown.router = analysis::RouterKind::moba;
  ViewerState s;
  REQUIRE(init_viewer(&s, file, shown));
  settle(&s);
  REQUIRE(s.loaded.data);
  REQUIRE(s.loaded.data->view.has_mask);
  const std::weak_ptr<const ViewData> first = s.loaded.data;
  {
    // The tile workers' handle on the mask keeps its data alive while they hold it ...
    const std::shared_ptr<const analysis::MaskComparison> tiles = shared_mask(s.loaded.data);
    REQUIRE(tiles);
    CHECK(tiles.get() == &s.loaded.data->view.mask);
    s.selection.block_size = 32;
    settle(&s);
    REQUIRE(s.loaded.data);
    CHECK(s.loaded.key.block_size == 32);
    CHECK_FALSE(s.loaded.data->view.has_mask);
    CHECK(shared_mask(s.loaded.data) == nullptr);  // nothing to shade: no selection kept
    CHECK_FALSE(first.expired());
  }
  // ... and nothing else does.
  CHECK(first.expired());
  const std::weak_ptr<const ViewData> second = s.loaded.data;
  s.selection.block_size = 16;
  settle(&s);
  CHECK(s.loaded.data->view.has_mask);
  CHECK(second.expired());
}
