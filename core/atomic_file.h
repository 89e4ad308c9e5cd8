#pragma once
// Whole text files written atomically: `path.tmp-PID-N` first, then renamed over `path`, so a
// reader never sees a half-written file and an interrupted writer leaves at most a temporary
// that the next write to `path` removes (core/interrupt.h remove_stale_temporaries).
#include <string>
#include <utility>
#include <vector>

namespace moba {

// Throws OutputError (core/errors.h) naming the file and the reason when it cannot be written
// or renamed (the temporary is removed then).
void write_file_atomic(const std::string& path, const std::string& text);

// A set of (path, text) files that belong together (one command's outputs): every temporary
// is written first, then all are renamed, so a failure to write any of them (a full disk)
// leaves none of the set new and no temporary behind. A failing rename (rare: the temporaries
// are beside their targets) leaves the files renamed before it.
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);

}  // namespace moba
