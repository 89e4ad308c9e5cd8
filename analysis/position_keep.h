#pragma once
// Which per-position data an analysis keeps in analysis.h5 (DESIGN.md §8b: outputs at scale).
// Every configuration (layer, head, B, k, router) always gets its summary row (group
// attributes) and its position-bucket curves; per-position metric arrays [n_tokens] and the
// selection [n_tokens, top_k] grow as T^2 over a sweep of B and k, so they are kept only by
// choice:
//   level    none      nothing per position (bucket curves only)
//            metrics   the per-position metric arrays of the kept set, no selections
//            selected  metric arrays and selections of the kept set (moba analyze's default)
//            all       metric arrays and selections of every configuration (no kept set, no
//                      budget: unbounded by definition)
//   kept set  heads (of every layer) x configurations (B<b>_k<k>, or B<b> for every k) x
//             routers; each list empty = every one.
// `moba analyze`'s default (no --keep-* flag, level selected or metrics): heads = the first
// analysed head (the lowest of --heads, else head 0) of every layer, and of its
// (configuration, router) pairs those admitted under a per-head byte budget
// (kDefaultKeepBudget; apply_keep_budget): smallest first by position_bytes, ties in plan
// order, until the next one would take the head past the budget. The pairs left out keep
// bucket curves only (not metric arrays: those alone grow with the number of
// configurations). The decision is taken once per run from the plan, so every layer and
// head keeps the same pairs. Named kept sets (--keep-heads/--keep-configs/--keep-routers)
// are kept exactly as named, whatever their size. The struct's own default keeps everything
// (the library's behaviour before keep rules existed).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/config_key.h"

namespace moba::analysis {

enum class PositionLevel { none, metrics, selected, all };
// The default kept set's budget per head, in bytes of host memory (position_bytes summed over
// the head's kept pairs). 256 MiB is four [n_tokens, head_dim] fp32 tensors at 128K tokens,
// d 128 (64 MiB each): less than what the analysis holds anyway for one KV group at that
// size (its query heads, k and v, read as fp32: 6 such tensors at GQA 4, e.g. PERF.md B6),
// so keeping per-position data never dominates the host's peak, at any T or number of
// configurations. At 128K tokens one pair's metric arrays take 4.1 MiB and a selection
// 0.5 MiB per k; at a few thousand tokens every pair of a usual sweep fits.
constexpr int64_t kDefaultKeepBudget = int64_t{256} << 20;
const char* position_level_name(PositionLevel l);  // "none", "metrics", "selected", "all"
// Throws UsageError naming `what` and the accepted values.
PositionLevel position_level_from_name(const std::string& s, const std::string& what = "--positions");

// Host bytes of one (configuration, router)'s kept per-position data at `level`, as the host
// holds it for analysis.h5 (PositionArrays of analysis/results_schema.h): the eight float32
// metric arrays and the uint8 choice flags [n_tokens], and at level selected|all the int32
// selection [n_tokens, top_k]. 0 at level none. The oracle, when analysed, is a router like
// the others: its pairs are counted alike.
int64_t position_bytes(int64_t n_tokens, int top_k, PositionLevel level);

// One (configuration, router) pair of every head and layer.
struct KeptPair {
  int64_t block_size = 0;
  int top_k = 0;
  RouterKind router = RouterKind::moba;
  bool operator==(const KeptPair& o) const;
};
std::string kept_pair_name(const KeptPair& p);  // "B64_k8/moba"

struct PositionKeep {
  PositionLevel level = PositionLevel::all;
  std::vector<int64_t> heads;                     // query heads of every layer; empty = all
  std::vector<std::pair<int64_t, int>> configs;   // (B, k), k = 0: every k of B; empty = all
  std::vector<RouterKind> routers;                // empty = all
  // The per-head byte budget of the kept set; 0 = none. resolve_keep_flags sets
  // kDefaultKeepBudget for the default kept set; apply_keep_budget then decides the pairs.
  int64_t budget_bytes = 0;
  // apply_keep_budget's decision (budget_bytes > 0 only): the admitted pairs, in plan order;
  // of how many pairs the kept set had before the budget; their bytes per head. A budget not
  // yet decided admits nothing (analyze refuses to run with one).
  struct Admission {
    bool decided = false;
    std::vector<KeptPair> admitted;
    int64_t n_candidates = 0;
    int64_t bytes = 0;
  } admission;

  // The key is in the kept set (always true at level all): its head, configuration and router
  // are listed, and under a budget its pair was admitted.
  bool in_kept_set(const ConfigKey& key) const;
  // Per-position metric arrays of `key` are written.
  bool keeps_arrays(const ConfigKey& key) const;
  // The selection of `key` is written.
  bool keeps_selection(const ConfigKey& key) const;
  // One line for run.json, analysis.h5 and messages, e.g. "per-position metric arrays and
  // selections for head 0 of every layer, 41 of 112 configurations within the 256 MiB
  // per-head budget (smallest first; 250.3 MiB kept per head); summary rows and
  // position-bucket curves of every configuration".
  std::string describe() const;
  // The pair is named by `configs` and `routers` (heads and the budget aside; true at level all).
  bool in_named_set(int64_t block_size, int top_k, RouterKind router) const;
  // The pair is named and, under a budget, admitted (heads aside).
  bool keeps_pair(int64_t block_size, int top_k, RouterKind router) const;
};

// Decides which pairs keep->budget_bytes admits, once per run, from the plan: `configs` the
// analysed (B, k) in plan order (resolve_block_configs at the dump's n_tokens), `routers` in
// analysis order. The kept set's pairs (those of configs x routers in_named_set) are admitted in ascending order
// of position_bytes(n_tokens, k, level), ties in plan order (configuration, then router),
// while the running total stays within budget_bytes. Nothing to decide (budget_bytes 0):
// no change.
void apply_keep_budget(PositionKeep* keep, int64_t n_tokens, const std::vector<std::pair<int64_t, int>>& configs,
                       const std::vector<RouterKind>& routers);
// Bytes of per-position data one kept head holds under `keep` (position_bytes over its kept
// pairs of configs x routers): the admitted ones under a budget, every named one otherwise.
int64_t kept_bytes_per_head(const PositionKeep& keep, int64_t n_tokens,
                            const std::vector<std::pair<int64_t, int>>& configs, const std::vector<RouterKind>& routers);
// "256 MiB", "250.3 MiB", "12.0 KiB", "900 bytes".
std::string format_bytes(int64_t bytes);

// `moba analyze`'s keep flags as given (each list empty when the flag is absent).
struct KeepFlags {
  std::string positions = "selected";                    // --positions
  std::vector<std::string> heads, configs, routers;      // --keep-heads, --keep-configs, --keep-routers
};
// The rule of the flags. --keep-heads: "first" (the default: the lowest of `analysed_heads`,
// or head 0 when that is empty = every head), "all", or head indices, each one analysed;
// --keep-configs: "all" (the default) or names (parse_keep_config); --keep-routers: "all"
// (the default) or router names. Throws UsageError for unknown values, and for keep lists
// beside --positions all|none (nothing for them to choose). No --keep-* flag at level
// metrics|selected is the default kept set: budget_bytes = kDefaultKeepBudget, the pairs
// decided later by apply_keep_budget (they need the plan). A named set has no budget.
PositionKeep resolve_keep_flags(const KeepFlags& flags, const std::vector<int64_t>& analysed_heads);

// Parses a --keep-configs item: "B64_k8" (one configuration) or "B64" (every k at B=64).
// Throws UsageError naming `what`.
std::pair<int64_t, int> parse_keep_config(const std::string& s, const std::string& what = "--keep-configs");
// "B64_k8" / "B64".
std::string keep_config_name(const std::pair<int64_t, int>& c);

}  // namespace moba::analysis
