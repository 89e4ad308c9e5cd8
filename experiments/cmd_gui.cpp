// `moba gui DIR`: the Dear ImGui viewer of a `moba analyze --out DIR` result (DESIGN.md §7).
// Compiled into every build; the viewer itself exists only in builds configured with
// -DMOBA_GUI=ON (gui/CMakeLists.txt defines MOBA_HAVE_GUI for this target). Without it the
// command says so and exits 2.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/errors.h"
#include "experiments/args.h"
#include "experiments/command.h"

#ifdef MOBA_HAVE_GUI
#include "analysis/results_file.h"
#include "analysis/view_lod.h"
#include "gui/gui.h"
#endif

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba gui DIR [--layer L] [--head H] [--block-size B] [--top-k K] [--router R] [--query T]\n"
    "                    [--positions A:B] [--blocks A:B] [--compare-router R] [--compare-block-size B]\n"
    "                    [--compare-top-k K] [--compare-mode side|difference] [--panels LIST] [--metric NAME]\n"
    "                    [--planted] [--cells density|presence|dominant] [--metrics LIST] [--difference]\n"
    "                    [--buckets N] [--size WxH]\n"
    "                    [--screenshot FILE.png [--hover X,Y]] [--frames N]\n"
    "\n"
    "Interactive viewer of `moba analyze ... --out DIR` (DIR or DIR/analysis.h5): a navigator\n"
    "(layer, head, B x k, router), the block-selection mask (query position x block; with the\n"
    "oracle analysed too: hits, false picks and misses), per-position metrics (coverage, KL,\n"
    "block recall, output error; per position or as bucket means, the rule of buckets.csv) and\n"
    "summary.csv as a sortable table. Every number shown is one analyze wrote.\n"
    "\n"
    "  --layer/--head/--block-size/--top-k/--router   the configuration shown first\n"
    "  --query T               pin query position T (its selections and metrics are listed)\n"
    "  --positions A:B         show query positions [A, B) first (all)\n"
    "  --blocks A:B            show blocks [A, B) of the shown block size first (all)\n"
    "  --compare-router R, --compare-block-size B, --compare-top-k K\n"
    "                          compare with the shown configuration with these fields replaced\n"
    "  --compare-mode side|difference   two masks on the same axes (side), or one mask of\n"
    "                          both / only shown / only compared (difference, same B) (side)\n"
    "  --panels LIST           right-hand panels, top to bottom, of mask, metrics, summary,\n"
    "                          overview, configs, snr (mask,metrics,summary)\n"
    "  --metric NAME           summary column colouring the overview grids (coverage_mean)\n"
    "  --planted               overlay the planted truth of a synthetic dump on the mask\n"
    "  --cells density|presence|dominant   how a zoomed-out mask cell (many positions x blocks)\n"
    "                          is coloured: density: each class present in a quadrant, as bright\n"
    "                          as its count (log scale up to the most in one cell at this zoom;\n"
    "                          one entry is dim but never hidden); presence: each class present at\n"
    "                          full colour; dominant: only the class with most entries, at its\n"
    "                          density (density)\n"
    "  --metrics LIST          per-position metric strips (coverage,kl,block_recall,output_rel_err)\n"
    "  --difference            strips show router - oracle (or shown - compared) difference curves\n"
    "  --buckets N             plot metrics as means over N position buckets (per position)\n"
    "  --size WxH              window size (1600x1000)\n"
    "  --screenshot FILE.png   render --frames N frames (5) once loading settles, write the\n"
    "                          window as a PNG, and exit (headless: xvfb-run -s \"-screen 0\n"
    "                          1600x1000x24\" moba gui DIR --screenshot out.png)\n"
    "  --hover X,Y             with --screenshot: put the pointer at window pixel X,Y\n"
    "  --frames N              without --screenshot: timing run, zooming from the whole sequence\n"
    "                          into --positions/--blocks (or 1000x into the middle) and back;\n"
    "                          prints open time, frame times, tile-build times and peak RSS\n"
    "\n"
    "Mouse: wheel zooms the position axis around the pointer, drag pans, click pins a query;\n"
    "hover the mask for a query's block, its class and its coverage / KL.\n";

#ifdef MOBA_HAVE_GUI
// "AxB" -> (a, b).
std::pair<int64_t, int64_t> parse_pair(const std::string& flag, const std::string& text, char sep, int64_t lo,
                                       int64_t hi) {
  const size_t at = text.find(sep);
  if (at == std::string::npos)
    throw UsageError("--" + flag + ": expected two numbers separated by '" + std::string(1, sep) + "', got '" + text + "'");
  return {parse_int("--" + flag, text.substr(0, at), lo, hi), parse_int("--" + flag, text.substr(at + 1), lo, hi)};
}
#endif

int run_gui(const std::vector<std::string>& argv) {
  const Args args(argv,
                  {"layer", "head", "block-size", "top-k", "router", "query", "positions", "blocks", "compare-router",
                   "compare-block-size", "compare-top-k", "compare-mode", "panels", "metric", "buckets", "size",
                   "screenshot", "frames", "hover", "metrics", "cells"},
                  {"help", "planted", "difference"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
#ifndef MOBA_HAVE_GUI
  std::fprintf(stderr, "moba gui: error: this build has no GUI (configure with -DMOBA_GUI=ON)\n");
  return 2;
#else
  if (args.positional().size() != 1) throw UsageError("expected exactly one DIR argument (see --help)");
  gui::GuiOptions o;
  o.initial.layer = static_cast<int>(args.integer("layer", -1, 0, INT32_MAX));
  o.initial.head = args.integer("head", -1, 0, INT32_MAX);
  o.initial.block_size = args.integer("block-size", -1, 1, INT32_MAX);
  o.initial.top_k = static_cast<int>(args.integer("top-k", -1, 1, INT32_MAX));
  if (args.has("router")) {
    o.initial.any_router = false;
    o.initial.router = analysis::router_from_name(args.str("router", ""));
  }
  o.query = args.integer("query", -1, 0, INT64_MAX / 2);
  if (args.has("positions")) {
    const auto [a, b] = parse_pair("positions", args.str("positions", ""), ':', 0, INT64_MAX / 2);
    if (b <= a) throw UsageError("--positions A:B needs A < B");
    o.t_begin = a;
    o.t_end = b;
  }
  if (args.has("blocks")) {
    const auto [a, b] = parse_pair("blocks", args.str("blocks", ""), ':', 0, INT64_MAX / 2);
    if (b <= a) throw UsageError("--blocks A:B needs A < B");
    o.b_begin = a;
    o.b_end = b;
  }
  o.compare_with.block_size = args.integer("compare-block-size", -1, 1, INT32_MAX);
  o.compare_with.top_k = static_cast<int>(args.integer("compare-top-k", -1, 1, INT32_MAX));
  if (args.has("compare-router")) {
    o.compare_with.any_router = false;
    o.compare_with.router = analysis::router_from_name(args.str("compare-router", ""));
  }
  o.compare = args.has("compare-router") || args.has("compare-block-size") || args.has("compare-top-k");
  if (args.has("compare-mode") && !o.compare)
    throw UsageError("--compare-mode needs a compared configuration: --compare-router, --compare-block-size or --compare-top-k");
  o.compare_difference = args.choice("compare-mode", "side", {"side", "difference"}) == "difference";
  o.panels = args.str_list("panels", {});
  o.metric = args.str("metric", "");
  o.planted = args.flag("planted");
  analysis::parse_cell_colouring(args.choice("cells", "density", {"density", "presence", "dominant"}), &o.cells);
  o.metrics = args.str_list("metrics", {});
  o.difference_curves = args.flag("difference");
  if (args.has("size")) {
    const auto [w, h] = parse_pair("size", args.str("size", ""), 'x', 200, 16384);
    o.width = static_cast<int>(w);
    o.height = static_cast<int>(h);
  }
  o.buckets = static_cast<int>(args.integer("buckets", 0, 1, 256));
  o.screenshot = args.str("screenshot", "");
  o.frames = static_cast<int>(args.integer("frames", 5, 1, 100000));
  o.timing = o.screenshot.empty() && args.has("frames");
  if (args.has("hover")) {
    if (o.screenshot.empty()) throw UsageError("--hover is for --screenshot runs");
    const auto [x, y] = parse_pair("hover", args.str("hover", ""), ',', 0, 16384);
    o.hover_x = static_cast<float>(x);
    o.hover_y = static_cast<float>(y);
  }
  // Opened before any window: bad input is exit 2 with the file named, display or not.
  const auto start = std::chrono::steady_clock::now();
  const analysis::ResultsFile file(args.positional()[0]);
  o.opened_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  gui::validate_view(file, o);  // every view option, before a window opens (exit 2 names the choices)
  gui::run_viewer(file, o);
  if (!o.screenshot.empty()) std::printf("wrote %s\n", o.screenshot.c_str());
  return 0;
#endif
}

const Command kGui("gui", "Dear ImGui viewer of an analyze output (needs -DMOBA_GUI=ON)", run_gui);

}  // namespace
}  // namespace moba::cli
