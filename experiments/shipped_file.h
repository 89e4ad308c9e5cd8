#pragma once
// Files the workbench ships beside its source (the demo's dump, the plotting script): found
// in the source tree the binary was built from, else beside the binary.
#include <string>

namespace moba::cli {

// `subdir/name` (e.g. "experiments/data", "stories15M_genesis_1024.h5") under the source
// tree, else `name`, `<last part of subdir>/name` or `subdir/name` beside the executable.
// Throws FileNotFoundError naming `what` and every place tried.
std::string find_shipped_file(const std::string& subdir, const std::string& name, const std::string& what);

}  // namespace moba::cli
