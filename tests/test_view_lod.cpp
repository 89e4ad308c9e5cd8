// The viewer's level-of-detail data (analysis/view_lod.h) without the viewer: mask tiles keep
// every entry at every level (counts add up, a single miss survives the coarsest level in the
// right cell), the level rule never puts two cells in one pixel, series mipmaps agree with a
// brute-force min / max / mean, and compare_selection_pair classifies two selections. The
// shading: zoomed out, a cell's colour tells many misses from one without hiding the one;
// at full zoom every block has its exact class colour. The metric strips' auto y range stays
// in the metric's valid values.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
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

namespace {

// Two picks per query, ascending: the current block and pick(t) (when it differs).
template <typename Pick>
ResultArrays two_picks(int64_t T, int64_t B, RouterKind router, Pick pick) {
  ResultArrays a;
  a.config.block_size = B;
  a.config.top_k = 2;
  a.config.router = router;
  a.stored.selection = true;
  a.n_tokens = T;
  a.n_blocks = (T + B - 1) / B;
  a.selected.assign(static_cast<size_t>(T * 2), -1);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t c = static_cast<int32_t>(t / B), p = pick(t);
    int32_t* row = &a.selected[static_cast<size_t>(t * 2)];
    row[0] = std::min(c, p);
    if (p != c) row[1] = std::max(c, p);
  }
  return a;
}

// A palette of distinct colours (gui/panels.h's, as the viewer passes it).
TilePalette test_palette() {
  TilePalette p;
  p.cls[static_cast<size_t>(TileChannel::current)] = {120, 130, 150, 255};
  p.cls[static_cast<size_t>(TileChannel::selected)] = {240, 200, 70, 255};
  p.cls[static_cast<size_t>(TileChannel::hit)] = {70, 200, 110, 255};
  p.cls[static_cast<size_t>(TileChannel::false_pick)] = {240, 120, 50, 255};
  p.cls[static_cast<size_t>(TileChannel::miss)] = {80, 150, 255, 255};
  p.cls[static_cast<size_t>(TileChannel::planted)] = {250, 250, 250, 255};
  p.causal = {40, 44, 56, 255};
  return p;
}

int distance(Rgba8 a, Rgba8 b) { return std::abs(a.r - b.r) + std::abs(a.g - b.g) + std::abs(a.b - b.b); }

// Reads a texel back as the viewer's user does: the class whose causal -> class colour ramp
// passes nearest, and how far along the ramp it lies.
struct Decoded {
  TileChannel cls = TileChannel::count_;
  float intensity = 0;
  int error = 1 << 30;
};
Decoded decode(Rgba8 px, const TilePalette& p) {
  Decoded d;
  for (const TileChannel c : {TileChannel::current, TileChannel::hit, TileChannel::false_pick, TileChannel::miss})
    for (int i = 0; i <= 255; ++i) {
      const float f = static_cast<float>(i) / 255.0f;
      const int e = distance(px, mix(p.causal, p.cls[static_cast<size_t>(c)], f));
      if (e < d.error) d = {c, f, e};
    }
  return d;
}

}  // namespace

TEST_CASE("density_intensity: log scale from the any floor to the level's most", "[view_lod]") {
  CHECK(density_intensity(0, 256) == 0.0f);
  CHECK(density_intensity(1, 1) == 1.0f);   // full zoom: an entry is a block
  CHECK(density_intensity(1, 0) == 1.0f);
  CHECK(density_intensity(1, 256) == Approx(kAnyFloor + (1 - kAnyFloor) * std::log(2.0) / std::log(257.0)));
  CHECK(density_intensity(256, 256) == 1.0f);
  CHECK(density_intensity(1000, 256) == 1.0f);
  float prev = 0;
  for (uint32_t n = 1; n <= 4096; n *= 2) {
    const float f = density_intensity(n, 4096);
    INFO("n = " << n);
    CHECK(f >= kAnyFloor);
    CHECK(f > prev);
    prev = f;
  }
}

TEST_CASE("level_max_counts: the most entries per class in one cell of a level", "[view_lod]") {
  const int64_t T = 3001, B = 16;
  const ResultArrays router = make_selection(T, B, 4, RouterKind::moba, 31);
  const ResultArrays oracle = make_selection(T, B, 4, RouterKind::oracle, 32);
  const MaskComparison m = compare_selections(router, &oracle);
  std::vector<int32_t> planted(static_cast<size_t>(T), -1);
  for (int64_t t = 100; t < T; t += 3) planted[static_cast<size_t>(t)] = static_cast<int32_t>(t / 2);
  for (const auto& [lx, ly] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {0, 2}, {3, 1}, {6, 4}, {12, 8}}) {
    for (const bool compare : {true, false}) {
      INFO("level " << lx << "/" << ly << " compare " << compare);
      ChannelCounts expect{};
      const int64_t span_t = int64_t{kTileCells} << lx, span_b = int64_t{kTileCells} << ly;
      for (int64_t tx = 0; tx * span_t < T; ++tx)
        for (int64_t ty = 0; ty * span_b < m.n_blocks; ++ty) {
          const MaskTile tile = build_mask_tile(m, &planted, {lx, ly, tx, ty});
          for (int cy = 0; cy < kTileCells; ++cy)
            for (int cx = 0; cx < kTileCells; ++cx)
              for (int c = 0; c < kTileChannels; ++c) {
                const auto ch = static_cast<TileChannel>(c);
                uint32_t n = tile.count(ch, cx, cy);
                if (!compare && (ch == TileChannel::hit || ch == TileChannel::false_pick || ch == TileChannel::miss)) n = 0;
                if (!compare && ch == TileChannel::selected)
                  n += tile.count(TileChannel::hit, cx, cy) + tile.count(TileChannel::false_pick, cx, cy);
                expect[static_cast<size_t>(c)] = std::max(expect[static_cast<size_t>(c)], n);
              }
        }
      const ChannelCounts got = level_max_counts(m, &planted, lx, ly, compare);
      // Two parts split at a cell column: the larger count per class is the whole's.
      const int64_t column = int64_t{1} << lx, mid = std::min(T, (T / 3 + column - 1) / column * column);
      const ChannelCounts lo = level_max_counts(m, &planted, lx, ly, compare, 0, mid),
                          hi = level_max_counts(m, &planted, lx, ly, compare, mid, T);
      for (size_t c = 0; c < got.size(); ++c) CHECK(std::max(lo[c], hi[c]) == got[c]);
      if (lx == 0 && ly == 0) {
        for (const uint32_t x : got) CHECK(x == 1);  // by definition: the scale of single blocks
      } else {
        CHECK(got == expect);
      }
    }
  }
}

TEST_CASE("zoomed-out cells: many misses look different from one, and one miss is still a miss", "[view_lod]") {
  // T = 4096, B = 16 (256 blocks). The router picks block 0 beside the current block; the
  // oracle agrees except: block 100 for the 256 queries of [2048, 2304) (a column of misses),
  // block 60 for 16 queries of [2560, 2816), block 50 for query 3000 alone, and block 21 for
  // query 1500 alone, among 256 queries that all pick block 20 with the router (hits).
  const int64_t T = 4096, B = 16;
  const auto router_pick = [](int64_t t) { return t >= 1280 && t < 1536 ? 20 : 0; };
  const auto oracle_pick = [&](int64_t t) -> int32_t {
    if (t >= 2048 && t < 2304) return 100;
    if (t >= 2560 && t < 2816 && t % 16 == 0) return 60;
    if (t == 3000) return 50;
    if (t == 1500) return 21;
    return router_pick(t);
  };
  const ResultArrays router = two_picks(T, B, RouterKind::moba, router_pick);
  const ResultArrays oracle = two_picks(T, B, RouterKind::oracle, oracle_pick);
  const MaskComparison m = compare_selections(router, &oracle);
  REQUIRE(m.total_miss == 256 + 16 + 1 + 1);
  // Level (8, 2): a cell is 256 queries x 4 blocks; one tile covers the whole plane.
  const MaskTile tile = build_mask_tile(m, nullptr, {8, 2, 0, 0});
  REQUIRE(tile.count(TileChannel::miss, 2048 >> 8, 100 >> 2) == 256);
  REQUIRE(tile.count(TileChannel::miss, 2560 >> 8, 60 >> 2) == 16);
  REQUIRE(tile.count(TileChannel::miss, 3000 >> 8, 50 >> 2) == 1);
  REQUIRE(tile.count(TileChannel::miss, 1500 >> 8, 21 >> 2) == 1);
  REQUIRE(tile.count(TileChannel::hit, 1500 >> 8, 21 >> 2) == 255);
  const TilePalette pal = test_palette();
  const Rgba8 miss = pal.cls[static_cast<size_t>(TileChannel::miss)];
  const ChannelCounts top = level_max_counts(m, nullptr, 8, 2, true);
  REQUIRE(top[static_cast<size_t>(TileChannel::miss)] == 256);

  TileShading sh;  // the default: density
  REQUIRE(sh.cells == CellColouring::density);
  std::vector<uint8_t> rgba;
  REQUIRE(shade_mask_tile(tile, m, sh, pal, top, &rgba));
  REQUIRE(rgba.size() == static_cast<size_t>(kTileTexels) * kTileTexels * 4);
  // Only misses in these three cells: every quadrant is the miss colour at its density.
  const Rgba8 many = shaded_texel(rgba, 2048 >> 8, 100 >> 2, 0), some = shaded_texel(rgba, 2560 >> 8, 60 >> 2, 0),
              one = shaded_texel(rgba, 3000 >> 8, 50 >> 2, 0);
  CHECK(many == miss);
  for (int q = 1; q < 4; ++q) CHECK(shaded_texel(rgba, 3000 >> 8, 50 >> 2, q) == one);
  const Decoded d_many = decode(many, pal), d_some = decode(some, pal), d_one = decode(one, pal);
  CHECK(d_many.cls == TileChannel::miss);
  CHECK(d_some.cls == TileChannel::miss);
  CHECK(d_one.cls == TileChannel::miss);  // one miss in 256 queries is drawn as a miss ...
  CHECK(d_one.error <= 3);
  CHECK(d_one.intensity >= kAnyFloor - 0.01f);  // ... at least at the floor ...
  CHECK(distance(one, pal.causal) >= 100);      // ... well off the empty causal tint
  // ... and measurably dimmer than 16 misses, which are dimmer than 256.
  CHECK(d_many.intensity - d_some.intensity >= 0.2f);
  CHECK(d_some.intensity - d_one.intensity >= 0.2f);
  CHECK(distance(many, some) >= 60);
  CHECK(distance(some, one) >= 60);
  // A single miss among 255 hits keeps a quadrant of its own (rarest first: top left).
  const int cx = 1500 >> 8, cy = 21 >> 2;
  const Decoded q_miss = decode(shaded_texel(rgba, cx, cy, 0), pal);
  CHECK(q_miss.cls == TileChannel::miss);
  CHECK(q_miss.intensity >= kAnyFloor - 0.01f);
  bool hit_quadrant = false;
  for (int q = 1; q < 4; ++q) {
    const Decoded dq = decode(shaded_texel(rgba, cx, cy, q), pal);
    if (dq.cls != TileChannel::hit) continue;
    hit_quadrant = true;
    CHECK(dq.intensity > 0.95f);
  }
  CHECK(hit_quadrant);
  // An empty causal cell is the tint, an empty future cell transparent.
  CHECK(shaded_texel(rgba, 3000 >> 8, 150 >> 2, 0) == pal.causal);
  CHECK(shaded_texel(rgba, 100 >> 8, 200 >> 2, 0).a == 0);

  // Presence colouring draws one miss like 256 (what the density encoding fixes).
  sh.cells = CellColouring::presence;
  REQUIRE(shade_mask_tile(tile, m, sh, pal, top, &rgba));
  CHECK(shaded_texel(rgba, 3000 >> 8, 50 >> 2, 0) == miss);
  CHECK(shaded_texel(rgba, 2048 >> 8, 100 >> 2, 0) == miss);
  // Dominant colouring: the hits win the mixed cell, the single miss there vanishes.
  sh.cells = CellColouring::dominant;
  REQUIRE(shade_mask_tile(tile, m, sh, pal, top, &rgba));
  for (int q = 0; q < 4; ++q) CHECK(decode(shaded_texel(rgba, cx, cy, q), pal).cls == TileChannel::hit);
}

TEST_CASE("full zoom: density shading draws every single block at its exact class colour", "[view_lod]") {
  const int64_t T = 3001, B = 16;
  const ResultArrays router = make_selection(T, B, 4, RouterKind::moba, 21);
  const ResultArrays oracle = make_selection(T, B, 4, RouterKind::oracle, 22);
  const MaskComparison m = compare_selections(router, &oracle);
  const TilePalette pal = test_palette();
  TileShading sh;
  std::vector<uint8_t> rgba;
  int64_t checked = 0;
  for (int64_t tx = 0; tx * kTileCells < T; ++tx) {
    const MaskTile tile = build_mask_tile(m, nullptr, {0, 0, tx, 0});
    shade_mask_tile(tile, m, sh, pal, level_max_counts(m, nullptr, 0, 0, true), &rgba);
    for (int64_t t = tile.t0; t < tile.t1; ++t)
      for (int64_t b = tile.b0; b < tile.b1; ++b) {
        const int cell = m.cell_at(t, b);
        const Rgba8 px = shaded_texel(rgba, static_cast<int>(t - tile.t0), static_cast<int>(b - tile.b0), static_cast<int>(t % 4));
        if (cell == 0) continue;
        INFO("t " << t << " block " << b);
        CHECK(px == pal.cls[static_cast<size_t>(channel_of(static_cast<MaskCell>(cell)))]);
        ++checked;
      }
  }
  CHECK(checked == static_cast<int64_t>(std::count_if(m.blocks.begin(), m.blocks.end(), [](int32_t b) { return b >= 0; })));
}

TEST_CASE("auto y range stays inside the metric's valid values", "[view_lod]") {
  float lo, hi;
  // Coverage near 0 and 1: the padding must not reach below 0 or above 1.
  REQUIRE(auto_y_range(PlotRange::share, false, 0.02f, 1.0f, &lo, &hi));
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
  REQUIRE(auto_y_range(PlotRange::share, false, 0.5f, 0.7f, &lo, &hi));
  CHECK(lo == Approx(0.488f));
  CHECK(hi == Approx(0.712f));
  // All ones (coverage of the oracle), and rounding past 1: a readable range ending at 1.
  REQUIRE(auto_y_range(PlotRange::share, false, 1.0f, 1.0000001f, &lo, &hi));
  CHECK(hi == 1.0f);
  CHECK(lo == Approx(0.95f));
  // Constant KL 0: [0, 0.05].
  REQUIRE(auto_y_range(PlotRange::data, false, 0.0f, 0.0f, &lo, &hi));
  CHECK(lo == 0.0f);
  CHECK(hi == Approx(0.05f));
  // KL and output error are >= 0 (a rounding -1e-7 included).
  REQUIRE(auto_y_range(PlotRange::data, false, -1e-7f, 3.0f, &lo, &hi));
  CHECK(lo == 0.0f);
  CHECK(hi == Approx(3.18f));
  // Output cosine: at most 1.
  REQUIRE(auto_y_range(PlotRange::data_up_to_one, false, 0.9f, 1.0f, &lo, &hi));
  CHECK(hi == 1.0f);
  CHECK(lo < 0.9f);
  // Differences hold 0 and stay within [-1, 1] for shares.
  REQUIRE(auto_y_range(PlotRange::share, true, 0.1f, 0.98f, &lo, &hi));
  CHECK(lo < 0.0f);
  CHECK(hi == 1.0f);
  REQUIRE(auto_y_range(PlotRange::share, true, -1.0f, -0.5f, &lo, &hi));
  CHECK(lo == -1.0f);
  CHECK(hi > 0.0f);
  CHECK_FALSE(auto_y_range(PlotRange::share, false, INFINITY, -INFINITY, &lo, &hi));
}
