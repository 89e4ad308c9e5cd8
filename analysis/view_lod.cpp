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
