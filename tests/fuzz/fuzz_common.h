#pragma once
// Shared by the libFuzzer targets (tests/fuzz/README.md): the input as a file, and reading
// every part of a dump the way `moba info --check` does. Bad input must end in the typed
// errors of core/errors.h (exit 2 in the CLI); anything else escaping is a finding, and so
// is every sanitizer report.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/dump.h"
#include "core/errors.h"

namespace moba::fuzz {

// The bytes as a file of this process (in /dev/shm when present), removed on destruction.
class InputFile {
 public:
  InputFile(const uint8_t* data, size_t size, const char* suffix) {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/moba-fuzz-" + std::to_string(getpid()) + suffix;
    FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) __builtin_trap();
    if (size && std::fwrite(data, 1, size, f) != size) __builtin_trap();
    std::fclose(f);
  }
  ~InputFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Opens the dump and reads every tensor, head by head, plus token_ids and planted.
inline void read_everything(const std::string& path) {
  try {
    const auto reader = open_dump(path);
    const DumpInfo& info = reader->info();
    for (const LayerInfo& l : info.layers) {
      for (const TensorKind kind : {TensorKind::q, TensorKind::k, TensorKind::v, TensorKind::o}) {
        if (kind == TensorKind::o && !l.has_o) continue;
        const int64_t heads = kind == TensorKind::q || kind == TensorKind::o ? l.n_q_heads : l.n_kv_heads;
        for (int64_t h = 0; h < heads; ++h) (void)reader->read(l.index, kind, h, 1);
      }
      if (l.has_planted) (void)reader->read_planted(l.index);
    }
    (void)reader->read_token_ids();
    (void)layout_warning(info);
  } catch (const InputError&) {
  }
}

}  // namespace moba::fuzz
