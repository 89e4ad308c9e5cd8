// Name tables and ConfigKey (analysis/config_key.h).
#include "analysis/config_key.h"

#include <tuple>

#include "core/errors.h"

namespace moba::analysis {

namespace {

struct RouterEntry {
  RouterKind kind;
  const char* name;
};
constexpr RouterEntry kRouters[] = {
    {RouterKind::minference_bs, "minference-bs"}, {RouterKind::moba, "moba"},
    {RouterKind::moba_kconv, "moba-kconv"},       {RouterKind::moba_threshold, "moba-threshold"},
    {RouterKind::nsa_shared, "nsa-shared"},       {RouterKind::oracle, "oracle"},
    {RouterKind::oracle_topp, "oracle-topp"},     {RouterKind::quest, "quest"},
    {RouterKind::sink_window, "sink-window"}};

}  // namespace

const char* router_name(RouterKind r) {
  for (const auto& e : kRouters)
    if (e.kind == r) return e.name;
  return "?";
}

bool parse_router(const std::string& s, RouterKind* out) {
  for (const auto& e : kRouters)
    if (s == e.name) {
      *out = e.kind;
      return true;
    }
  return false;
}

const char* router_list() {
  return "minference-bs, moba, moba-kconv, moba-threshold, nsa-shared, oracle, oracle-topp, quest, sink-window";
}

bool router_is_gate(RouterKind r) { return r == RouterKind::moba || r == RouterKind::moba_kconv; }

bool router_is_score_row(RouterKind r) {
  return r == RouterKind::quest || r == RouterKind::sink_window || r == RouterKind::minference_bs ||
         r == RouterKind::moba_threshold || r == RouterKind::nsa_shared;
}

bool router_is_variable_budget(RouterKind r) { return r == RouterKind::moba_threshold || r == RouterKind::oracle_topp; }

RouterKind router_from_name(const std::string& s) {
  RouterKind r;
  if (!parse_router(s, &r)) throw UsageError("unknown router '" + s + "' (one of " + router_list() + ")");
  return r;
}

const char* scope_name(Scope s) {
  switch (s) {
    case Scope::head: return "head";
    case Scope::layer: return "layer";
    case Scope::overall: return "overall";
  }
  return "?";
}

const char* key_column_name(KeyColumn c) {
  switch (c) {
    case KeyColumn::layer: return "layer";
    case KeyColumn::head: return "head";
    case KeyColumn::scope: return "scope";
    case KeyColumn::router: return "router";
    case KeyColumn::block_size: return "block_size";
    case KeyColumn::top_k: return "top_k";
    case KeyColumn::count_: break;
  }
  return "?";
}

const char* tie_name(kernels::TieRule t) { return t == kernels::TieRule::recent ? "recent" : "older"; }

kernels::TieRule tie_from_name(const std::string& s, const std::string& what) {
  if (s == "recent") return kernels::TieRule::recent;
  if (s == "older") return kernels::TieRule::older;
  throw UsageError(what + ": '" + s + "' is not one of recent, older");
}

const char* gqa_name(kernels::GqaMode g) { return g == kernels::GqaMode::shared ? "shared" : "per-head"; }

kernels::GqaMode gqa_from_name(const std::string& s, const std::string& what) {
  if (s == "per-head") return kernels::GqaMode::per_head;
  if (s == "shared") return kernels::GqaMode::shared;
  throw UsageError(what + ": '" + s + "' is not one of per-head, shared");
}

const char* pool_precision_name(bool pool_fp32) { return pool_fp32 ? "fp32" : "dump"; }

bool pool_fp32_from_name(const std::string& s, const std::string& what) {
  if (s == "dump") return false;
  if (s == "fp32") return true;
  throw UsageError(what + ": '" + s + "' is not one of dump, fp32");
}

bool ConfigKey::operator==(const ConfigKey& o) const {
  return same_slot(o) && router == o.router;
}

bool ConfigKey::operator<(const ConfigKey& o) const {
  return std::tie(layer, head, block_size, top_k, router) < std::tie(o.layer, o.head, o.block_size, o.top_k, o.router);
}

bool ConfigKey::same_slot(const ConfigKey& o) const {
  return layer == o.layer && head == o.head && block_size == o.block_size && top_k == o.top_k;
}

ConfigKey ConfigKey::with_router(RouterKind r) const {
  ConfigKey k = *this;
  k.router = r;
  return k;
}

std::string ConfigKey::name() const {
  return "layer " + (layer < 0 ? std::string("all") : std::to_string(layer)) + " head " +
         (head < 0 ? std::string("all") : std::to_string(head)) + " B=" + std::to_string(block_size) +
         " k=" + std::to_string(top_k) + " " + router_name(router);
}

bool ConfigFilter::matches(const ConfigKey& k) const {
  return (layer < 0 || k.layer == layer) && (head < 0 || k.head == head) &&
         (block_size < 0 || k.block_size == block_size) && (top_k < 0 || k.top_k == top_k) &&
         (any_router || k.router == router);
}

}  // namespace moba::analysis
