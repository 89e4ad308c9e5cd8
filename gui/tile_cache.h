#pragma once
// Mask tiles as OpenGL textures (analysis/view_lod.h builds the counts and shades them):
// worker threads aggregate and shade the tiles a view asks for, the GUI thread only uploads
// finished ones (one glTexImage2D of 512 x 512 RGBA each: 2 x 2 texels per cell). The cache
// is bounded (least recently wanted tiles are dropped, their textures deleted), so memory does
// not grow with the sequence.
//
// The density encodings scale each level by the most entries per class in one of its cells
// (analysis::level_max_counts): computed once per level and source, before its first tile.
//
// Per frame the mask panel calls want() with the tiles its view needs, most important first;
// workers build the first wanted tiles not yet built, so tiles of a view the user has already
// left are never built. A new source (another configuration) or shading drops every tile.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "analysis/view_lod.h"

namespace moba::gui {

// How counts become colours (the key of a tile's texture beside its TileKey).
using analysis::TileShading;

// What the tiles are aggregated from; kept alive by the cache while workers use it.
struct TileSource {
  std::shared_ptr<const analysis::MaskComparison> mask;
  std::shared_ptr<const std::vector<int32_t>> planted;  // may be null
};

// Timing of tile builds since the last take_build_times() (milliseconds, aggregate + shade).
struct TileStats {
  std::vector<double> build_ms;
};

class TileCache {
 public:
  explicit TileCache(int n_workers);
  ~TileCache();
  TileCache(const TileCache&) = delete;
  TileCache& operator=(const TileCache&) = delete;

  // Sets what tiles are built from; a change (other mask object or shading) drops every tile.
  void set_source(const TileSource& source, const TileShading& shading);
  // The tiles the view needs this frame, most important first (replaces the previous list).
  void want(const std::vector<analysis::TileKey>& keys);
  // GUI thread: uploads finished tiles as textures, evicts beyond the budget. Call once per
  // frame before drawing.
  void upload();
  // The texture of a built tile, or 0 (not built yet, or empty: nothing to draw).
  unsigned texture(const analysis::TileKey& key, bool* built) const;
  // True while a wanted tile is not built.
  bool busy() const;
  // The density scale of level (lx, ly) (analysis::level_max_counts) once a worker has
  // computed it for the current source; false before.
  bool level_top(int lx, int ly, analysis::ChannelCounts* top) const;
  TileStats take_stats();
  size_t n_textures() const { return textures_.size(); }

 private:
  struct Done {
    uint64_t generation;
    analysis::TileKey key;
    bool empty;
    std::vector<uint8_t> rgba;  // [2 kTileCells rows, top = highest block][2 kTileCells][4]
    double ms;
  };
  struct Texture {
    unsigned id = 0;  // 0: the tile is empty
    uint64_t last_wanted = 0;
  };
  void worker();

  // Shared with the workers (mutex_).
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  TileSource source_;
  TileShading shading_;
  std::vector<analysis::TileKey> wanted_;
  std::map<analysis::TileKey, bool> in_progress_or_done_;  // this generation
  // Density scale per level (lx, ly), this generation: the first worker that needs one
  // computes it, the others wait for it.
  std::map<std::pair<int, int>, std::shared_future<analysis::ChannelCounts>> tops_;
  std::deque<Done> done_;
  TileStats stats_;
  std::vector<std::thread> workers_;

  // GUI thread only.
  std::map<analysis::TileKey, Texture> textures_;
  uint64_t frame_ = 0;
};

}  // namespace moba::gui
