#include "experiments/build_info.h"

namespace moba::cli {

std::string build_commit_label() {
  const BuildInfo& b = build_info();
  return std::string(b.git_commit) + (b.git_dirty ? "-dirty" : "");
}

std::string version_line() {
  const BuildInfo& b = build_info();
  std::string commit = b.git_commit;
  if (commit.size() > 12) commit.resize(12);
  return std::string("moba ") + b.version + " (git " + commit + (b.git_dirty ? "-dirty" : "") + ", " +
         b.compiler + ", " + b.build_type + ", " + (b.cuda ? "CUDA" : "CPU only") + ")";
}

}  // namespace moba::cli
