#pragma once
// What this binary was built from: recorded in every output's provenance (run.json,
// analysis.h5 and route.h5 attributes) and printed by `moba --version`.
#include <string>

namespace moba::cli {

struct BuildInfo {
  const char* version;     // project version (CMakeLists.txt)
  const char* git_commit;  // full commit hash of the source tree at build time, or "unknown"
  bool git_dirty;          // tracked files differed from that commit at build time
  const char* compiler;    // e.g. "GNU 12.2.0"
  const char* build_type;  // CMAKE_BUILD_TYPE
  bool cuda;               // the CUDA backend is compiled in
};

const BuildInfo& build_info();

// "<commit>" or "<commit>-dirty": the value of the git_commit fields of every output.
std::string build_commit_label();

// `moba --version`: one line, e.g. "moba 0.1 (git 1a2b3c4d5e6f-dirty, GNU 12.2.0, Release, CUDA)".
std::string version_line();

}  // namespace moba::cli
