// Mask tile textures (gui/tile_cache.h): workers aggregate (analysis::build_mask_tile) and
// shade (analysis::shade_mask_tile); the GUI thread uploads and evicts.
#include "gui/tile_cache.h"

#include <GLFW/glfw3.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "gui/panels.h"

namespace moba::gui {

namespace {

using analysis::kTileCells;
using analysis::MaskCell;
using analysis::TileChannel;

constexpr size_t kMaxTextures = 80;  // 80 x 1 MiB of texture memory at most
constexpr int kTex = analysis::kTileTexels;
constexpr int64_t kSplitQueries = int64_t{1} << 17;  // tiles over this many queries build in two halves
constexpr int64_t kSplitEntries = int64_t{1} << 21;  // level scales over this many entries, likewise

analysis::Rgba8 unpack(ImU32 c) {
  return {static_cast<uint8_t>(c & 0xFF), static_cast<uint8_t>((c >> 8) & 0xFF), static_cast<uint8_t>((c >> 16) & 0xFF),
          static_cast<uint8_t>((c >> 24) & 0xFF)};
}

// gui/panels.h's palette for analysis::shade_mask_tile.
analysis::TilePalette tile_palette() {
  analysis::TilePalette p;
  for (const MaskCell c : {MaskCell::current, MaskCell::selected, MaskCell::hit, MaskCell::false_pick, MaskCell::miss})
    p.cls[static_cast<size_t>(analysis::channel_of(c))] = unpack(palette::cell_color(static_cast<int>(c)));
  p.cls[static_cast<size_t>(TileChannel::planted)] = unpack(palette::kPlanted);
  p.causal = unpack(palette::kCausal);
  return p;
}

// analysis::level_max_counts of `key`'s level. It reads the whole plane (a million queries:
// some 16M entries) and every tile of a new level waits for it, so a large plane is counted in
// two halves at once, split at a cell column.
analysis::ChannelCounts level_top_split(const analysis::MaskComparison& mask, const std::vector<int32_t>* planted,
                                        const analysis::TileKey& key, bool compare) {
  const int64_t T = mask.n_tokens, column = int64_t{1} << key.lx;
  const int64_t mid = (T / 2 + column - 1) / column * column;
  if (T * mask.width < kSplitEntries || mid <= 0 || mid >= T)
    return analysis::level_max_counts(mask, planted, key.lx, key.ly, compare);
  auto upper = std::async(std::launch::async,
                          [&] { return analysis::level_max_counts(mask, planted, key.lx, key.ly, compare, mid, T); });
  analysis::ChannelCounts top = analysis::level_max_counts(mask, planted, key.lx, key.ly, compare, 0, mid);
  const analysis::ChannelCounts up = upper.get();
  for (size_t c = 0; c < top.size(); ++c) top[c] = std::max(top[c], up[c]);
  return top;
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
    tops_.clear();
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
    // The level's density scale: this worker computes it (the level's first tile), or another
    // one has or will.
    std::promise<analysis::ChannelCounts> top_promise;
    const auto level = std::make_pair(key.lx, key.ly);
    const bool compute_top = !tops_.count(level);
    if (compute_top) tops_[level] = top_promise.get_future().share();
    const std::shared_future<analysis::ChannelCounts> top = tops_[level];
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    if (compute_top) top_promise.set_value(level_top_split(*source.mask, source.planted.get(), key, shading.compare));
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
    d.empty = !analysis::shade_mask_tile(tile, *source.mask, shading, tile_palette(), top.get(), &d.rgba);
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

bool TileCache::level_top(int lx, int ly, analysis::ChannelCounts* top) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = tops_.find({lx, ly});
  if (it == tops_.end() || it->second.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
  *top = it->second.get();
  return true;
}

TileStats TileCache::take_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  TileStats s;
  s.build_ms.swap(stats_.build_ms);
  return s;
}

}  // namespace moba::gui
