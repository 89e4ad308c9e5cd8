// The dump reads' parallel pieces (core/io/dump_common.cpp widen and check_finite over blocks
// side by side) and parallel_copy (core/parallel_copy.h): the same bytes and the same first
// NaN/Inf as one thread, at sizes around their block and split thresholds.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/io/reader_common.h"
#include "core/parallel_copy.h"

using namespace moba;

TEST_CASE("parallel_copy copies every byte at any size", "[core]") {
  std::mt19937 rng(5);
  for (const size_t n : {size_t{0}, size_t{1}, size_t{63}, (size_t{1} << 20) - 1, size_t{1} << 20,
                         (size_t{2} << 20) + 3, (size_t{5} << 20) + 77}) {
    INFO("bytes " << n);
    std::vector<unsigned char> src(n), dst(n + 16, 0xab);
    for (auto& b : src) b = static_cast<unsigned char>(rng());
    parallel_copy(dst.data(), src.data(), n);
    CHECK(std::memcmp(dst.data(), src.data(), n) == 0);
    for (size_t i = n; i < n + 16; ++i) CHECK(dst[i] == 0xab);  // nothing past the end
  }
}

TEST_CASE("widen over blocks gives the serial values", "[core][io]") {
  std::mt19937 rng(6);
  for (const DType t : {DType::bf16, DType::f16, DType::f32})
    for (const int64_t n : {int64_t{1}, int64_t{65535}, int64_t{3} << 16, (int64_t{5} << 16) + 17}) {
      INFO(dtype_name(t) << " n " << n);
      std::vector<float> want(static_cast<size_t>(n));
      std::vector<unsigned char> raw(static_cast<size_t>(n) * static_cast<size_t>(dtype_size(t)));
      std::normal_distribution<float> dist(0.0f, 3.0f);
      for (int64_t i = 0; i < n; ++i) {
        const float x = round_to(t, dist(rng));
        want[static_cast<size_t>(i)] = x;
        if (t == DType::f32) {
          std::memcpy(raw.data() + 4 * i, &x, 4);
        } else {
          const uint16_t h = t == DType::f16 ? f32_to_f16(x) : f32_to_bf16(x);
          std::memcpy(raw.data() + 2 * i, &h, 2);
        }
      }
      std::vector<float> got(static_cast<size_t>(n), -1.0f);
      io::widen(t, raw.data(), n, got.data());
      CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
    }
}

TEST_CASE("check_finite names the first NaN or Inf of a large read", "[core][io]") {
  const int64_t d = 128, rows = 4096;  // 8 blocks of the parallel scan
  std::vector<float> v(static_cast<size_t>(rows * d), 0.5f);
  REQUIRE_NOTHROW(io::check_finite("f.h5", "/layers/0/q", v.data(), rows, d, 3, 100));
  // Two bad values in different blocks: the message names the earlier one.
  v[static_cast<size_t>(3000 * d + 7)] = std::numeric_limits<float>::infinity();
  v[static_cast<size_t>(2500 * d + 5)] = std::numeric_limits<float>::quiet_NaN();
  try {
    io::check_finite("f.h5", "/layers/0/q", v.data(), rows, d, 3, 100);
    FAIL("no error");
  } catch (const ValueError& e) {
    const std::string m = e.what();
    CHECK(m.find("NaN at head 3, token 2600, dim 5") != std::string::npos);
    CHECK(m.find("f.h5") != std::string::npos);
  }
  v[static_cast<size_t>(2500 * d + 5)] = 0.5f;
  CHECK_THROWS_WITH(io::check_finite("f.h5", "/layers/0/q", v.data(), rows, d, 3, 100),
                    Catch::Contains("Inf at head 3, token 3100, dim 7"));
}
