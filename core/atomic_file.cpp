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

void write_file_atomic(const std::string& path, const std::string& text) {
  static std::atomic<int> counter{0};
  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(getpid())) + "-" + std::to_string(counter++);
  {
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
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();  // before remove() reuses ec
    std::filesystem::remove(tmp, ec);
    throw OutputError("cannot write " + path + ": " + why);
  }
}

}  // namespace moba
