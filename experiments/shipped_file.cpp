#include "experiments/shipped_file.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/errors.h"

namespace fs = std::filesystem;

namespace moba::cli {

std::string executable_path() {
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return "";
  exe[n] = '\0';
  return exe;
}

std::string shipped_python(const std::string& packages) {
  const char* env = std::getenv("MOBA_PYTHON");
  const std::string python = env != nullptr && *env != '\0' ? env : "/usr/bin/python3";
  if (access(python.c_str(), X_OK) != 0)
    throw FileNotFoundError(python, "", "no Python interpreter here; install " + packages +
                                            " (./install-deps.sh) or set MOBA_PYTHON");
  return python;
}

std::string find_shipped_file(const std::string& subdir, const std::string& name, const std::string& what) {
  std::vector<fs::path> candidates;
#ifdef MOBA_SOURCE_DIR
  candidates.push_back(fs::path(MOBA_SOURCE_DIR) / subdir / name);
#endif
  if (const std::string exe = executable_path(); !exe.empty()) {
    const fs::path dir = fs::path(exe).parent_path();
    for (const fs::path& p : {dir / name, dir / fs::path(subdir).filename() / name, dir / subdir / name})
      candidates.push_back(p);
  }
  for (const auto& p : candidates)
    if (fs::is_regular_file(p)) return p.string();
  std::string tried;
  for (const auto& p : candidates) tried += "\n  " + p.string();
  throw FileNotFoundError(name, "", what + " was not found; looked in:" + tried);
}

}  // namespace moba::cli
