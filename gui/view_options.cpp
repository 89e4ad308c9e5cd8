// validate_view (gui/gui.h): every view option of `moba gui` checked against the file before a
// window opens, each error naming the option and the valid choices (exit 2 in the CLI).
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "analysis/results_file.h"
#include "analysis/summary.h"
#include "core/errors.h"
#include "gui/gui.h"
#include "gui/viewer_state.h"

namespace moba::gui {

namespace {

using analysis::ConfigKey;

template <typename T, typename F>
std::string join(const std::set<T>& xs, F name) {
  std::string out;
  for (const T& x : xs) out += (out.empty() ? "" : ", ") + name(x);
  return out;
}
std::string join_numbers(const std::set<int64_t>& xs) {
  return join(xs, [](int64_t x) { return std::to_string(x); });
}

// Narrows `configs` field by field as the filter names them, throwing at the first field the
// remaining configurations lack: UsageError(miss(option, value, valid)), `option` the field's
// option name without its prefix (layer, head, block-size, top-k, router).
template <typename Miss>
std::vector<ConfigKey> narrow_by(std::vector<ConfigKey> configs, const analysis::ConfigFilter& f, Miss miss) {
  const auto keep = [&](auto pred) {
    std::vector<ConfigKey> out;
    for (const ConfigKey& c : configs)
      if (pred(c)) out.push_back(c);
    configs = out;
  };
  const auto check = [&](bool given, int64_t value, const std::string& option, auto field) {
    if (!given) return;
    std::set<int64_t> valid;
    for (const ConfigKey& c : configs) valid.insert(field(c));
    if (!valid.count(value)) throw UsageError(miss(option, std::to_string(value), join_numbers(valid)));
    keep([&](const ConfigKey& c) { return field(c) == value; });
  };
  check(f.layer >= 0, f.layer, "layer", [](const ConfigKey& c) { return static_cast<int64_t>(c.layer); });
  check(f.head >= 0, f.head, "head", [](const ConfigKey& c) { return c.head; });
  check(f.block_size >= 0, f.block_size, "block-size", [](const ConfigKey& c) { return c.block_size; });
  check(f.top_k >= 0, f.top_k, "top-k", [](const ConfigKey& c) { return static_cast<int64_t>(c.top_k); });
  if (!f.any_router) {
    std::set<std::string> valid;
    for (const ConfigKey& c : configs) valid.insert(analysis::router_name(c.router));
    if (!valid.count(analysis::router_name(f.router)))
      throw UsageError(miss("router", analysis::router_name(f.router), join(valid, [](const std::string& x) { return x; })));
    keep([&](const ConfigKey& c) { return c.router == f.router; });
  }
  return configs;
}

// narrow_by for options given by the user. `prefix` is "" or "compare-" (the option names).
std::vector<ConfigKey> narrow(std::vector<ConfigKey> configs, const analysis::ConfigFilter& f, const std::string& prefix,
                              const std::string& where) {
  return narrow_by(std::move(configs), f, [&](const std::string& option, const std::string& value, const std::string& valid) {
    return "--" + prefix + option + " " + value + ": not analysed" + where + "; valid: " + valid;
  });
}

}  // namespace

void validate_view(const analysis::ResultsFile& file, const GuiOptions& o) {
  const std::vector<ConfigKey> initial = narrow(file.configs(), o.initial, "", " in " + file.h5_path());
  // The configuration shown first (init_viewer's rule: without a router, not the oracle).
  const ConfigKey* first = nullptr;
  for (const ConfigKey& c : initial)
    if (!first || (o.initial.any_router && first->router == analysis::RouterKind::oracle &&
                   c.router != analysis::RouterKind::oracle && first->same_slot(c)))
      first = &c;
  if (!first) throw UsageError(file.h5_path() + " has no configuration matching the given options");
  const ConfigKey key = *first;
  const int64_t T = file.n_tokens(key);
  const int64_t NB = T > 0 ? (T + key.block_size - 1) / key.block_size : -1;
  if (T > 0 && o.t_end > T)
    throw UsageError("--positions " + std::to_string(o.t_begin) + ":" + std::to_string(o.t_end) + ": " + key.name() +
                     " has positions 0:" + std::to_string(T));
  if (NB > 0 && o.b_end > NB)
    throw UsageError("--blocks " + std::to_string(o.b_begin) + ":" + std::to_string(o.b_end) + ": " + key.name() +
                     " has blocks 0:" + std::to_string(NB));
  if (T > 0 && o.query >= T)
    throw UsageError("--query " + std::to_string(o.query) + ": " + key.name() + " has positions 0 .. " + std::to_string(T - 1));

  if (o.compare) {
    std::vector<ConfigKey> same_head;
    for (const ConfigKey& c : file.configs())
      if (c.layer == key.layer && c.head == key.head) same_head.push_back(c);
    analysis::ConfigFilter f = o.compare_with;
    f.layer = -1;
    f.head = -1;
    const std::string where = " for layer " + std::to_string(key.layer) + " head " + std::to_string(key.head);
    // The fields given first; those not given are the shown configuration's, and where the
    // given ones lack that value, the message says which option to add (not one never typed).
    const std::vector<ConfigKey> left = narrow(same_head, f, "compare-", where);
    const std::string given = o.compare_with.block_size >= 0 ? "--compare-block-size " + std::to_string(f.block_size)
                              : o.compare_with.top_k >= 0    ? "--compare-top-k " + std::to_string(f.top_k)
                                                             : "--compare-router " + std::string(analysis::router_name(f.router));
    analysis::ConfigFilter inherited;
    if (f.block_size < 0) inherited.block_size = f.block_size = key.block_size;
    if (f.top_k < 0) inherited.top_k = f.top_k = key.top_k;
    if (f.any_router) {
      inherited.any_router = f.any_router = false;
      inherited.router = f.router = key.router;
    }
    narrow_by(left, inherited, [&](const std::string& option, const std::string& value, const std::string& valid) {
      return given + ": not analysed with the shown configuration's " + (option == "block-size" ? "block size" : option) +
             " " + value + where + "; add --compare-" + option + " (valid there: " + valid + ")";
    });
    ConfigKey b = key;
    b.block_size = f.block_size;
    b.top_k = f.top_k;
    b.router = f.router;
    if (b == key)
      throw UsageError("--compare-*: the compared configuration is the shown one (" + key.name() +
                       "); name another --compare-router, --compare-block-size or --compare-top-k");
    if (o.compare_difference && b.block_size != key.block_size)
      throw UsageError("--compare-mode difference needs one block size (B=" + std::to_string(key.block_size) + " vs B=" +
                       std::to_string(b.block_size) + "); use --compare-mode side");
    if (o.compare_difference && (!file.stored(key).selection || !file.stored(b).selection))
      throw UsageError("--compare-mode difference needs both selections stored: " +
                       file.missing_text(file.stored(key).selection ? b : key));
  }
  std::set<std::string> seen;
  for (const std::string& p : o.panels) {
    Panel panel;
    if (!parse_panel(p, &panel)) throw UsageError("--panels " + p + ": unknown panel; valid: " + panel_list());
    if (!seen.insert(p).second) throw UsageError("--panels " + p + ": named twice");
  }
  if (!o.metric.empty()) {
    if (!file.has_summary())
      throw UsageError("--metric " + o.metric + ": no summary.csv beside " + file.h5_path() + " to colour the grids from");
    analysis::SummaryColumn col;
    if (!analysis::parse_summary_column(o.metric, &col) || file.summary().column(o.metric) < 0) {
      std::string valid;
      for (const auto& c : analysis::summary_columns())
        if (file.summary().column(c.name) >= 0) valid += (valid.empty() ? "" : ", ") + std::string(c.name);
      throw UsageError("--metric " + o.metric + ": not a summary column of " + file.summary().path + "; valid: " + valid);
    }
  }
  for (const std::string& m : o.metrics) {
    const auto& names = analysis::known_metric_names();
    if (std::find(names.begin(), names.end(), m) == names.end()) {
      std::string valid;
      for (const std::string& n : names) valid += (valid.empty() ? "" : ", ") + n;
      throw UsageError("--metrics " + m + ": not a per-position metric; valid: " + valid);
    }
  }
  if (o.planted) {
    std::string why;
    if (file.load_planted(key.layer, key.head, &why).empty()) throw UsageError("--planted: " + why);
  }
}

}  // namespace moba::gui
