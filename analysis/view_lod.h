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
// Tile shading: counts -> an RGBA texture of 2 x 2 texels per cell (shade_mask_tile). The
// default encoding is density-aware with an any floor (HiGlass / datashader style): each class
// present in a cell gets quadrants, each drawn at density_intensity() of that class — a log
// scale of the class's entries in the cell, from kAnyFloor for a single entry to 1 for the
// most entries of that class in any cell of the level (level_max_counts: one scale per level
// and class over the whole plane, so colours do not change while panning) — so a zoomed-out
// view tells where misses concentrate, and still never hides one. At level (0, 0) a cell holds
// at most one entry, drawn at full colour.
//
// Series mipmaps (Perfetto-style): a per-position array's min, max and mean of its finite
// values over aligned windows of 2^l positions, so a plot of a million positions draws at most
// a few values per pixel column.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/results_file.h"
#include "analysis/summary.h"

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

// How a cell's counts become its colour.
enum class CellColouring : int {
  density,   // every class present, in quadrants, each as bright as its density (log) — the default
  presence,  // every class present, in quadrants, at full colour (the any channel alone)
  dominant,  // only the class with most entries (rarest wins ties), over the whole cell, at its density
};
// "density", "presence", "dominant"; parse_cell_colouring returns false for other names.
const char* cell_colouring_name(CellColouring c);
bool parse_cell_colouring(const std::string& name, CellColouring* out);

struct Rgba8 {
  uint8_t r = 0, g = 0, b = 0, a = 0;
  bool operator==(const Rgba8& o) const { return r == o.r && g == o.g && b == o.b && a == o.a; }
};
// `a` at f = 0 .. `b` at f = 1 (opaque), rounded per channel.
Rgba8 mix(Rgba8 a, Rgba8 b, float f);

// The colours of the classes (indexed by TileChannel; the planted entry is the overlay's).
struct TilePalette {
  std::array<Rgba8, kTileChannels> cls{};
  Rgba8 causal;  // causally available cells without an entry, and the dark end of every class
};

struct TileShading {
  bool compare = true;  // hit / false pick / miss colours (else every pick is "selected")
  bool causal = true;   // tint the causally available cells
  bool planted = false; // lighten cells holding the planted key's block (synthetic dumps)
  CellColouring cells = CellColouring::density;
  bool operator==(const TileShading& o) const {
    return compare == o.compare && causal == o.causal && planted == o.planted && cells == o.cells;
  }
  bool operator!=(const TileShading& o) const { return !(*this == o); }
};

// The dimmest a class present in a cell is drawn (its colour mixed over the causal tint), so a
// single entry among many stays visible.
constexpr float kAnyFloor = 0.4f;
// How strongly a class with `n` entries in a cell shows when the most in any cell of the level
// is `n_top`, in [kAnyFloor, 1]: kAnyFloor + (1 - kAnyFloor) * ln(1 + n) / ln(1 + n_top),
// capped at 1. 0 when n == 0; 1 when n_top <= 1 (full zoom: an entry is a block).
float density_intensity(uint32_t n, uint32_t n_top);

// The top of each class's density scale at level (lx, ly): the most entries of the class in
// one cell, over the whole plane (counts as the tile shading sees them: with `compare` false,
// hits and false picks count as selected and misses not at all). O(n_tokens x width) time,
// O(n_blocks) memory; all ones at level (0, 0).
using ChannelCounts = std::array<uint32_t, kTileChannels>;
ChannelCounts level_max_counts(const MaskComparison& mask, const std::vector<int32_t>* planted, int lx, int ly,
                               bool compare);
// The same over the cells of the queries in [t_from, t_to), both multiples of 2^lx (or
// n_tokens): parts of the plane counted on several threads; the maximum of the parts' counts is
// the whole's.
ChannelCounts level_max_counts(const MaskComparison& mask, const std::vector<int32_t>* planted, int lx, int ly,
                               bool compare, int64_t t_from, int64_t t_to);

// Texels per tile side: 2 x 2 per cell.
constexpr int kTileTexels = 2 * kTileCells;
// `tile` as RGBA [kTileTexels rows, top row = highest block][kTileTexels][4] into `rgba`
// (resized). A cell's quadrants (top left, top right, bottom right, bottom left) take the
// classes present, rarest first (miss, false pick, hit, selected, current), cycling when fewer
// than four (one class: the whole cell). `top`: level_max_counts() of the tile's level (the
// density encodings' scale). Returns false when every texel is transparent.
bool shade_mask_tile(const MaskTile& tile, const MaskComparison& mask, const TileShading& shading,
                     const TilePalette& palette, const ChannelCounts& top, std::vector<uint8_t>* rgba);
// The RGBA of cell (cx, cy)'s quadrant q of a shaded tile (q as above).
Rgba8 shaded_texel(const std::vector<uint8_t>& rgba, int cx, int cy, int q);

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

// The valid values of a per-position metric by its plot range kind (analysis/summary.h):
// share [0, 1]; data (KL, output relative error) [0, inf); data_up_to_one (output cosine)
// [-1, 1]. With `difference` (a - b of two such values) the domain is symmetric: [-w, w] for
// its width w.
void metric_domain(PlotRange range, bool difference, float* lo, float* hi);
// The automatic y range of a metric strip showing values in [data_lo, data_hi]: padded by 6 %
// of the span on each side (constant values: by 5 % of max(1, |value|)), then clamped to
// metric_domain() — coverage never reaches below 0 or above 1. A difference range always
// holds 0. Returns false when data_lo > data_hi (no finite value visible).
bool auto_y_range(PlotRange range, bool difference, float data_lo, float data_hi, float* lo, float* hi);

}  // namespace moba::analysis
