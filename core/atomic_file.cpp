#include "core/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "core/interrupt.h"

namespace moba {

void write_file_atomic(const std::string& path, const std::string& text) {
  static std::atomic<int> counter{0};
  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(getpid())) + "-" + std::to_string(counter++);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp);
    f << text;
    if (!f.flush()) {
      f.close();
      std::filesystem::remove(tmp);
      throw std::runtime_error("cannot write " + tmp + " (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + ec.message());
  }
}

}  // namespace moba
