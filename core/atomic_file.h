#pragma once
// Whole text files written atomically: `path.tmp-PID-N` first, then renamed over `path`, so a
// reader never sees a half-written file and an interrupted writer leaves at most a temporary
// that the next write to `path` removes (core/interrupt.h remove_stale_temporaries).
#include <string>

namespace moba {

// Throws OutputError (core/errors.h) naming the file and the reason when it cannot be written
// or renamed (the temporary is removed then).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace moba
