#pragma once
// Which per-position data an analysis keeps in analysis.h5 (DESIGN.md §8b: outputs at scale).
// Every configuration (layer, head, B, k, router) always gets its summary row (group
// attributes) and its position-bucket curves; per-position metric arrays [n_tokens] and the
// selection [n_tokens, top_k] grow as T^2 over a sweep of B and k, so they are kept only by
// choice:
//   level    none      nothing per position (bucket curves only)
//            metrics   the per-position metric arrays of the kept set, no selections
//            selected  metric arrays and selections of the kept set (moba analyze's default)
//            all       metric arrays and selections of every configuration (no kept set)
//   kept set  heads (of every layer) x configurations (B<b>_k<k>, or B<b> for every k) x
//             routers; each list empty = every one.
// `moba analyze`'s default: level selected, heads = the first analysed head (the lowest of
// --heads, else head 0) of every layer, every configuration and router, selections up to
// kDefaultSelectionCap entries (n_tokens x top_k; larger ones keep their metric arrays only,
// unless named with --keep-configs/--keep-heads/--keep-routers). The struct's own
// default keeps everything (the library's behaviour before keep rules existed).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/config_key.h"

namespace moba::analysis {

enum class PositionLevel { none, metrics, selected, all };
constexpr int64_t kDefaultSelectionCap = int64_t{1} << 24;  // entries: 131072 tokens x k = 128
const char* position_level_name(PositionLevel l);  // "none", "metrics", "selected", "all"
// Throws UsageError naming `what` and the accepted values.
PositionLevel position_level_from_name(const std::string& s, const std::string& what = "--positions");

struct PositionKeep {
  PositionLevel level = PositionLevel::all;
  std::vector<int64_t> heads;                     // query heads of every layer; empty = all
  std::vector<std::pair<int64_t, int>> configs;   // (B, k), k = 0: every k of B; empty = all
  std::vector<RouterKind> routers;                // empty = all

  // The key is in the kept set (always true at level all).
  bool in_kept_set(const ConfigKey& key) const;
  // Per-position metric arrays of `key` are written.
  bool keeps_arrays(const ConfigKey& key) const;
  // Selections of more than this many entries (n_tokens x top_k) are not kept; 0: no cap. The
  // default kept set caps them (kDefaultSelectionCap): at a fixed sparsity top_k grows with T,
  // so one head's selections alone would grow as T^2 (9.8 GB for PERF.md B6's first head).
  int64_t max_selection_entries = 0;
  // The selection of `key` is written (n_tokens: the dump's, for the cap; 0 ignores it).
  bool keeps_selection(const ConfigKey& key, int64_t n_tokens = 0) const;
  // One line for run.json, analysis.h5 and messages, e.g. "metric arrays and selections for
  // heads 0 of every layer, every configuration, every router; bucket curves for all".
  std::string describe() const;
};

// `moba analyze`'s keep flags as given (each list empty when the flag is absent).
struct KeepFlags {
  std::string positions = "selected";                    // --positions
  std::vector<std::string> heads, configs, routers;      // --keep-heads, --keep-configs, --keep-routers
};
// The rule of the flags. --keep-heads: "first" (the default: the lowest of `analysed_heads`,
// or head 0 when that is empty = every head), "all", or head indices, each one analysed;
// --keep-configs: "all" (the default) or names (parse_keep_config); --keep-routers: "all"
// (the default) or router names. Throws UsageError for unknown values, and for keep lists
// beside --positions all|none (nothing for them to choose).
PositionKeep resolve_keep_flags(const KeepFlags& flags, const std::vector<int64_t>& analysed_heads);

// Parses a --keep-configs item: "B64_k8" (one configuration) or "B64" (every k at B=64).
// Throws UsageError naming `what`.
std::pair<int64_t, int> parse_keep_config(const std::string& s, const std::string& what = "--keep-configs");
// "B64_k8" / "B64".
std::string keep_config_name(const std::pair<int64_t, int>& c);

}  // namespace moba::analysis
