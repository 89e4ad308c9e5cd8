// The viewer's level-of-detail data (analysis/view_lod.h) without the viewer: mask tiles keep
// every entry at every level (counts add up, a single miss survives the coarsest level in the
// right cell), the level rule never puts two cells in one pixel, series mipmaps agree with a
// brute-force min / max / mean, and compare_selection_pair classifies two selections.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>

#include "analysis/results_file.h"
#include "analysis/view_lod.h"
#include "core/errors.h"

using namespace moba;
using namespace moba::analysis;

namespace {

// A selection [T, K] of ascending blocks, current block included, -1 padded.
ResultArrays make_selection(int64_t T, int64_t B, int K, RouterKind router, uint32_t seed) {
  ResultArrays a;
  a.config.block_size = B;
  a.config.top_k = K;
  a.config.router = router;
  a.stored.selection = true;
  a.n_tokens = T;
  a.n_blocks = (T + B - 1) / B;
  a.selected.assign(static_cast<size_t>(T * K), -1);
  std::mt19937 rng(seed);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = t / B;
    std::vector<int32_t> row{static_cast<int32_t>(c)};
    for (int tries = 0; static_cast<int>(row.size()) < K && static_cast<int64_t>(row.size()) <= c && tries < 64; ++tries) {
      const int32_t b = static_cast<int32_t>(rng() % static_cast<uint32_t>(c + 1));
      if (std::find(row.begin(), row.end(), b) == row.end()) row.push_back(b);
    }
    std::sort(row.begin(), row.end());
    std::copy(row.begin(), row.end(), a.selected.begin() + t * K);
  }
  return a;
}

std::array<int64_t, kTileChannels> sum_level(const MaskComparison& m, int lx, int ly) {
  std::array<int64_t, kTileChannels> sum{};
  const int64_t span_t = int64_t{kTileCells} << lx, span_b = int64_t{kTileCells} << ly;
  for (int64_t tx = 0; tx * span_t < m.n_tokens; ++tx)
    for (int64_t ty = 0; ty * span_b < m.n_blocks; ++ty) {
      const MaskTile tile = build_mask_tile(m, nullptr, {lx, ly, tx, ty});
      for (int c = 0; c < kTileChannels; ++c)
        for (const uint16_t n : tile.counts[static_cast<size_t>(c)]) sum[static_cast<size_t>(c)] += n;
    }
  return sum;
}

}  // namespace

TEST_CASE("tile_level: the finest level whose cells are at least one pixel", "[view_lod]") {
  CHECK(tile_level(0.01) == 0);
  CHECK(tile_level(1.0) == 0);
  CHECK(tile_level(1.5) == 1);
  CHECK(tile_level(2.0) == 1);
  CHECK(tile_level(2.01) == 2);
  CHECK(tile_level(1000.0) == 10);
  CHECK(tile_level(1e30) == kTileLevels - 1);
}

TEST_CASE("mask tiles keep every entry at every level", "[view_lod]") {
  const int64_t T = 3001, B = 16;  // ragged last block
  const ResultArrays router = make_selection(T, B, 4, RouterKind::moba, 1);
  const ResultArrays oracle = make_selection(T, B, 4, RouterKind::oracle, 2);
  const MaskComparison m = compare_selections(router, &oracle);
  std::array<int64_t, kTileChannels> expect{};
  for (size_t i = 0; i < m.blocks.size(); ++i)
    if (m.blocks[i] >= 0) ++expect[static_cast<size_t>(channel_of(m.cells[i]))];
  REQUIRE(expect[static_cast<size_t>(TileChannel::miss)] > 0);
  for (const auto& [lx, ly] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {0, 3}, {3, 2}, {5, 5}, {12, 8}}) {
    INFO("level " << lx << "/" << ly);
    CHECK(sum_level(m, lx, ly) == expect);
  }
}

TEST_CASE("a single miss survives the coarsest level in its cell", "[view_lod]") {
  const int64_t T = 20000, B = 8;
  ResultArrays router = make_selection(T, B, 2, RouterKind::moba, 3);
  ResultArrays oracle = router;
  oracle.config.router = RouterKind::oracle;
  // One query where the oracle picks another block than the router.
  const int64_t t = 15001, K = 2;
  int32_t* row = &oracle.selected[static_cast<size_t>(t * K)];
  const int32_t c = static_cast<int32_t>(t / B);
  const int32_t other = row[0] == c ? row[1] : row[0];
  const int32_t miss_block = other == 7 ? 9 : 7;
  if (row[0] == c) row[1] = miss_block;
  else row[0] = miss_block;
  std::sort(row, row + K);
  const MaskComparison m = compare_selections(router, &oracle);
  REQUIRE(m.total_miss == 1);
  REQUIRE(m.total_false == 1);
  for (const int level : {0, 3, 7, 11}) {
    const int64_t span_t = int64_t{kTileCells} << level, span_b = int64_t{kTileCells} << level;
    const TileKey key{level, level, t / span_t, miss_block / span_b};
    const MaskTile tile = build_mask_tile(m, nullptr, key);
    const int cx = static_cast<int>((t - key.tx * span_t) >> level), cy = static_cast<int>((miss_block - key.ty * span_b) >> level);
    INFO("level " << level);
    CHECK(tile.count(TileChannel::miss, cx, cy) == 1);
  }
}

TEST_CASE("planted channel counts one entry per planted query", "[view_lod]") {
  const int64_t T = 1000, B = 16;
  const ResultArrays router = make_selection(T, B, 3, RouterKind::moba, 4);
  const MaskComparison m = compare_selections(router, nullptr);
  std::vector<int32_t> planted(static_cast<size_t>(T), -1);
  for (int64_t t = 300; t < T; t += 7) planted[static_cast<size_t>(t)] = static_cast<int32_t>(t - 250);
  const MaskTile tile = build_mask_tile(m, &planted, {2, 0, 0, 0});
  int64_t n = 0;
  for (const uint16_t x : tile.counts[static_cast<size_t>(TileChannel::planted)]) n += x;
  CHECK(n == (T - 300 + 6) / 7);
  CHECK(tile.count(TileChannel::planted, 300 >> 2, (300 - 250) / 16) == 1);
}

TEST_CASE("series mipmaps agree with brute force", "[view_lod]") {
  std::mt19937 rng(7);
  std::vector<float> v(10007);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = i % 97 == 5 ? std::numeric_limits<float>::quiet_NaN() : std::uniform_real_distribution<float>(-2, 3)(rng);
  const SeriesLod lod = build_series_lod(v);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t a = rng() % v.size(), b = a + 1 + rng() % (v.size() - static_cast<size_t>(a));
    // With windows of 1 (raw values) the answer is exact.
    float mn, mx, mean;
    REQUIRE(lod.range(a, b, 1, &mn, &mx, &mean));
    float emn = INFINITY, emx = -INFINITY;
    double sum = 0;
    int n = 0;
    for (int64_t t = a; t < b; ++t)
      if (std::isfinite(v[static_cast<size_t>(t)])) emn = std::min(emn, v[static_cast<size_t>(t)]), emx = std::max(emx, v[static_cast<size_t>(t)]), sum += v[static_cast<size_t>(t)], ++n;
    CHECK(mn == emn);
    CHECK(mx == emx);
    CHECK(mean == Approx(sum / n).epsilon(1e-5));
    // Window-aligned ranges are exact at every level.
    for (int l = kSeriesBaseLevel; l < 12; ++l) {
      const int64_t w = int64_t{1} << l, a2 = (a / w) * w, b2 = std::min<int64_t>(static_cast<int64_t>(v.size()), ((b + w - 1) / w) * w);
      float m2, x2, e2;
      REQUIRE(lod.range(a2, b2, w, &m2, &x2, &e2));
      float fmn = INFINITY, fmx = -INFINITY;
      double s2 = 0;
      int n2 = 0;
      for (int64_t t = a2; t < b2; ++t)
        if (std::isfinite(v[static_cast<size_t>(t)])) fmn = std::min(fmn, v[static_cast<size_t>(t)]), fmx = std::max(fmx, v[static_cast<size_t>(t)]), s2 += v[static_cast<size_t>(t)], ++n2;
      CHECK(m2 == fmn);
      CHECK(x2 == fmx);
      CHECK(e2 == Approx(s2 / n2).epsilon(1e-4));
    }
  }
}

TEST_CASE("compare_selection_pair: both / only a / only b, k may differ", "[view_lod]") {
  ResultArrays a, b;
  a.config.block_size = b.config.block_size = 4;
  a.config.top_k = 3;
  b.config.top_k = 2;
  a.stored.selection = b.stored.selection = true;
  // T = 20; only the row of t = 19 (current block 4) is filled.
  a.n_tokens = b.n_tokens = 20;
  a.n_blocks = b.n_blocks = 5;
  a.selected.assign(20 * 3, -1);
  b.selected.assign(20 * 2, -1);
  const int32_t ra[3] = {1, 2, 4}, rb[2] = {0, 4};
  std::copy(ra, ra + 3, a.selected.begin() + 19 * 3);
  std::copy(rb, rb + 2, b.selected.begin() + 19 * 2);
  const MaskComparison m = compare_selection_pair(a, b);
  CHECK(m.width == 5);
  CHECK(m.cell_at(19, 4) == static_cast<int>(MaskCell::current));
  CHECK(m.cell_at(19, 1) == static_cast<int>(MaskCell::false_pick));
  CHECK(m.cell_at(19, 2) == static_cast<int>(MaskCell::false_pick));
  CHECK(m.cell_at(19, 0) == static_cast<int>(MaskCell::miss));
  CHECK(m.total_false == 2);
  CHECK(m.total_miss == 1);
  b.config.block_size = 8;
  CHECK_THROWS_AS(compare_selection_pair(a, b), ShapeError);
}

TEST_CASE("a tile counted in parts equals the tile counted whole", "[view_lod]") {
  const int64_t T = 5000, B = 16;
  const ResultArrays router = make_selection(T, B, 4, RouterKind::moba, 8);
  const ResultArrays oracle = make_selection(T, B, 4, RouterKind::oracle, 9);
  const MaskComparison m = compare_selections(router, &oracle);
  const TileKey key{5, 1, 0, 0};
  const MaskTile whole = build_mask_tile(m, nullptr, key);
  MaskTile parts = build_mask_tile(m, nullptr, key, 0, 1234);
  add_tile_counts(&parts, build_mask_tile(m, nullptr, key, 1234, 3000));
  add_tile_counts(&parts, build_mask_tile(m, nullptr, key, 3000, T));
  CHECK(parts.n_entries == whole.n_entries);
  for (int c = 0; c < kTileChannels; ++c) CHECK(parts.counts[static_cast<size_t>(c)] == whole.counts[static_cast<size_t>(c)]);
}
