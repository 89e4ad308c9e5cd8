#pragma once
// SHA-256 (FIPS 180-4) of files and byte strings, for provenance: every dump's digest is
// recorded (analyze's run.json, the sweep's provenance.json) so a result can be traced to
// the exact bytes it came from. The same hex digest `sha256sum` prints (checked by
// tests/scripts/test_sweep_basic.sh).
#include <cstddef>
#include <cstdint>
#include <string>

namespace moba {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::string hex_digest();  // finishes the hash; call once

 private:
  // n consecutive 64-byte blocks: x86 SHA extensions where the CPU has them (5.5x the portable
  // rounds on the development machine: 388 MB in 0.24 s instead of 1.38 s), else the portable
  // rounds.
  void blocks(const uint8_t* p, size_t n);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& bytes);
// Whether blocks run on the CPU's SHA extensions; tests force the portable rounds to compare.
bool sha256_accelerated();
void sha256_force_portable(bool on);
// Throws FileNotFoundError when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace moba
