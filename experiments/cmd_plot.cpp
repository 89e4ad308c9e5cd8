// `moba plot DIR`: figures (PNG + SVG in DIR/plots/) and a self-contained DIR/index.html for
// a `moba sweep` run directory (DIR/sweep.csv) or a `moba analyze --out DIR` output
// (DIR/summary.csv, aggregate.csv, buckets.csv, run.json). A thin wrapper: the figures are
// drawn by experiments/plot/plot_results.py under Debian's /usr/bin/python3 with
// python3-matplotlib (docs/plots.md). The script's exit status is ours (0 ok, 2 bad input or
// matplotlib missing); a signal to moba is passed on to it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/interrupt.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/child_process.h"
#include "experiments/command.h"
#include "experiments/shipped_file.h"

namespace fs = std::filesystem;

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba plot DIR\n"
    "\n"
    "Draws the figures of a results directory into DIR/plots/ (PNG and SVG) and writes\n"
    "DIR/index.html, which shows them with the result tables (open it in a browser; it needs\n"
    "nothing else). DIR is a `moba sweep` run directory (DIR/sweep.csv) or the output of\n"
    "`moba analyze ... --out DIR` (DIR/summary.csv, aggregate.csv, buckets.csv, run.json).\n"
    "Figures: coverage vs B, routing SNR measured vs model, p_fail calibration, -ln R and\n"
    "output error by position, layer x head heatmaps, achieved vs nominal sparsity\n"
    "(docs/plots.md). Re-running gives byte-identical files.\n"
    "\n"
    "Needs Debian's python3-matplotlib (./install-deps.sh installs it); MOBA_PYTHON overrides\n"
    "the interpreter (/usr/bin/python3).\n";

constexpr const char* kScript = "plot_results.py";

int run_plot(const std::vector<std::string>& argv) {
  const Args args(argv, {}, {"help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw UsageError("moba plot takes one directory (see moba plot --help)");
  const fs::path dir = args.positional().front();
  if (!fs::is_directory(dir))
    throw FileNotFoundError(dir.string(), "",
                            "no such directory (give a `moba sweep` run directory or a `moba analyze --out` directory)");
  if (!fs::is_regular_file(dir / "sweep.csv") && !fs::is_regular_file(dir / "summary.csv") &&
      !fs::is_regular_file(dir / "aggregate.csv"))
    throw FileNotFoundError(dir.string(), "",
                            "no results here: expected sweep.csv (moba sweep) or summary.csv / aggregate.csv "
                            "(moba analyze --out DIR); see docs/plots.md");

  const std::string python = shipped_python("python3 and python3-matplotlib");
  const std::string script = find_shipped_file("experiments/plot", kScript, "the plotting script");
  const int rc = exit_code_of(run_child_process({python, script, dir.string(), "--commit", build_commit_label()}));
  if (const int sig = pending_interrupt(); sig != 0) throw Interrupted(sig);
  if (rc == 0 || rc == 2) return rc;  // 2: the script said what is wrong with the input
  std::fprintf(stderr, "moba plot: internal error: %s exited with status %d\n", script.c_str(), rc);
  return 1;
}

const Command kPlot("plot", "figures (PNG, SVG) and index.html for a sweep or analyze directory", run_plot);

}  // namespace
}  // namespace moba::cli
