// `moba replay`: runs a llama2.c model again with MoBA sparse attention in chosen layers and
// measures the real next-token loss beside the workbench's proxies (docs/replay.md). A thin
// wrapper, as `moba plot`: the work is experiments/replay/replay.py (numpy + h5py) under
// Debian's /usr/bin/python3 (MOBA_PYTHON overrides). It hands the script this binary (for the
// `analyze` of the dump and the layer-0 `route` check) and the build commit (for run.json).
// `moba replay report RUN` rebuilds a run's report. The script's exit status is ours (0 ok,
// 2 bad input, 1 internal error or a failed acceptance check); a signal to moba is passed on.
#include <cstdio>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/interrupt.h"
#include "experiments/build_info.h"
#include "experiments/child_process.h"
#include "experiments/command.h"
#include "experiments/shipped_file.h"

namespace moba::cli {
namespace {

constexpr const char* kScript = "replay.py";

int run_replay(const std::vector<std::string>& argv) {
  const std::string python = shipped_python("python3, python3-numpy and python3-h5py");
  const std::string script = find_shipped_file("experiments/replay", kScript, "the replay script");
  std::vector<std::string> cmd = {python, script};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  const bool report_only = !argv.empty() && argv.front() == "report";
  if (!report_only) {
    const std::string self = executable_path();
    cmd.insert(cmd.end(), {"--moba", self.empty() ? "moba" : self, "--commit", build_commit_label()});
  }
  const int rc = exit_code_of(run_child_process(cmd));
  if (const int sig = pending_interrupt(); sig != 0) throw Interrupted(sig);
  if (rc == 0 || rc == 1 || rc == 2) return rc;  // the script said what went wrong
  std::fprintf(stderr, "moba replay: internal error: %s exited with status %d\n", script.c_str(), rc);
  return 1;
}

const Command kReplay("replay", "replay a llama2.c model under MoBA routers: real loss beside the proxies",
                      run_replay);

}  // namespace
}  // namespace moba::cli
