// PositionKeep (analysis/position_keep.h): the keep rule of per-position data.
#include "analysis/position_keep.h"

#include <algorithm>

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

bool PositionKeep::in_kept_set(const ConfigKey& key) const {
  if (level == PositionLevel::all) return true;
  if (!heads.empty() && std::find(heads.begin(), heads.end(), key.head) == heads.end()) return false;
  if (!routers.empty() && std::find(routers.begin(), routers.end(), key.router) == routers.end()) return false;
  if (configs.empty()) return true;
  return std::any_of(configs.begin(), configs.end(), [&](const std::pair<int64_t, int>& c) {
    return c.first == key.block_size && (c.second == 0 || c.second == key.top_k);
  });
}

bool PositionKeep::keeps_arrays(const ConfigKey& key) const {
  return level != PositionLevel::none && in_kept_set(key);
}

bool PositionKeep::keeps_selection(const ConfigKey& key, int64_t n_tokens) const {
  if (max_selection_entries > 0 && n_tokens > 0 && n_tokens * key.top_k > max_selection_entries) return false;
  return (level == PositionLevel::selected || level == PositionLevel::all) && in_kept_set(key);
}

std::string PositionKeep::describe() const {
  const std::string buckets = "position-bucket curves and summary attributes for every configuration";
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
  if (level == PositionLevel::selected && max_selection_entries > 0)
    s += " (selections only up to " + std::to_string(max_selection_entries) + " entries, n_tokens x top_k)";
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
  if (f.heads.empty() && f.configs.empty() && f.routers.empty()) k.max_selection_entries = kDefaultSelectionCap;
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
