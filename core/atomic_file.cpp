#include "core/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "core/errors.h"
#include "core/interrupt.h"

namespace moba {
namespace {

// Writes `text` to a fresh temporary beside `path` and returns its name; throws OutputError
// (nothing left behind) when it cannot be written in full.
std::string write_temporary(const std::string& path, const std::string& text) {
  static std::atomic<int> counter{0};
  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(getpid())) + "-" + std::to_string(counter++);
  errno = 0;
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) throw OutputError("cannot write " + path + ": " + (errno ? std::strerror(errno) : "cannot create it"));
  f << text;
  if (!f.flush()) {
    const std::string why = errno ? std::strerror(errno) : "write failed";
    f.close();
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw OutputError("cannot write " + path + ": " + why);
  }
  return tmp;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& text) { write_files_atomic({{path, text}}); }

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<std::string> temps;
  std::error_code ignored;
  try {
    for (const auto& [path, text] : files) temps.push_back(write_temporary(path, text));
  } catch (...) {
    for (const auto& tmp : temps) std::filesystem::remove(tmp, ignored);
    throw;
  }
  for (size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    std::filesystem::rename(temps[i], files[i].first, ec);
    if (ec) {
      for (size_t j = i; j < temps.size(); ++j) std::filesystem::remove(temps[j], ignored);
      throw OutputError("cannot write " + files[i].first + ": " + ec.message());
    }
  }
}

}  // namespace moba
