#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"

using namespace moba;

static uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
static float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Reference rounding by exhaustive neighbour search in double: the representable value
// nearest to x, ties to the one with an even last bit.
template <typename Narrow, typename Widen>
static uint16_t nearest_even(float x, Narrow, Widen widen, uint16_t lo_guess) {
  uint16_t best = lo_guess;
  double best_err = std::fabs(static_cast<double>(widen(best)) - x);
  for (int delta = -2; delta <= 2; ++delta) {
    const uint16_t c = static_cast<uint16_t>(lo_guess + delta);
    const float w = widen(c);
    if (std::isnan(w) || std::isinf(w)) continue;
    const double err = std::fabs(static_cast<double>(w) - x);
    if (err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_err = err;
    }
  }
  return best;
}

TEST_CASE("f16 widening is exact on every bit pattern and round-trips", "[dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      REQUIRE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    REQUIRE(f32_to_f16(f) == h);
  }
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0x7bff) == 65504.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
}

TEST_CASE("bf16 widening is exact on every bit pattern and round-trips", "[dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    REQUIRE(f32_to_bf16(f) == h);
  }
}

TEST_CASE("narrowing rounds to nearest, ties to even", "[dtype]") {
  SECTION("bf16 ties") {
    // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even -> 1.0
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
    // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even) -> 1+2^-6
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))) == 1.0f + std::ldexp(1.0f, -6));
    CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // overflow to +Inf
    CHECK(f32_to_bf16(-0.0f) == 0x8000);
  }
  SECTION("f16 ties, overflow and subnormals") {
    CHECK(f16_to_f32(f32_to_f16(1.0f + std::ldexp(1.0f, -11))) == 1.0f);
    CHECK(f16_to_f32(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11))) == 1.0f + std::ldexp(1.0f, -9));
    CHECK(f32_to_f16(65519.0f) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);
    CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);          // exactly half the smallest subnormal: even -> 0
    CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
    CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);          // 1.5 ulp ties to even 2
    CHECK(f32_to_f16(std::ldexp(1023.5f, -24)) == 0x0400);       // rounds up into the smallest normal
  }
  SECTION("random floats against a neighbour search") {
    uint32_t state = 12345;
    for (int i = 0; i < 200000; ++i) {
      state = state * 1664525u + 1013904223u;
      // magnitudes from 2^-30 to 2^17 cover f16 subnormals, normals and overflow edges
      const float x = from_bits((state & 0x80000000u) | (0x30800000u + (state % 0x11000000u)));
      if (std::fabs(x) < 65504.0f) {
        const uint16_t guess = f32_to_f16(x);
        REQUIRE(guess == nearest_even(x, 0, f16_to_f32, guess));
      }
      const uint16_t gb = f32_to_bf16(x);
      REQUIRE(gb == nearest_even(x, 0, bf16_to_f32, gb));
    }
    (void)bits;
  }
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
  CHECK(round_to(DType::f32, 0.1f) == 0.1f);
}
