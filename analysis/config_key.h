#pragma once
// The names of an analysis: which router, which aggregation scope, and the one key of an
// analysed configuration (layer, query head, block size B, top-k, router). Every table,
// file and view of analyze's results is keyed by ConfigKey; the name tables here are the
// only place where these enums become text (CLI values, CSV cells, HDF5 group names).
#include <cstdint>
#include <string>

#include "kernels/gate_topk.h"

namespace moba::analysis {

// Routers (analysis/router.h). Declaration order is also name order ("minference-bs" <
// "moba" < "moba-kconv" < "moba-threshold" < "nsa-shared" < "oracle" < "oracle-topp" <
// "quest" < "sink-window"), so ConfigKey's order equals the order of the names.
enum class RouterKind {
  minference_bs, moba, moba_kconv, moba_threshold, nsa_shared, oracle, oracle_topp, quest, sink_window
};
const char* router_name(RouterKind r);  // "minference-bs", "moba", ..., "sink-window"
// "minference-bs, moba, moba-kconv, moba-threshold, nsa-shared, oracle, oracle-topp, quest,
// sink-window" (usage texts, errors).
const char* router_list();
// moba and moba-kconv: routers on gate scores q . kbar, which the SNR probe models (DESIGN.md
// §5). The oracle and the block-score routers (quest, sink-window, minference-bs) are not.
bool router_is_gate(RouterKind r);
// quest, sink-window, minference-bs, moba-threshold, nsa-shared: a block-score row per query
// (analysis/router.h block_score_row; the GPU analysis computes it on the device).
bool router_is_score_row(RouterKind r);
// moba-threshold, oracle-topp: a variable budget per query (the smallest set reaching the
// mass --tau, at most k blocks; analysis/router.h select_mass_row).
bool router_is_variable_budget(RouterKind r);
bool parse_router(const std::string& s, RouterKind* out);  // false for any other text
RouterKind router_from_name(const std::string& s);         // throws UsageError

// Rows of the summary tables: one head, or pooled over the heads of a layer / of everything.
enum class Scope { head, layer, overall };
const char* scope_name(Scope s);  // "head", "layer", "overall"

// The routing options' CLI / run.json names. Each *_from_name throws UsageError naming `what`
// (e.g. "--tie") and the accepted values.
const char* tie_name(kernels::TieRule t);  // "recent", "older"
kernels::TieRule tie_from_name(const std::string& s, const std::string& what = "--tie");
const char* gqa_name(kernels::GqaMode g);  // "per-head", "shared"
kernels::GqaMode gqa_from_name(const std::string& s, const std::string& what = "--gqa");
const char* pool_precision_name(bool pool_fp32);  // "dump", "fp32"
bool pool_fp32_from_name(const std::string& s, const std::string& what = "--pool-precision");

// One analysed (layer, head, block size, top-k, router). Aggregate rows use layer = -1
// (overall) and head = -1 (pooled over heads); SNR sums, which do not depend on k, use
// top_k = 0.
struct ConfigKey {
  int layer = 0;
  int64_t head = 0;
  int64_t block_size = 0;
  int top_k = 0;
  RouterKind router = RouterKind::moba;

  bool operator==(const ConfigKey& o) const;
  bool operator!=(const ConfigKey& o) const { return !(*this == o); }
  // Lexicographic by layer, head, block size, top-k, router.
  bool operator<(const ConfigKey& o) const;
  // Equal but for the router: the same (layer, head, B, k) slot.
  bool same_slot(const ConfigKey& o) const;
  // The same key with another router.
  ConfigKey with_router(RouterKind r) const;
  // "layer 2 head 1 B=8 k=3 moba" (layer / head "all" when negative).
  std::string name() const;
};

// The key columns of summary.csv / aggregate.csv / summary.json, in that order, before the
// summary columns (analysis/summary.h).
enum class KeyColumn { layer, head, scope, router, block_size, top_k, count_ };
const char* key_column_name(KeyColumn c);  // "layer", "head", "scope", "router", "block_size", "top_k"

// A partial ConfigKey (e.g. the viewer's --layer/--head/... options): negative fields and
// any_router match anything.
struct ConfigFilter {
  int layer = -1;
  int64_t head = -1;
  int64_t block_size = -1;
  int top_k = -1;
  bool any_router = true;
  RouterKind router = RouterKind::moba;  // when !any_router
  bool matches(const ConfigKey& k) const;
};

}  // namespace moba::analysis
