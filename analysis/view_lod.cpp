// Mask tiles and series mipmaps (analysis/view_lod.h).
#include "analysis/view_lod.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace moba::analysis {

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

inline void bump(std::vector<uint16_t>* v, size_t i) {
  if (v->empty()) v->assign(static_cast<size_t>(kTileCells) * kTileCells, 0);
  uint16_t& x = (*v)[i];
  x = static_cast<uint16_t>(x + (x != 0xFFFF));
}

}  // namespace

bool TileKey::operator<(const TileKey& o) const {
  return std::tie(lx, ly, tx, ty) < std::tie(o.lx, o.ly, o.tx, o.ty);
}

int tile_level(double units_per_px) {
  if (!(units_per_px > 1.0)) return 0;
  const int l = static_cast<int>(std::ceil(std::log2(units_per_px) - 1e-9));
  return std::clamp(l, 0, kTileLevels - 1);
}

MaskTile build_mask_tile(const MaskComparison& m, const std::vector<int32_t>* planted, const TileKey& key) {
  return build_mask_tile(m, planted, key, 0, m.n_tokens);
}

void add_tile_counts(MaskTile* into, const MaskTile& part) {
  for (int c = 0; c < kTileChannels; ++c) {
    const auto& p = part.counts[static_cast<size_t>(c)];
    if (p.empty()) continue;
    auto& v = into->counts[static_cast<size_t>(c)];
    if (v.empty()) {
      v = p;
      continue;
    }
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint16_t>(std::min<uint32_t>(0xFFFF, uint32_t{v[i]} + p[i]));
  }
  into->n_entries += part.n_entries;
}

MaskTile build_mask_tile(const MaskComparison& m, const std::vector<int32_t>* planted, const TileKey& key,
                         int64_t t_from, int64_t t_to) {
  MaskTile tile;
  tile.key = key;
  const int64_t span_t = static_cast<int64_t>(kTileCells) << key.lx, span_b = static_cast<int64_t>(kTileCells) << key.ly;
  tile.t0 = std::min(m.n_tokens, key.tx * span_t);
  tile.t1 = std::min(m.n_tokens, tile.t0 + span_t);
  tile.b0 = std::min(m.n_blocks, key.ty * span_b);
  tile.b1 = std::min(m.n_blocks, tile.b0 + span_b);
  if (tile.t0 >= tile.t1 || tile.b0 >= tile.b1) return tile;
  // Causality: query t selects blocks <= t / B only, so queries before the tile's first block
  // contribute nothing.
  const int64_t t_first = std::max({tile.t0, tile.b0 * m.block_size, t_from});
  const int64_t t_last = std::min(tile.t1, t_to);
  const int W = m.width;
  const int32_t b0 = static_cast<int32_t>(tile.b0), b1 = static_cast<int32_t>(tile.b1);
  for (int64_t t = t_first; t < t_last; ++t) {
    const size_t cx = static_cast<size_t>((t - tile.t0) >> key.lx);
    const int32_t* row = &m.blocks[static_cast<size_t>(t) * static_cast<size_t>(W)];
    const MaskCell* cells = &m.cells[static_cast<size_t>(t) * static_cast<size_t>(W)];
    for (int i = 0; i < W; ++i) {
      const int32_t b = row[i];
      if (b < 0) break;  // -1 padded at the end
      if (b < b0) continue;
      if (b >= b1) break;  // ascending
      const size_t cy = static_cast<size_t>((b - b0) >> key.ly);
      bump(&tile.counts[static_cast<int>(channel_of(cells[i]))], cy * kTileCells + cx);
      ++tile.n_entries;
    }
    if (planted && !planted->empty()) {
      const int32_t p = (*planted)[static_cast<size_t>(t)];
      if (p >= 0) {
        const int64_t b = p / m.block_size;
        if (b >= tile.b0 && b < tile.b1) {
          bump(&tile.counts[static_cast<int>(TileChannel::planted)],
               static_cast<size_t>((b - tile.b0) >> key.ly) * kTileCells + cx);
          ++tile.n_entries;
        }
      }
    }
  }
  return tile;
}

const char* cell_colouring_name(CellColouring c) {
  switch (c) {
    case CellColouring::density: return "density";
    case CellColouring::presence: return "presence";
    case CellColouring::dominant: return "dominant";
  }
  return "?";
}

bool parse_cell_colouring(const std::string& name, CellColouring* out) {
  for (const CellColouring c : {CellColouring::density, CellColouring::presence, CellColouring::dominant})
    if (name == cell_colouring_name(c)) {
      *out = c;
      return true;
    }
  return false;
}

Rgba8 mix(Rgba8 a, Rgba8 b, float f) {
  const auto m = [f](uint8_t x, uint8_t y) {
    return static_cast<uint8_t>(std::lround(static_cast<float>(x) * (1 - f) + static_cast<float>(y) * f));
  };
  return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b), 255};
}

float density_intensity(uint32_t n, uint32_t n_top) {
  if (n == 0) return 0.0f;
  if (n_top <= 1 || n >= n_top) return 1.0f;
  const double v = std::log1p(static_cast<double>(n)) / std::log1p(static_cast<double>(n_top));
  return kAnyFloor + (1.0f - kAnyFloor) * static_cast<float>(v);
}

ChannelCounts level_max_counts(const MaskComparison& m, const std::vector<int32_t>* planted, int lx, int ly,
                               bool compare) {
  return level_max_counts(m, planted, lx, ly, compare, 0, m.n_tokens);
}

ChannelCounts level_max_counts(const MaskComparison& m, const std::vector<int32_t>* planted, int lx, int ly,
                               bool compare, int64_t t_from, int64_t t_to) {
  ChannelCounts top{};
  if (lx == 0 && ly == 0) {
    top.fill(1);
    return top;
  }
  // One column of cells (2^lx queries) at a time: counts per (block row, channel), reset
  // through the list of those touched.
  const int64_t n_rows = (m.n_blocks >> ly) + 1;
  std::vector<uint32_t> count(static_cast<size_t>(n_rows) * kTileChannels, 0);
  std::vector<size_t> touched;
  const auto add = [&](int64_t block, TileChannel c) {
    const size_t i = static_cast<size_t>(block >> ly) * kTileChannels + static_cast<size_t>(c);
    if (count[i]++ == 0) touched.push_back(i);
  };
  const int64_t span = int64_t{1} << lx;
  const int W = m.width;
  const int64_t t_end = std::min(m.n_tokens, t_to);
  for (int64_t t0 = t_from; t0 < t_end; t0 += span) {
    for (int64_t t = t0; t < std::min(t_end, t0 + span); ++t) {
      const int32_t* row = &m.blocks[static_cast<size_t>(t) * static_cast<size_t>(W)];
      const MaskCell* cells = &m.cells[static_cast<size_t>(t) * static_cast<size_t>(W)];
      for (int i = 0; i < W && row[i] >= 0; ++i) {
        TileChannel c = channel_of(cells[i]);
        if (!compare && c == TileChannel::miss) continue;
        if (!compare && (c == TileChannel::hit || c == TileChannel::false_pick)) c = TileChannel::selected;
        add(row[i], c);
      }
      if (planted && !planted->empty() && (*planted)[static_cast<size_t>(t)] >= 0)
        add((*planted)[static_cast<size_t>(t)] / m.block_size, TileChannel::planted);
    }
    for (const size_t i : touched) {
      uint32_t& top_c = top[i % kTileChannels];
      top_c = std::max(top_c, count[i]);
      count[i] = 0;
    }
    touched.clear();
  }
  return top;
}

namespace {

// The class drawn first when several share a cell, rarest first.
constexpr TileChannel kRarest[] = {TileChannel::miss, TileChannel::false_pick, TileChannel::hit, TileChannel::selected,
                                   TileChannel::current};

}  // namespace

bool shade_mask_tile(const MaskTile& t, const MaskComparison& m, const TileShading& sh, const TilePalette& pal,
                     const ChannelCounts& top, std::vector<uint8_t>* rgba) {
  rgba->assign(static_cast<size_t>(kTileTexels) * kTileTexels * 4, 0);
  if (t.t0 >= t.t1 || t.b0 >= t.b1) return false;
  const int lx = t.key.lx, ly = t.key.ly;
  const int64_t x_cells = ((t.t1 - t.t0) + (int64_t{1} << lx) - 1) >> lx;
  const int64_t y_cells = ((t.b1 - t.b0) + (int64_t{1} << ly) - 1) >> ly;
  const Rgba8 planted = pal.cls[static_cast<int>(TileChannel::planted)];
  bool any = false;
  for (int64_t cy = 0; cy < y_cells; ++cy) {
    const int64_t block_lo = t.b0 + (cy << ly);
    // Texel rows of this cell: the upper one first (top row = highest block).
    uint8_t* upper = rgba->data() + static_cast<size_t>(kTileTexels - 2 - 2 * cy) * kTileTexels * 4;
    uint8_t* lower = upper + static_cast<size_t>(kTileTexels) * 4;
    for (int64_t cx = 0; cx < x_cells; ++cx) {
      const int cxi = static_cast<int>(cx), cyi = static_cast<int>(cy);
      uint32_t n[kTileChannels];
      for (int c = 0; c < kTileChannels; ++c) n[c] = t.count(static_cast<TileChannel>(c), cxi, cyi);
      if (!sh.compare) {
        n[static_cast<int>(TileChannel::selected)] += n[static_cast<int>(TileChannel::hit)] +
                                                      n[static_cast<int>(TileChannel::false_pick)];
        n[static_cast<int>(TileChannel::hit)] = n[static_cast<int>(TileChannel::false_pick)] =
            n[static_cast<int>(TileChannel::miss)] = 0;
      }
      const int64_t t_lo = t.t0 + (cx << lx), t_hi = std::min(t.t1, t_lo + (int64_t{1} << lx));
      const auto shade = [&](int c) {
        const float f = sh.cells == CellColouring::presence ? 1.0f : density_intensity(n[c], top[static_cast<size_t>(c)]);
        return f >= 1.0f ? pal.cls[static_cast<size_t>(c)] : mix(pal.causal, pal.cls[static_cast<size_t>(c)], f);
      };
      Rgba8 quad[4];  // top left, top right, bottom right, bottom left
      int present[kTileChannels];
      int n_present = 0;
      if (sh.cells == CellColouring::dominant) {
        uint32_t best = 0;
        for (const TileChannel c : kRarest)
          if (n[static_cast<int>(c)] > best) best = n[static_cast<int>(c)], present[0] = static_cast<int>(c);
        if (best > 0) {
          n_present = 1;
          quad[0] = quad[1] = quad[2] = quad[3] = shade(present[0]);
        }
      } else {
        for (const TileChannel c : kRarest)
          if (n[static_cast<int>(c)] > 0) present[n_present++] = static_cast<int>(c);
        for (int q = 0; q < 4 && n_present > 0; ++q) quad[q] = shade(present[q % n_present]);
      }
      if (n_present == 0) {
        Rgba8 px{0, 0, 0, 0};
        if (sh.causal && block_lo * m.block_size <= t_hi - 1) px = pal.causal;
        quad[0] = quad[1] = quad[2] = quad[3] = px;
      }
      if (sh.planted && n[static_cast<int>(TileChannel::planted)] > 0)
        for (Rgba8& q : quad) q = n_present > 0 ? mix(q, planted, 0.5f) : planted;
      if (quad[0].a | quad[1].a | quad[2].a | quad[3].a) {
        any = true;
        const auto put = [](uint8_t* p, Rgba8 c) { p[0] = c.r, p[1] = c.g, p[2] = c.b, p[3] = c.a; };
        put(upper + cx * 8, quad[0]);
        put(upper + cx * 8 + 4, quad[1]);
        put(lower + cx * 8 + 4, quad[2]);
        put(lower + cx * 8, quad[3]);
      }
    }
  }
  return any;
}

Rgba8 shaded_texel(const std::vector<uint8_t>& rgba, int cx, int cy, int q) {
  const int row = kTileTexels - 2 - 2 * cy + (q >= 2 ? 1 : 0);
  const int col = 2 * cx + (q == 1 || q == 2 ? 1 : 0);
  const uint8_t* p = rgba.data() + (static_cast<size_t>(row) * kTileTexels + static_cast<size_t>(col)) * 4;
  return {p[0], p[1], p[2], p[3]};
}

void metric_domain(PlotRange range, bool difference, float* lo, float* hi) {
  const float inf = std::numeric_limits<float>::infinity();
  switch (range) {
    case PlotRange::share: *lo = 0.0f, *hi = 1.0f; break;
    case PlotRange::data: *lo = 0.0f, *hi = inf; break;
    case PlotRange::data_up_to_one: *lo = -1.0f, *hi = 1.0f; break;
  }
  if (difference) {
    const float w = *hi - *lo;
    *lo = -w;
    *hi = w;
  }
}

bool auto_y_range(PlotRange range, bool difference, float data_lo, float data_hi, float* lo, float* hi) {
  if (!(data_lo <= data_hi)) return false;
  if (difference) data_lo = std::min(data_lo, 0.0f), data_hi = std::max(data_hi, 0.0f);
  float d_lo, d_hi;
  metric_domain(range, difference, &d_lo, &d_hi);
  // Values beyond the domain are rounding (a KL of -1e-7, a coverage of 1 + 1e-7).
  data_lo = std::clamp(data_lo, d_lo, d_hi);
  data_hi = std::clamp(data_hi, d_lo, d_hi);
  const float mag = std::max(std::fabs(data_lo), std::fabs(data_hi));
  float pad = std::max({1e-6f, 0.06f * (data_hi - data_lo), 1e-6f * mag});
  // Constant data (the oracle's block recall, all 1): a range wide enough to read, not
  // [1 - 1e-6, 1] labelled "1" and "1".
  if (data_hi - data_lo <= 1e-6f * std::max(1.0f, mag)) pad = 0.05f * std::max(1.0f, mag);
  *lo = std::max(d_lo, data_lo - pad);
  *hi = std::min(d_hi, data_hi + pad);
  return true;
}

SeriesLod build_series_lod(const std::vector<float>& values) {
  SeriesLod lod;
  lod.base = &values;
  const size_t T = values.size();
  // Base level straight from the values.
  const size_t w0 = size_t{1} << kSeriesBaseLevel;
  SeriesLevel level;
  const size_t n0 = (T + w0 - 1) / w0;
  level.min.assign(n0, kNaNf);
  level.max.assign(n0, kNaNf);
  level.mean.assign(n0, kNaNf);
  level.n.assign(n0, 0);
  for (size_t i = 0; i < n0; ++i) {
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    double sum = 0;
    uint32_t n = 0;
    for (size_t t = i * w0; t < std::min(T, (i + 1) * w0); ++t) {
      const float v = values[t];
      if (!std::isfinite(v)) continue;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      sum += v;
      ++n;
    }
    if (n) {
      level.min[i] = mn;
      level.max[i] = mx;
      level.mean[i] = static_cast<float>(sum / n);
      level.n[i] = n;
    }
  }
  lod.levels.push_back(std::move(level));
  while (lod.levels.back().n.size() > 1) {
    const SeriesLevel& f = lod.levels.back();
    SeriesLevel c;
    const size_t n = (f.n.size() + 1) / 2;
    c.min.assign(n, kNaNf);
    c.max.assign(n, kNaNf);
    c.mean.assign(n, kNaNf);
    c.n.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      double sum = 0;
      uint32_t cnt = 0;
      float mn = std::numeric_limits<float>::infinity(), mx = -mn;
      for (size_t j = 2 * i; j < std::min(f.n.size(), 2 * i + 2); ++j) {
        if (!f.n[j]) continue;
        mn = std::min(mn, f.min[j]);
        mx = std::max(mx, f.max[j]);
        sum += static_cast<double>(f.mean[j]) * f.n[j];
        cnt += f.n[j];
      }
      if (cnt) {
        c.min[i] = mn;
        c.max[i] = mx;
        c.mean[i] = static_cast<float>(sum / cnt);
        c.n[i] = cnt;
      }
    }
    lod.levels.push_back(std::move(c));
  }
  return lod;
}

bool SeriesLod::range(int64_t t_begin, int64_t t_end, int64_t max_window, float* mn, float* mx, float* mean) const {
  const int64_t T = size();
  t_begin = std::max<int64_t>(0, t_begin);
  t_end = std::min(T, t_end);
  if (t_end <= t_begin) return false;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  double sum = 0;
  double n = 0;
  // The coarsest level whose window fits max_window; below the base level, the raw values.
  int l = -1;
  for (int i = 0; i < static_cast<int>(levels.size()); ++i)
    if ((int64_t{1} << (kSeriesBaseLevel + i)) <= max_window) l = i;
  if (l < 0) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const float v = (*base)[static_cast<size_t>(t)];
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
      n += 1;
    }
  } else {
    const SeriesLevel& L = levels[static_cast<size_t>(l)];
    const int shift = kSeriesBaseLevel + l;
    const int64_t i0 = t_begin >> shift, i1 = std::min<int64_t>(static_cast<int64_t>(L.n.size()), ((t_end - 1) >> shift) + 1);
    for (int64_t i = i0; i < i1; ++i) {
      const size_t k = static_cast<size_t>(i);
      if (!L.n[k]) continue;
      lo = std::min(lo, L.min[k]);
      hi = std::max(hi, L.max[k]);
      sum += static_cast<double>(L.mean[k]) * L.n[k];
      n += L.n[k];
    }
  }
  if (n == 0) return false;
  *mn = lo;
  *mx = hi;
  *mean = static_cast<float>(sum / n);
  return true;
}

}  // namespace moba::analysis
