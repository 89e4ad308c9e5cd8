// PositionKeep (analysis/position_keep.h): the keep rule of per-position data.
#include "analysis/position_keep.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "analysis/results_schema.h"
#include "core/errors.h"

namespace moba::analysis {

const char* position_level_name(PositionLevel l) {
  switch (l) {
    case PositionLevel::none: return "none";
    case PositionLevel::metrics: return "metrics";
    case PositionLevel::selected: return "selected";
    case PositionLevel::all: break;
  }
  return "all";
}

PositionLevel position_level_from_name(const std::string& s, const std::string& what) {
  for (const PositionLevel l : {PositionLevel::none, PositionLevel::metrics, PositionLevel::selected, PositionLevel::all})
    if (s == position_level_name(l)) return l;
  throw UsageError(what + ": unknown value '" + s + "' (one of none, metrics, selected, all)");
}

int64_t position_bytes(int64_t n_tokens, int top_k, PositionLevel level) {
  if (level == PositionLevel::none) return 0;
  const int64_t arrays = n_tokens * (kPositionMetricCount * static_cast<int64_t>(sizeof(float)) +
                                     static_cast<int64_t>(sizeof(uint8_t)));  // metrics + choice
  const int64_t selection = level == PositionLevel::metrics ? 0 : n_tokens * top_k * static_cast<int64_t>(sizeof(int32_t));
  return arrays + selection;
}

bool KeptPair::operator==(const KeptPair& o) const {
  return block_size == o.block_size && top_k == o.top_k && router == o.router;
}

std::string kept_pair_name(const KeptPair& p) { return slot_name(p.block_size, p.top_k) + "/" + router_name(p.router); }

bool PositionKeep::in_named_set(int64_t block_size, int top_k, RouterKind router) const {
  if (level == PositionLevel::all) return true;
  if (!routers.empty() && std::find(routers.begin(), routers.end(), router) == routers.end()) return false;
  if (configs.empty()) return true;
  return std::any_of(configs.begin(), configs.end(), [&](const std::pair<int64_t, int>& c) {
    return c.first == block_size && (c.second == 0 || c.second == top_k);
  });
}

bool PositionKeep::keeps_pair(int64_t block_size, int top_k, RouterKind router) const {
  if (!in_named_set(block_size, top_k, router)) return false;
  if (budget_bytes <= 0) return true;
  const KeptPair p{block_size, top_k, router};
  return std::find(admission.admitted.begin(), admission.admitted.end(), p) != admission.admitted.end();
}

bool PositionKeep::in_kept_set(const ConfigKey& key) const {
  if (level == PositionLevel::all) return true;
  if (!heads.empty() && std::find(heads.begin(), heads.end(), key.head) == heads.end()) return false;
  return keeps_pair(key.block_size, key.top_k, key.router);
}

bool PositionKeep::keeps_arrays(const ConfigKey& key) const {
  return level != PositionLevel::none && in_kept_set(key);
}

bool PositionKeep::keeps_selection(const ConfigKey& key) const {
  return (level == PositionLevel::selected || level == PositionLevel::all) && in_kept_set(key);
}

void apply_keep_budget(PositionKeep* keep, int64_t n_tokens, const std::vector<std::pair<int64_t, int>>& configs,
                       const std::vector<RouterKind>& routers) {
  if (keep->budget_bytes <= 0) return;
  struct Candidate {
    KeptPair pair;
    int64_t bytes;
  };
  std::vector<Candidate> cand;  // plan order: configuration, then router
  for (const auto& [B, k] : configs)
    for (const RouterKind r : routers)
      if (keep->in_named_set(B, k, r)) cand.push_back({{B, k, r}, position_bytes(n_tokens, k, keep->level)});
  std::vector<size_t> order(cand.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cand[a].bytes < cand[b].bytes; });
  std::vector<bool> admitted(cand.size(), false);
  PositionKeep::Admission& adm = keep->admission;
  adm = PositionKeep::Admission{};
  adm.decided = true;
  adm.n_candidates = static_cast<int64_t>(cand.size());
  for (const size_t i : order) {
    if (adm.bytes + cand[i].bytes > keep->budget_bytes) break;  // ascending: nothing later fits either
    adm.bytes += cand[i].bytes;
    admitted[i] = true;
  }
  for (size_t i = 0; i < cand.size(); ++i)
    if (admitted[i]) adm.admitted.push_back(cand[i].pair);
}

int64_t kept_bytes_per_head(const PositionKeep& keep, int64_t n_tokens,
                            const std::vector<std::pair<int64_t, int>>& configs, const std::vector<RouterKind>& routers) {
  if (keep.level == PositionLevel::none) return 0;
  int64_t sum = 0;
  for (const auto& [B, k] : configs)
    for (const RouterKind r : routers)
      if (keep.keeps_pair(B, k, r)) sum += position_bytes(n_tokens, k, keep.level);
  return sum;
}

std::string format_bytes(int64_t bytes) {
  constexpr int64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
  char buf[64];
  if (bytes >= kGiB && bytes % kGiB == 0) std::snprintf(buf, sizeof buf, "%lld GiB", static_cast<long long>(bytes / kGiB));
  else if (bytes >= kGiB) std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / kGiB);
  else if (bytes >= kMiB && bytes % kMiB == 0) std::snprintf(buf, sizeof buf, "%lld MiB", static_cast<long long>(bytes / kMiB));
  else if (bytes >= kMiB) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / kMiB);
  else if (bytes >= kKiB) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / kKiB);
  else std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

std::string PositionKeep::describe() const {
  const std::string buckets = "summary rows and position-bucket curves of every configuration";
  if (level == PositionLevel::none) return "no per-position arrays or selections; " + buckets;
  const std::string what = level == PositionLevel::metrics ? "per-position metric arrays (no selections)"
                                                           : "per-position metric arrays and selections";
  if (level == PositionLevel::all) return what + " for every layer, head, configuration and router; " + buckets;
  std::string s = what + " for ";
  if (heads.empty()) {
    s += "every head";
  } else {
    s += heads.size() == 1 ? "head " : "heads ";
    for (size_t i = 0; i < heads.size(); ++i) s += (i ? "," : "") + std::to_string(heads[i]);
  }
  s += " of every layer, ";
  if (budget_bytes > 0)  // the default kept set: every configuration and router named
    return s + std::to_string(admission.admitted.size()) + " of " + std::to_string(admission.n_candidates) +
           " configurations within the " + format_bytes(budget_bytes) + " per-head budget (smallest first; " +
           format_bytes(admission.bytes) + " kept per head); " + buckets;
  if (configs.empty()) {
    s += "every configuration";
  } else {
    s += "configurations ";
    for (size_t i = 0; i < configs.size(); ++i) s += (i ? "," : "") + keep_config_name(configs[i]);
  }
  s += ", ";
  if (routers.empty()) {
    s += "every router";
  } else {
    s += routers.size() == 1 ? "router " : "routers ";
    for (size_t i = 0; i < routers.size(); ++i) s += std::string(i ? "," : "") + router_name(routers[i]);
  }
  return s + "; " + buckets;
}

PositionKeep resolve_keep_flags(const KeepFlags& f, const std::vector<int64_t>& analysed_heads) {
  PositionKeep k;
  k.level = position_level_from_name(f.positions);
  if (k.level == PositionLevel::all || k.level == PositionLevel::none) {
    const char* flag = !f.heads.empty() ? "--keep-heads" : !f.configs.empty() ? "--keep-configs"
                     : !f.routers.empty() ? "--keep-routers" : nullptr;
    if (flag)
      throw UsageError(std::string(flag) + " chooses what --positions metrics|selected keep; --positions " +
                       position_level_name(k.level) + " keeps " + (k.level == PositionLevel::all ? "everything" : "nothing") +
                       " per position");
    return k;
  }
  const bool one = f.heads.size() == 1;
  if (f.heads.empty() || (one && f.heads[0] == "first")) {
    k.heads = {analysed_heads.empty() ? 0 : *std::min_element(analysed_heads.begin(), analysed_heads.end())};
  } else if (!(one && f.heads[0] == "all")) {
    for (const std::string& h : f.heads) {
      int64_t x = 0;
      if (!parse_index_name(h, &x))
        throw UsageError("--keep-heads: '" + h + "' is not a head index (or first, all)");
      if (!analysed_heads.empty() && std::find(analysed_heads.begin(), analysed_heads.end(), x) == analysed_heads.end())
        throw UsageError("--keep-heads: head " + h + " is not analysed (see --heads)");
      if (std::find(k.heads.begin(), k.heads.end(), x) == k.heads.end()) k.heads.push_back(x);
    }
  }
  if (f.heads.empty() && f.configs.empty() && f.routers.empty()) k.budget_bytes = kDefaultKeepBudget;
  if (!(f.configs.size() == 1 && f.configs[0] == "all"))
    for (const std::string& c : f.configs) k.configs.push_back(parse_keep_config(c));
  if (!(f.routers.size() == 1 && f.routers[0] == "all"))
    for (const std::string& r : f.routers) k.routers.push_back(router_from_name(r));
  return k;
}

std::pair<int64_t, int> parse_keep_config(const std::string& s, const std::string& what) {
  int64_t b = 0;
  int k = 0;
  if (parse_slot_name(s, &b, &k)) return {b, k};
  if (s.size() >= 2 && s[0] == 'B' && parse_index_name(s.substr(1), &b) && b >= 1) return {b, 0};
  throw UsageError(what + ": '" + s + "' is not a configuration name (B<block size>_k<top-k>, e.g. B64_k8, or B<block size> for every k)");
}

std::string keep_config_name(const std::pair<int64_t, int>& c) {
  return c.second > 0 ? slot_name(c.first, c.second) : "B" + std::to_string(c.first);
}

}  // namespace moba::analysis
