#pragma once
// Files the workbench ships beside its source (the demo's dump, the plotting script): found
// in the source tree the binary was built from, else beside the binary; and the Python that
// runs the shipped scripts.
#include <string>

namespace moba::cli {

// `subdir/name` (e.g. "experiments/data", "stories15M_genesis_1024.h5") under the source
// tree, else `name`, `<last part of subdir>/name` or `subdir/name` beside the executable.
// Throws FileNotFoundError naming `what` and every place tried.
std::string find_shipped_file(const std::string& subdir, const std::string& name, const std::string& what);

// This executable's path (/proc/self/exe); empty when it cannot be read.
std::string executable_path();

// The interpreter that runs the shipped Python scripts: $MOBA_PYTHON, else Debian's
// /usr/bin/python3. Throws FileNotFoundError when it is not executable, telling the user to
// install `packages` (e.g. "python3 and python3-matplotlib") or set MOBA_PYTHON.
std::string shipped_python(const std::string& packages);

}  // namespace moba::cli
