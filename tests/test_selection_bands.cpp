// merge_selection_bands (analysis/selection_bands.h): the GPU analysis' kept selections rebuilt
// from nested-budget bands, in the host path's layout.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "analysis/selection_bands.h"

using moba::analysis::merge_selection_bands;

TEST_CASE("selection bands merge into sorted rows, -1 padded, at most k", "[analysis][selection]") {
  // 3 rows; band 0 has width 2 (the current block and the best routable one), band 1 width 3.
  const std::vector<std::vector<int32_t>> bands = {
      {7, 2, /**/ 0, -1, /**/ 9, 4},
      {5, 1, 3, /**/ -1, -1, -1, /**/ 8, 6, 0},
  };
  const std::vector<int> widths = {2, 3};
  SECTION("both bands: the union, ascending") {
    std::vector<int32_t> out(3 * 5, 42);
    merge_selection_bands(bands, widths, 3, 5, out.data());
    CHECK(out == std::vector<int32_t>{1, 2, 3, 5, 7, /**/ 0, -1, -1, -1, -1, /**/ 0, 4, 6, 8, 9});
  }
  SECTION("the first band alone, k wider than the band: -1 after the blocks") {
    std::vector<int32_t> out(3 * 3, 42);
    merge_selection_bands({bands[0]}, {2}, 3, 3, out.data());
    CHECK(out == std::vector<int32_t>{2, 7, -1, /**/ 0, -1, -1, /**/ 4, 9, -1});
  }
  SECTION("fewer widths than bands: the later bands are not read") {
    std::vector<int32_t> out(3 * 3, 42);
    merge_selection_bands(bands, {2}, 3, 3, out.data());
    CHECK(out == std::vector<int32_t>{2, 7, -1, /**/ 0, -1, -1, /**/ 4, 9, -1});
  }
  SECTION("k smaller than the valid entries: the first k in band order, then sorted") {
    std::vector<int32_t> out(3 * 3, 42);
    merge_selection_bands(bands, widths, 3, 3, out.data());
    CHECK(out == std::vector<int32_t>{2, 5, 7, /**/ 0, -1, -1, /**/ 4, 8, 9});
  }
  SECTION("no rows: nothing written") {
    std::vector<int32_t> out(4, 42);
    merge_selection_bands(bands, widths, 0, 2, out.data());
    CHECK(out == std::vector<int32_t>{42, 42, 42, 42});
  }
}
