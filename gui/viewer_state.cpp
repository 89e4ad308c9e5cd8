// The viewer's per-frame update (gui/viewer_state.h): selection snapping, background loads
// through analysis::load_position_view, and the caches the panels draw from.
#include "gui/viewer_state.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <iterator>

#include "analysis/summary.h"

namespace moba::gui {

namespace {

using analysis::ConfigKey;
using analysis::KeyColumn;
using analysis::RouterKind;

// The key columns of summary.csv shown by default, before the catalogue's headline columns.
constexpr KeyColumn kKeyColumns[] = {KeyColumn::layer, KeyColumn::head, KeyColumn::router, KeyColumn::block_size,
                                     KeyColumn::top_k};

template <typename T>
void push_unique(std::vector<T>* v, const T& x) {
  if (std::find(v->begin(), v->end(), x) == v->end()) v->push_back(x);
}

// Snaps `sel` onto an existing configuration, field by field (layer, head, slot, router),
// keeping every field that still exists, and lists the choices at each level.
void snap_selection(const analysis::ResultsFile& file, ConfigKey* sel, NavigatorOptions* nav) {
  *nav = NavigatorOptions{};
  const auto& configs = file.configs();
  for (const auto& c : configs) push_unique(&nav->layers, c.layer);
  if (std::find(nav->layers.begin(), nav->layers.end(), sel->layer) == nav->layers.end()) sel->layer = nav->layers.front();
  for (size_t i = 0; i < configs.size(); ++i) {
    const ConfigKey& c = configs[i];
    if (c.layer != sel->layer) continue;
    push_unique(&nav->heads, c.head);
    if (file.stored_levels()[i].metrics || file.stored_levels()[i].selection) push_unique(&nav->heads_with_arrays, c.head);
  }
  if (std::find(nav->heads.begin(), nav->heads.end(), sel->head) == nav->heads.end()) sel->head = nav->heads.front();
  // Per-position data is kept per (configuration, router): a head may keep some of its slots
  // (the default kept set's budget), a slot some of its routers.
  const auto kept = [&file](size_t i) { return file.stored_levels()[i].metrics || file.stored_levels()[i].selection; };
  for (size_t i = 0; i < configs.size(); ++i) {
    const ConfigKey& c = configs[i];
    if (c.layer != sel->layer || c.head != sel->head) continue;
    push_unique(&nav->slots, {c.block_size, c.top_k});
    if (kept(i)) push_unique(&nav->slots_with_arrays, {c.block_size, c.top_k});
  }
  const std::pair<int64_t, int> slot{sel->block_size, sel->top_k};
  if (std::find(nav->slots.begin(), nav->slots.end(), slot) == nav->slots.end()) {
    // Same block size if possible, else the first slot.
    auto it = std::find_if(nav->slots.begin(), nav->slots.end(),
                           [&](const auto& s) { return s.first == sel->block_size; });
    const auto& pick = it != nav->slots.end() ? *it : nav->slots.front();
    sel->block_size = pick.first;
    sel->top_k = pick.second;
  }
  for (size_t i = 0; i < configs.size(); ++i) {
    const ConfigKey& c = configs[i];
    if (c.layer != sel->layer || c.head != sel->head || c.block_size != sel->block_size || c.top_k != sel->top_k)
      continue;
    push_unique(&nav->routers, c.router);
    if (kept(i)) push_unique(&nav->routers_with_arrays, c.router);
  }
  if (std::find(nav->routers.begin(), nav->routers.end(), sel->router) == nav->routers.end()) {
    // Prefer a real router over the oracle: the oracle is what it is compared with.
    auto it = std::find_if(nav->routers.begin(), nav->routers.end(), [](RouterKind r) { return r != RouterKind::oracle; });
    sel->router = it != nav->routers.end() ? *it : nav->routers.front();
  }
}

void compute_ranges(const analysis::PositionView& v, std::map<std::string, std::pair<float, float>>* ranges);

void build_lods(const analysis::ResultArrays& a, std::map<std::string, analysis::SeriesLod>* out) {
  for (const auto& [name, values] : a.metrics) (*out)[name] = analysis::build_series_lod(values);
}

// The difference a - b of every metric both hold, and its mipmaps.
void build_diffs(const analysis::ResultArrays& a, const analysis::ResultArrays& b,
                 std::map<std::string, std::vector<float>>* values, std::map<std::string, analysis::SeriesLod>* lods) {
  for (const auto& [name, x] : a.metrics) {
    const std::vector<float>* y = b.metric(name);
    if (!y || y->size() != x.size()) continue;
    std::vector<float>& d = (*values)[name];
    d.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) d[i] = x[i] - (*y)[i];
  }
  for (const auto& [name, d] : *values) (*lods)[name] = analysis::build_series_lod(d);
}

// Runs on a worker thread: everything the panels draw from for one configuration.
std::shared_ptr<const ViewData> load_view(const analysis::ResultsFile* file, ConfigKey config, bool with_planted) {
  const auto start = std::chrono::steady_clock::now();
  auto d = std::make_shared<ViewData>();
  d->view = analysis::load_position_view(*file, config);
  compute_ranges(d->view, &d->ranges);
  build_lods(d->view.router, &d->router_lod);
  if (d->view.has_oracle) {
    build_lods(d->view.oracle, &d->oracle_lod);
    build_diffs(d->view.router, d->view.oracle, &d->diff_values, &d->diff_lod);
  }
  if (with_planted) {
    std::vector<int32_t> p = file->load_planted(config.layer, config.head, &d->planted_missing);
    if (!p.empty()) d->planted = std::make_shared<const std::vector<int32_t>>(std::move(p));
  }
  d->load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return d;
}

std::shared_ptr<const CompareData> load_compare(const analysis::ResultsFile* file, ConfigKey config,
                                                std::shared_ptr<const ViewData> a) {
  auto c = std::make_shared<CompareData>();
  c->b = load_view(file, config, false);
  const analysis::ResultArrays& ra = a->view.router;
  const analysis::ResultArrays& rb = c->b->view.router;
  if (ra.has_selection() && rb.has_selection() && ra.config.block_size == rb.config.block_size &&
      ra.n_tokens == rb.n_tokens)
    c->pair = std::make_shared<const analysis::MaskComparison>(analysis::compare_selection_pair(ra, rb));
  else if (ra.config.block_size != rb.config.block_size)
    c->pair_missing = "a difference mask needs one block size (B=" + std::to_string(ra.config.block_size) + " vs B=" +
                      std::to_string(rb.config.block_size) + "): shown side by side";
  else
    c->pair_missing = "a selection is not stored: no difference mask";
  build_diffs(ra, rb, &c->diff_values, &c->diff_lod);
  return c;
}

void sort_summary_order(ViewerState* s);

void rebuild_summary_order(ViewerState* s) {
  SummaryViewState& v = s->summary;
  v.order_dirty = false;
  v.order.clear();
  if (!s->file->has_summary()) return;
  const analysis::SummaryTable& t = s->file->summary();
  const int c_layer = t.column(KeyColumn::layer), c_head = t.column(KeyColumn::head),
            c_b = t.column(KeyColumn::block_size), c_k = t.column(KeyColumn::top_k);
  for (int i = 0; i < static_cast<int>(t.rows.size()); ++i) {
    const auto& r = t.rows[static_cast<size_t>(i)].value;
    if (v.only_selected_head && c_layer >= 0 && c_head >= 0 &&
        (r[c_layer] != s->selection.layer || r[c_head] != static_cast<double>(s->selection.head)))
      continue;
    if (v.only_selected_slot && c_b >= 0 && c_k >= 0 &&
        (r[c_b] != static_cast<double>(s->selection.block_size) || r[c_k] != s->selection.top_k))
      continue;
    v.order.push_back(i);
  }
  if (v.sort_column >= 0 && v.sort_column < static_cast<int>(v.columns.size())) sort_summary_order(s);
  // Bring the shown configuration's row into view.
  const int c_router = t.column(KeyColumn::router);
  v.scroll_to = -1;
  if (v.keep_scroll) {
    v.keep_scroll = false;
    return;
  }
  for (int p = 0; p < static_cast<int>(v.order.size()) && c_layer >= 0 && c_head >= 0 && c_b >= 0 && c_k >= 0 && c_router >= 0; ++p) {
    const auto& row = t.rows[static_cast<size_t>(v.order[static_cast<size_t>(p)])];
    if (row.value[c_layer] == s->selection.layer && row.value[c_head] == static_cast<double>(s->selection.head) &&
        row.value[c_b] == static_cast<double>(s->selection.block_size) && row.value[c_k] == s->selection.top_k &&
        row.text[c_router] == analysis::router_name(s->selection.router)) {
      v.scroll_to = p;
      break;
    }
  }
}

void sort_summary_order(ViewerState* s) {
  SummaryViewState& v = s->summary;
  const analysis::SummaryTable& t = s->file->summary();
  const int col = v.columns[static_cast<size_t>(v.sort_column)];
  const bool desc = v.sort_descending;
  std::stable_sort(v.order.begin(), v.order.end(), [&](int a, int b) {
    const auto& ra = t.rows[static_cast<size_t>(a)];
    const auto& rb = t.rows[static_cast<size_t>(b)];
    const double xa = ra.value[col], xb = rb.value[col];
    const bool na = std::isnan(xa), nb = std::isnan(xb);
    if (na && nb) return desc ? ra.text[col] > rb.text[col] : ra.text[col] < rb.text[col];
    if (na != nb) return nb;  // numbers before text / NaN, in both directions
    return desc ? xa > xb : xa < xb;
  });
}

void compute_ranges(const analysis::PositionView& v, std::map<std::string, std::pair<float, float>>* ranges) {
  // Without per-position arrays, the stored bucket curves set the range.
  std::map<std::string, std::vector<float>> values_of = v.router.metrics;
  if (values_of.empty())
    for (const auto& [name, b] : v.router.bucket_curves) {
      std::vector<float>& x = values_of[name];
      x = b.mean;
      if (const analysis::BucketSeries* o = v.has_oracle ? v.oracle.bucket_curve(name) : nullptr)
        x.insert(x.end(), o->mean.begin(), o->mean.end());
    }
  for (const auto& [name, values] : values_of) {
    const analysis::PositionMetricInfo* info = analysis::find_position_metric(name);
    const analysis::PlotRange range = info ? info->range : analysis::PlotRange::data;
    if (range == analysis::PlotRange::share) {
      (*ranges)[name] = {0.0f, 1.0f};
      continue;
    }
    // The percentile from at most ~2^17 evenly spaced values per array (a plot range, not a
    // statistic), the minimum from all of them.
    std::vector<float> finite;
    float mn = INFINITY;
    const auto take = [&](const std::vector<float>& x) {
      const size_t stride = std::max<size_t>(1, x.size() >> 17);
      for (size_t i = 0; i < x.size(); ++i) {
        if (!std::isfinite(x[i])) continue;
        mn = std::min(mn, x[i]);
        if (i % stride == 0) finite.push_back(x[i]);
      }
    };
    take(values);
    if (const std::vector<float>* o = v.has_oracle ? v.oracle.metric(name) : nullptr) take(*o);
    float lo = 0, hi = 1;
    if (!finite.empty()) {
      const size_t q = std::min(finite.size() - 1, static_cast<size_t>(0.995 * static_cast<double>(finite.size())));
      std::nth_element(finite.begin(), finite.begin() + static_cast<std::ptrdiff_t>(q), finite.end());
      hi = finite[q];
      lo = std::min(0.0f, mn);
      if (lo > -1e-3f * std::fabs(hi)) lo = 0.0f;  // rounding noise below 0 (e.g. KL of -1e-7)
      if (range == analysis::PlotRange::data_up_to_one) hi = 1.0f;
      float d_lo, d_hi;  // never beyond the metric's valid values
      analysis::metric_domain(range, false, &d_lo, &d_hi);
      lo = std::max(lo, d_lo);
      hi = std::min(hi, d_hi);
      if (!(hi > lo)) hi = lo + 1.0f;
    }
    (*ranges)[name] = {lo, hi};
  }
}

void refresh_buckets(ViewerState* s) {
  LoadedView& l = s->loaded;
  const MetricsViewState& m = s->metrics;
  if (!l.view || !m.bucketed) return;
  const CompareData* cmp = s->compare.on ? s->compared.get() : nullptr;
  const void* of[2] = {l.data.get(), cmp};
  if (l.buckets_n == m.n_buckets && l.bucket_metrics == m.shown && std::equal(of, of + 2, l.buckets_of)) return;
  l.buckets_n = m.n_buckets;
  l.bucket_metrics = m.shown;
  std::copy(of, of + 2, l.buckets_of);
  l.router_buckets.clear();
  l.oracle_buckets.clear();
  l.compared_buckets.clear();
  l.diff_buckets.clear();
  const auto& cfg = l.view->router.config;
  const auto means = [&](const std::vector<float>* v, const analysis::ConfigKey& c) {
    return v && !v->empty() ? analysis::bucket_means(*v, c.block_size, c.top_k, m.n_buckets) : analysis::BucketSeries{};
  };
  const auto find = [](const std::map<std::string, std::vector<float>>& x, const std::string& n) {
    auto it = x.find(n);
    return it == x.end() ? nullptr : &it->second;
  };
  for (const std::string& name : m.shown) {
    l.router_buckets.push_back(means(l.view->router.metric(name), cfg));
    l.oracle_buckets.push_back(means(l.view->has_oracle ? l.view->oracle.metric(name) : nullptr, cfg));
    l.compared_buckets.push_back(cmp ? means(cmp->b->view.router.metric(name), cmp->b->view.router.config)
                                     : analysis::BucketSeries{});
    const std::vector<float>* diff =
        cmp ? find(cmp->diff_values, name) : l.data ? find(l.data->diff_values, name) : nullptr;
    l.diff_buckets.push_back(means(diff, cfg));
  }
}

}  // namespace

std::shared_ptr<const analysis::MaskComparison> shared_mask(const std::shared_ptr<const ViewData>& d) {
  if (!d || !d->view.has_mask) return nullptr;
  return std::shared_ptr<const analysis::MaskComparison>(d, &d->view.mask);
}

const char* panel_name(Panel p) {
  switch (p) {
    case Panel::mask: return "mask";
    case Panel::metrics: return "metrics";
    case Panel::summary: return "summary";
    case Panel::overview: return "overview";
    case Panel::configs: return "configs";
    case Panel::snr: return "snr";
    case Panel::count_: break;
  }
  return "?";
}

const char* panel_list() { return "mask, metrics, summary, overview, configs, snr"; }

bool parse_panel(const std::string& s, Panel* out) {
  for (int i = 0; i < kPanelCount; ++i)
    if (s == panel_name(static_cast<Panel>(i))) {
      *out = static_cast<Panel>(i);
      return true;
    }
  return false;
}

void snap_compare(ViewerState* s) {
  ConfigKey k = s->compare.key;
  k.layer = s->selection.layer;
  k.head = s->selection.head;
  snap_selection(*s->file, &k, &s->compare_nav);
  s->compare.key = k;
}

bool init_viewer(ViewerState* s, const analysis::ResultsFile& file, const analysis::ConfigFilter& initial) {
  s->file = &file;
  const ConfigKey* first = nullptr;
  for (const auto& c : file.configs()) {
    if (!initial.matches(c)) continue;
    // Without an explicit router, prefer a real one over the oracle.
    if (!first || (initial.any_router && first->router == RouterKind::oracle && c.router != RouterKind::oracle &&
                   first->same_slot(c)))
      first = &c;
  }
  if (!first) return false;
  s->selection = *first;
  snap_selection(file, &s->selection, &s->nav);
  if (file.has_summary()) {
    std::vector<std::string> names;
    for (const KeyColumn k : kKeyColumns) names.push_back(analysis::key_column_name(k));
    for (const auto& info : analysis::summary_columns())
      if (info.headline) names.push_back(info.name);
    for (const std::string& name : names) {
      const int c = file.summary().column(name);
      if (c >= 0) s->summary.columns.push_back(c);
    }
  }
  return true;
}

void update_viewer(ViewerState* s) {
  const ConfigKey before = s->selection;
  snap_selection(*s->file, &s->selection, &s->nav);
  if (s->selection != before) s->summary.order_dirty = true;

  // Adopt a finished load.
  if (s->loading && s->pending.valid() &&
      s->pending.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    s->loading = false;
    try {
      auto data = s->pending.get();
      const bool same_length = s->loaded.view && s->loaded.view->router.n_tokens == data->view.router.n_tokens;
      s->loaded = LoadedView{};
      s->loaded.key = s->pending_key;
      s->loaded.view = std::shared_ptr<const analysis::PositionView>(data, &data->view);
      s->loaded.data = std::move(data);
      s->load_error.clear();
      s->loaded.ranges = s->loaded.data->ranges;
      if (!same_length) s->axis.t_per_px = s->key_axis.t_per_px = 0;  // a new sequence length: fit it
      if (s->pinned_t >= s->loaded.view->router.n_tokens) s->pinned_t = -1;
    } catch (const std::exception& e) {
      s->load_error = e.what();
      s->loaded.key = s->pending_key;
      s->loaded.view.reset();
    }
  }
  // Start a load when the selection moved on (one at a time; the latest request wins).
  if (!s->loading && s->loaded.key != s->selection) {
    const ConfigKey* c = s->file->find(s->selection);
    if (c) {
      s->pending_key = s->selection;
      s->pending = std::async(std::launch::async, load_view, s->file, *c, true);
      s->loading = true;
    }
  }
  // The compared configuration, once the shown one is loaded (its difference needs both).
  if (s->compare.on) {
    snap_compare(s);
    if (s->compare_loading && s->compare_pending.valid() &&
        s->compare_pending.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      s->compare_loading = false;
      try {
        s->compared = s->compare_pending.get();
        s->compare_error.clear();
      } catch (const std::exception& e) {
        s->compared.reset();
        s->compare_error = e.what();
      }
    }
    const bool stale = s->compare_loaded_key != s->compare.key || s->compare_for != s->loaded.data;
    if (!s->compare_loading && stale && s->loaded.data && !s->loading && s->loaded.key == s->selection) {
      s->compare_loaded_key = s->compare.key;
      s->compare_for = s->loaded.data;
      s->compared.reset();
      s->compare_pending = std::async(std::launch::async, load_compare, s->file, s->compare.key, s->loaded.data);
      s->compare_loading = true;
    }
  }
  refresh_buckets(s);
  if (s->summary.order_dirty) rebuild_summary_order(s);
}

bool viewer_busy(const ViewerState& s) {
  if (s.loading || s.loaded.key != s.selection) return true;
  return s.compare.on && (s.compare_loading || s.compare_loaded_key != s.compare.key || s.compare_for != s.loaded.data);
}

void select_summary_row(ViewerState* s, int row) {
  const analysis::SummaryTable& t = s->file->summary();
  if (row < 0 || row >= static_cast<int>(t.rows.size())) return;
  const auto& r = t.rows[static_cast<size_t>(row)];
  const auto num = [&](KeyColumn key, double fallback) {
    const int c = t.column(key);
    return c >= 0 && !std::isnan(r.value[c]) ? r.value[c] : fallback;
  };
  ConfigKey sel = s->selection;
  sel.layer = static_cast<int>(num(KeyColumn::layer, sel.layer));
  sel.head = static_cast<int64_t>(num(KeyColumn::head, static_cast<double>(sel.head)));
  sel.block_size = static_cast<int64_t>(num(KeyColumn::block_size, static_cast<double>(sel.block_size)));
  sel.top_k = static_cast<int>(num(KeyColumn::top_k, sel.top_k));
  const int c_router = t.column(KeyColumn::router);
  if (c_router >= 0) analysis::parse_router(r.text[c_router], &sel.router);  // unknown text: keep the router
  s->selection = sel;
  s->summary.keep_scroll = true;
}

}  // namespace moba::gui
