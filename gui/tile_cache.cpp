// Mask tile textures (gui/tile_cache.h): workers aggregate (analysis::build_mask_tile) and
// shade; the GUI thread uploads and evicts.
#include "gui/tile_cache.h"

#include <GLFW/glfw3.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "gui/panels.h"

namespace moba::gui {

namespace {

using analysis::kTileCells;
using analysis::TileChannel;

constexpr size_t kMaxTextures = 80;  // 80 x 1 MiB of texture memory at most
constexpr int kTex = 2 * kTileCells;  // texels per side: 2 x 2 per cell
constexpr int64_t kSplitQueries = int64_t{1} << 17;  // tiles over this many queries build in two halves
// The class drawn first when several share a cell, rarest first.
constexpr TileChannel kRarest[] = {TileChannel::miss, TileChannel::false_pick, TileChannel::hit, TileChannel::selected,
                                   TileChannel::current};

struct Rgba {
  uint8_t r, g, b, a;
};
Rgba unpack(ImU32 c) {
  return {static_cast<uint8_t>(c & 0xFF), static_cast<uint8_t>((c >> 8) & 0xFF), static_cast<uint8_t>((c >> 16) & 0xFF),
          static_cast<uint8_t>((c >> 24) & 0xFF)};
}
Rgba mix(Rgba a, Rgba b, float f) {
  const auto m = [f](uint8_t x, uint8_t y) { return static_cast<uint8_t>(static_cast<float>(x) * (1 - f) + static_cast<float>(y) * f + 0.5f); };
  return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b), 255};
}

// Counts -> RGBA, 2 x 2 texels per cell, top row = highest block. By default (the any
// channel) the quadrants of a cell show every class present in it, rarest first (one class:
// the whole cell; two: a checker), so no class of any entry is lost at any level; with
// `density`, the cell shows its dominant class dimmed by its density. Returns false when
// every texel is transparent.
bool shade_tile(const analysis::MaskTile& t, const analysis::MaskComparison& m, const TileShading& sh,
                std::vector<uint8_t>* rgba) {
  rgba->assign(static_cast<size_t>(kTex) * kTex * 4, 0);
  if (t.t0 >= t.t1 || t.b0 >= t.b1) return false;
  const int lx = t.key.lx, ly = t.key.ly;
  const int64_t x_cells = ((t.t1 - t.t0) + (int64_t{1} << lx) - 1) >> lx;
  const int64_t y_cells = ((t.b1 - t.b0) + (int64_t{1} << ly) - 1) >> ly;
  const Rgba causal = unpack(palette::kCausal), white = unpack(palette::kPlanted);
  bool any = false;
  for (int64_t cy = 0; cy < y_cells; ++cy) {
    const int64_t block_lo = t.b0 + (cy << ly);
    // Texel rows of this cell: the upper one first (top row = highest block).
    uint8_t* upper = rgba->data() + static_cast<size_t>(kTex - 2 - 2 * cy) * kTex * 4;
    uint8_t* lower = upper + static_cast<size_t>(kTex) * 4;
    for (int64_t cx = 0; cx < x_cells; ++cx) {
      const int cxi = static_cast<int>(cx), cyi = static_cast<int>(cy);
      uint32_t n[analysis::kTileChannels];
      for (int c = 0; c < analysis::kTileChannels; ++c) n[c] = t.count(static_cast<TileChannel>(c), cxi, cyi);
      if (!sh.compare) {
        n[static_cast<int>(TileChannel::selected)] += n[static_cast<int>(TileChannel::hit)] +
                                                      n[static_cast<int>(TileChannel::false_pick)];
        n[static_cast<int>(TileChannel::hit)] = n[static_cast<int>(TileChannel::false_pick)] =
            n[static_cast<int>(TileChannel::miss)] = 0;
      }
      Rgba quad[4];  // top left, top right, bottom right, bottom left
      int present[analysis::kTileChannels];
      int n_present = 0;
      if (sh.density) {
        uint32_t best = 0;
        int pick = -1;
        for (const TileChannel c : kRarest)
          if (n[static_cast<int>(c)] > best) best = n[static_cast<int>(c)], pick = static_cast<int>(c);
        if (pick >= 0) {
          // Entries of the class per query of the cell: 1 = every query picks one of its blocks.
          const int64_t t_lo = t.t0 + (cx << lx), t_hi = std::min(t.t1, t_lo + (int64_t{1} << lx));
          const float d = std::min(1.0f, static_cast<float>(n[pick]) / static_cast<float>(std::max<int64_t>(1, t_hi - t_lo)));
          present[n_present++] = pick;
          quad[0] = mix(causal, unpack(palette::cell_color(pick + 1)), 0.35f + 0.65f * std::sqrt(d));
          quad[1] = quad[2] = quad[3] = quad[0];
        }
      } else {
        for (const TileChannel c : kRarest)
          if (n[static_cast<int>(c)] > 0) present[n_present++] = static_cast<int>(c);
        for (int q = 0; q < 4 && n_present > 0; ++q) quad[q] = unpack(palette::cell_color(present[q % n_present] + 1));
      }
      if (n_present == 0) {
        Rgba px{0, 0, 0, 0};
        const int64_t t_last = std::min(t.t1, t.t0 + ((cx + 1) << lx)) - 1;
        if (sh.causal && block_lo * m.block_size <= t_last) px = causal;
        quad[0] = quad[1] = quad[2] = quad[3] = px;
      }
      if (sh.planted && n[static_cast<int>(TileChannel::planted)] > 0)
        for (Rgba& q : quad) q = n_present > 0 ? mix(q, white, 0.5f) : white;
      if (quad[0].a | quad[1].a | quad[2].a | quad[3].a) {
        any = true;
        const auto put = [](uint8_t* p, Rgba c) { p[0] = c.r, p[1] = c.g, p[2] = c.b, p[3] = c.a; };
        put(upper + cx * 8, quad[0]);
        put(upper + cx * 8 + 4, quad[1]);
        put(lower + cx * 8 + 4, quad[2]);
        put(lower + cx * 8, quad[3]);
      }
    }
  }
  return any;
}

}  // namespace

TileCache::TileCache(int n_workers) {
  for (int i = 0; i < std::max(1, n_workers); ++i) workers_.emplace_back([this] { worker(); });
}

TileCache::~TileCache() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  for (auto& [key, tex] : textures_)
    if (tex.id) glDeleteTextures(1, &tex.id);
}

void TileCache::set_source(const TileSource& source, const TileShading& shading) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (source.mask == source_.mask && source.planted == source_.planted && shading == shading_) return;
    source_ = source;
    shading_ = shading;
    ++generation_;
    wanted_.clear();
    in_progress_or_done_.clear();
    done_.clear();
  }
  for (auto& [key, tex] : textures_)
    if (tex.id) glDeleteTextures(1, &tex.id);
  textures_.clear();
}

void TileCache::want(const std::vector<analysis::TileKey>& keys) {
  for (const auto& k : keys) {
    auto it = textures_.find(k);
    if (it != textures_.end()) it->second.last_wanted = frame_;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wanted_ = keys;
  }
  cv_.notify_all();
}

void TileCache::worker() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    analysis::TileKey key;
    bool found = false;
    cv_.wait(lock, [&] {
      if (stop_) return true;
      if (!source_.mask) return false;
      for (const auto& k : wanted_)
        if (!in_progress_or_done_.count(k)) {
          key = k;
          found = true;
          return true;
        }
      return false;
    });
    if (stop_) return;
    if (!found) continue;
    in_progress_or_done_[key] = true;
    const TileSource source = source_;
    const TileShading shading = shading_;
    const uint64_t generation = generation_;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    // A tile over many queries (a zoomed-out view) is counted in two halves at once: the GUI
    // thread mostly waits while a new level builds.
    analysis::MaskTile tile;
    const int64_t span = int64_t{kTileCells} << key.lx, t0 = key.tx * span;
    if (span >= kSplitQueries) {
      const int64_t mid = t0 + span / 2;
      auto upper = std::async(std::launch::async, [&] {
        return analysis::build_mask_tile(*source.mask, source.planted.get(), key, mid, t0 + span);
      });
      tile = analysis::build_mask_tile(*source.mask, source.planted.get(), key, t0, mid);
      analysis::add_tile_counts(&tile, upper.get());
    } else {
      tile = analysis::build_mask_tile(*source.mask, source.planted.get(), key);
    }
    Done d;
    d.generation = generation;
    d.key = key;
    d.empty = !shade_tile(tile, *source.mask, shading, &d.rgba);
    if (d.empty) d.rgba.clear();
    d.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    if (generation == generation_) {
      stats_.build_ms.push_back(d.ms);
      done_.push_back(std::move(d));
    }
  }
}

void TileCache::upload() {
  ++frame_;
  std::deque<Done> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done.swap(done_);
  }
  for (Done& d : done) {
    Texture tex;
    tex.last_wanted = frame_;
    if (!d.empty) {
      glGenTextures(1, &tex.id);
      glBindTexture(GL_TEXTURE_2D, tex.id);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
      glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
      glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, kTex, kTex, 0, GL_RGBA, GL_UNSIGNED_BYTE, d.rgba.data());
    }
    auto it = textures_.find(d.key);
    if (it != textures_.end() && it->second.id) glDeleteTextures(1, &it->second.id);
    textures_[d.key] = tex;
  }
  if (textures_.size() <= kMaxTextures) return;
  // Evict the least recently wanted tiles (never those wanted this frame).
  std::vector<std::pair<uint64_t, analysis::TileKey>> by_age;
  for (const auto& [key, tex] : textures_) by_age.push_back({tex.last_wanted, key});
  std::sort(by_age.begin(), by_age.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [age, key] : by_age) {
    if (textures_.size() <= kMaxTextures * 3 / 4 || age + 1 >= frame_) break;
    auto it = textures_.find(key);
    if (it->second.id) glDeleteTextures(1, &it->second.id);
    textures_.erase(it);
    in_progress_or_done_.erase(key);
  }
}

unsigned TileCache::texture(const analysis::TileKey& key, bool* built) const {
  auto it = textures_.find(key);
  *built = it != textures_.end();
  return *built ? it->second.id : 0;
}

bool TileCache::busy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& k : wanted_)
    if (!textures_.count(k)) return true;
  return false;
}

TileStats TileCache::take_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  TileStats s;
  s.build_ms.swap(stats_.build_ms);
  return s;
}

}  // namespace moba::gui
