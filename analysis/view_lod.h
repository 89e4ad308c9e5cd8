#pragma once
// Level-of-detail aggregates for viewers of very long sequences (gui/ draws them; nothing here
// knows about it). Two kinds:
//
// Mask tiles. The (query position t, block b) plane of a MaskComparison is cut into tiles of
// kTileCells x kTileCells cells. At level (lx, ly) a cell covers 2^lx query positions x 2^ly
// blocks, so level (0, 0) is one query x one block and every coarser level halves the
// resolution of one axis. Tile (tx, ty) of a level covers positions [tx, tx + 1) * 256 * 2^lx
// and blocks [ty, ty + 1) * 256 * 2^ly. A tile holds one count per class channel per cell —
// how many (query, block) entries of that class fall in the cell (saturating at 65535) — the
// density channel; `count > 0` is the any/max channel, exact at every level, so one hit,
// false pick or miss never disappears from a zoomed-out view. Tiles are aggregated straight
// from the sparse selection ([n_tokens, width] entries): no level, not even level (0, 0), is
// ever materialised densely, and a tile costs O(positions it covers x width).
//
// Series mipmaps (Perfetto-style): a per-position array's min, max and mean of its finite
// values over aligned windows of 2^l positions, so a plot of a million positions draws at most
// a few values per pixel column.
#include <array>
#include <cstdint>
#include <vector>

#include "analysis/results_file.h"

namespace moba::analysis {

constexpr int kTileCells = 256;
constexpr int kTileLevels = 24;  // lx, ly in [0, kTileLevels)

// Class channels of a tile: MaskCell's values 1..5 at index value - 1, then the planted key's
// block of synthetic dumps (one entry per query that has one).
enum class TileChannel : int { current, selected, hit, false_pick, miss, planted, count_ };
constexpr int kTileChannels = static_cast<int>(TileChannel::count_);
inline TileChannel channel_of(MaskCell c) { return static_cast<TileChannel>(static_cast<int>(c) - 1); }

struct TileKey {
  int lx = 0, ly = 0;
  int64_t tx = 0, ty = 0;
  bool operator==(const TileKey& o) const { return lx == o.lx && ly == o.ly && tx == o.tx && ty == o.ty; }
  bool operator<(const TileKey& o) const;
};

// The smallest level whose cells are at least one pixel wide for `units_per_px` (positions per
// pixel on x, blocks per pixel on y): ceil(log2(units_per_px)), at least 0. Nearest-neighbour
// sampling of such a level never skips a cell.
int tile_level(double units_per_px);

// One tile's counts. counts[c] is [kTileCells (cy, lowest block first), kTileCells (cx)], or
// empty when channel c has no entry in the tile.
struct MaskTile {
  TileKey key;
  int64_t t0 = 0, t1 = 0;  // query positions covered that exist: [t0, t1), t1 <= n_tokens
  int64_t b0 = 0, b1 = 0;  // blocks covered that exist: [b0, b1), b1 <= n_blocks
  std::array<std::vector<uint16_t>, kTileChannels> counts;
  int64_t n_entries = 0;   // entries counted, all channels
  uint16_t count(TileChannel c, int cx, int cy) const {
    const auto& v = counts[static_cast<int>(c)];
    return v.empty() ? 0 : v[static_cast<size_t>(cy) * kTileCells + static_cast<size_t>(cx)];
  }
};

// Aggregates tile `key` of `mask`. `planted` (may be null or empty): the planted key position
// per query (-1 where none), [n_tokens]; its block goes to the planted channel.
MaskTile build_mask_tile(const MaskComparison& mask, const std::vector<int32_t>* planted, const TileKey& key);
// The same, counting only the queries in [t_from, t_to) (a part of a large tile, to build it
// on several threads); add_tile_counts() sums the parts.
MaskTile build_mask_tile(const MaskComparison& mask, const std::vector<int32_t>* planted, const TileKey& key,
                         int64_t t_from, int64_t t_to);
void add_tile_counts(MaskTile* into, const MaskTile& part);

// Min / max / mean of the finite values of a per-position array over windows of 2^l
// positions, for l = kSeriesBaseLevel ... (levels below the base read the array itself).
constexpr int kSeriesBaseLevel = 4;
struct SeriesLevel {
  std::vector<float> min, max, mean;  // NaN where a window holds no finite value
  std::vector<uint32_t> n;            // finite values per window
};
struct SeriesLod {
  const std::vector<float>* base = nullptr;  // the array (not owned; must outlive this)
  std::vector<SeriesLevel> levels;           // levels[i] is level kSeriesBaseLevel + i
  int64_t size() const { return base ? static_cast<int64_t>(base->size()) : 0; }
  // Min, max and mean of the finite values in [t_begin, t_end), using the level whose windows
  // are at most `max_window` positions wide (exact at window edges of that level). Returns
  // false when no finite value lies there.
  bool range(int64_t t_begin, int64_t t_end, int64_t max_window, float* mn, float* mx, float* mean) const;
};
SeriesLod build_series_lod(const std::vector<float>& values);

}  // namespace moba::analysis
