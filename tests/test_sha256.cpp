// SHA-256 (core/sha256.h): FIPS 180-4 test vectors, and the CPU's SHA-extension rounds against
// the portable ones on random data fed in random pieces (every tail length of a block).
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "core/sha256.h"

using namespace moba;

namespace {

struct ForcePortable {
  explicit ForcePortable(bool on) { sha256_force_portable(on); }
  ~ForcePortable() { sha256_force_portable(false); }
};

std::string pieces_hex(const std::string& data, uint32_t seed) {
  std::mt19937 rng(seed);
  Sha256 s;
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min<size_t>(data.size() - at, rng() % 300);
    s.update(data.data() + at, n);
    at += n;
  }
  return s.hex_digest();
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 vectors on both block paths", "[core][sha256]") {
  for (const bool portable : {false, true}) {
    INFO("portable rounds forced: " << portable << " (SHA extensions in use: " << sha256_accelerated() << ")");
    ForcePortable force(portable);
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
}

TEST_CASE("sha256: SHA-extension rounds equal the portable rounds", "[core][sha256]") {
  std::mt19937 rng(7);
  std::string data(70000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (const size_t n : {size_t{0}, size_t{1}, size_t{55}, size_t{56}, size_t{63}, size_t{64}, size_t{65},
                         size_t{119}, size_t{128}, size_t{4097}, data.size()}) {
    INFO("length " << n);
    const std::string part = data.substr(0, n);
    std::string fast, slow;
    {
      ForcePortable force(false);
      fast = pieces_hex(part, static_cast<uint32_t>(n));
      CHECK(sha256_hex(part) == fast);
    }
    {
      ForcePortable force(true);
      slow = pieces_hex(part, static_cast<uint32_t>(n) + 1);
    }
    CHECK(fast == slow);
  }
}
