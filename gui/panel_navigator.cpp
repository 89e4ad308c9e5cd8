// The navigator: which (layer, head, B, k, router) is shown — the choices come from the
// file — the file's provenance, the configuration's summary numbers (its summary.csv row,
// stored in analysis.h5's head tables), the mask legend with totals, and the pinned query.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "analysis/summary.h"
#include "gui/panels.h"

namespace moba::gui {

namespace {

template <typename T, typename Label>
void combo(const char* label, const std::vector<T>& items, T* value, Label make_label) {
  std::string preview = make_label(*value);
  if (ImGui::BeginCombo(label, preview.c_str())) {
    for (const T& item : items) {
      const bool selected = item == *value;
      if (ImGui::Selectable(make_label(item).c_str(), selected)) *value = item;
      if (selected) ImGui::SetItemDefaultFocus();
    }
    ImGui::EndCombo();
  }
}

void provenance(const ViewerState& s) {
  const auto& attrs = s.file->attributes();
  ImGui::TextWrapped("%s", s.file->h5_path().c_str());
  for (const char* key : {"dump", "git_commit", "device"}) {
    auto it = attrs.find(key);
    if (it == attrs.end()) continue;
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
    ImGui::TextWrapped("%s: %s", key, it->second.c_str());
    ImGui::PopStyleColor();
  }
  ImGui::TextDisabled("%zu configurations%s", s.file->configs().size(),
                      s.file->has_summary() ? ", summary.csv" : ", no summary.csv");
}

void value_row(const char* name, double v, const char* fmt = "%.4f") {
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(0);
  ImGui::TextWrapped("%s", name);
  ImGui::TableSetColumnIndex(1);
  if (std::isnan(v)) ImGui::TextDisabled("n/a");
  else ImGui::Text(fmt, v);
}

// The configuration's numbers: sizes, then the catalogue's headline columns.
void summary_numbers(const analysis::PositionView& v) {
  const analysis::ResultArrays& a = v.router;
  if (!ImGui::BeginTable("##summary", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) return;
  ImGui::TableSetupColumn("name", ImGuiTableColumnFlags_WidthStretch, 1.7f);
  ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  value_row("n_tokens", static_cast<double>(a.n_tokens), "%.0f");
  value_row("n_blocks", static_cast<double>(a.n_blocks), "%.0f");
  const auto& n_choice = analysis::summary_column(analysis::SummaryColumn::n_choice);
  value_row(n_choice.label, a.summary_value(n_choice.name), n_choice.format);
  for (const auto& c : analysis::summary_columns())
    if (c.headline) value_row(c.label, a.summary_value(c.name), c.format);
  if (analysis::router_is_variable_budget(a.config.router)) {  // the realised budget, below k
    const auto& sel = analysis::summary_column(analysis::SummaryColumn::selected_mean);
    value_row(sel.label, a.summary_value(sel.name), sel.format);
  }
  ImGui::EndTable();
}

void legend_item(ImU32 color, const char* text) {
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const float sz = ImGui::GetTextLineHeight();
  ImGui::GetWindowDrawList()->AddRectFilled(p, ImVec2(p.x + sz, p.y + sz), color);
  ImGui::Dummy(ImVec2(sz, sz));
  ImGui::SameLine();
  ImGui::TextWrapped("%s", text);  // long entries wrap inside the navigator
}

ImU32 pack(analysis::Rgba8 c) { return palette::rgba(c.r, c.g, c.b, c.a); }
analysis::Rgba8 unpack(ImU32 c) {
  return {static_cast<uint8_t>(c & 0xFF), static_cast<uint8_t>((c >> 8) & 0xFF), static_cast<uint8_t>((c >> 16) & 0xFF),
          static_cast<uint8_t>((c >> 24) & 0xFF)};
}

// How a cell of the level drawn reads (analysis::CellColouring): its size, and for the
// density encodings a ramp of class `c` (analysis::density_intensity over the causal tint)
// from one entry to the most in a cell of this level; `entries` names the class's entries.
void cell_legend(const ViewerState& s, analysis::TileChannel c, const char* entries) {
  const int64_t q = int64_t{1} << s.mask.level_x, nb = int64_t{1} << s.mask.level_y;
  const char* how = "";
  switch (s.mask.cells) {
    case analysis::CellColouring::density:
      how = "each class it holds gets quadrants, as bright as its count (log scale)";
      break;
    case analysis::CellColouring::presence: how = "each class it holds at full colour, however few entries"; break;
    case analysis::CellColouring::dominant: how = "only the class with most entries, as bright as its count"; break;
  }
  ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
  if (q == 1 && nb == 1) ImGui::TextWrapped("cells: one query x one block (exact)");
  else ImGui::TextWrapped("cells (%s): %lld queries x %lld blocks; %s", analysis::cell_colouring_name(s.mask.cells),
                          static_cast<long long>(q), static_cast<long long>(nb), how);
  ImGui::PopStyleColor();
  const uint32_t top = s.mask.level_top[static_cast<size_t>(c)];
  if (s.mask.cells == analysis::CellColouring::presence || !s.mask.level_top_known || top <= 1) return;
  // The ramp: 1, top^(1/5), ..., top entries of the class in one cell.
  const ImU32 cls = c == analysis::TileChannel::miss ? palette::kMiss : palette::kSelected;
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const float sz = ImGui::GetTextLineHeight();
  ImGui::TextUnformatted("1");
  ImGui::SameLine();
  const ImVec2 p = ImGui::GetCursorScreenPos();
  constexpr int kSteps = 6;
  for (int i = 0; i < kSteps; ++i) {
    const double n = std::pow(static_cast<double>(top), static_cast<double>(i) / (kSteps - 1));
    const float f = analysis::density_intensity(static_cast<uint32_t>(std::lround(n)), top);
    const ImU32 col = pack(analysis::mix(unpack(palette::kCausal), unpack(cls), f));
    const float x = p.x + static_cast<float>(i) * sz * 1.2f;
    dl->AddRectFilled(ImVec2(x, p.y), ImVec2(x + sz, p.y + sz), col);
  }
  ImGui::Dummy(ImVec2(kSteps * sz * 1.2f, sz));
  ImGui::SameLine();
  ImGui::TextWrapped("%u %s in a cell", top, entries);
  ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
  ImGui::TextWrapped("one entry is dim but never hidden; the most in any cell at this zoom is full colour "
                     "(each class on its own scale)");
  ImGui::PopStyleColor();
}

void legend(const ViewerState& s, const analysis::PositionView& v) {
  const analysis::MaskComparison& m = v.mask;
  char buf[128];
  legend_item(palette::kCurrent, "current block (always attended)");
  const CompareData* c = s.compare.on ? s.compared.get() : nullptr;
  if (c && s.compare.difference && c->pair) {
    const analysis::MaskComparison& p = *c->pair;
    std::snprintf(buf, sizeof buf, "both (%lld)", static_cast<long long>(p.total_hit));
    legend_item(palette::kHit, buf);
    std::snprintf(buf, sizeof buf, "only shown (%lld)", static_cast<long long>(p.total_false));
    legend_item(palette::kFalsePick, buf);
    std::snprintf(buf, sizeof buf, "only compared (%lld)", static_cast<long long>(p.total_miss));
    legend_item(palette::kMiss, buf);
  } else if (m.with_oracle && s.mask.compare_oracle) {
    std::snprintf(buf, sizeof buf, "hit: router and oracle (%lld)", static_cast<long long>(m.total_hit));
    legend_item(palette::kHit, buf);
    std::snprintf(buf, sizeof buf, "false pick: router only (%lld)", static_cast<long long>(m.total_false));
    legend_item(palette::kFalsePick, buf);
    std::snprintf(buf, sizeof buf, "miss: oracle only (%lld)", static_cast<long long>(m.total_miss));
    legend_item(palette::kMiss, buf);
  } else {
    legend_item(palette::kSelected, v.router.config.router == analysis::RouterKind::oracle ? "selected by the oracle"
                                                                                         : "selected by the router");
  }
  // Side by side, a compared mask without oracle classes (the oracle itself, or no oracle
  // analysed) shows its picks in the plain selection colour.
  const bool pair_shown = c && s.compare.difference && c->pair;
  if (c && !pair_shown && c->b->view.has_mask && !(c->b->view.mask.with_oracle && s.mask.compare_oracle) &&
      (m.with_oracle && s.mask.compare_oracle))
    legend_item(palette::kSelected, "selected, in the compared mask (no oracle classes there)");
  if (s.mask.shade_causal) legend_item(palette::kCausal, "causally available blocks");
  if (s.mask.planted && s.loaded.data && s.loaded.data->planted) legend_item(palette::kPlanted, "planted key's block (lighter)");
  if (pair_shown || (m.with_oracle && s.mask.compare_oracle)) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
    ImGui::TextWrapped("counts: entries over all queries (those without a choice, t < k B, included)");
    ImGui::PopStyleColor();
  }
  const bool classes = pair_shown || (m.with_oracle && s.mask.compare_oracle);
  cell_legend(s, classes ? analysis::TileChannel::miss : analysis::TileChannel::selected,
              pair_shown ? "only-compared entries" : classes ? "misses" : "picks");
}

// The compared configuration: on / off, its B x k and router (same layer and head), and how
// the mask shows it.
void compare_controls(ViewerState* s) {
  if (!ImGui::Checkbox("compare with", &s->compare.on)) {
    if (!s->compare.on) return;
  } else if (s->compare.on) {
    s->compare.key = s->selection;
    // Start from another router of the slot, else another slot.
    for (const auto r : s->nav.routers)
      if (r != s->selection.router) {
        s->compare.key.router = r;
        break;
      }
    if (s->compare.key == s->selection)
      for (const auto& slot : s->nav.slots)
        if (slot != std::pair<int64_t, int>{s->selection.block_size, s->selection.top_k}) {
          s->compare.key.block_size = slot.first;
          s->compare.key.top_k = slot.second;
          break;
        }
  }
  if (!s->compare.on) return;
  snap_compare(s);
  ImGui::PushItemWidth(-90);
  std::pair<int64_t, int> slot{s->compare.key.block_size, s->compare.key.top_k};
  combo("B x k##cmp", s->compare_nav.slots, &slot, [](const std::pair<int64_t, int>& x) {
    return "B=" + std::to_string(x.first) + "  k=" + std::to_string(x.second);
  });
  s->compare.key.block_size = slot.first;
  s->compare.key.top_k = slot.second;
  combo("router##cmp", s->compare_nav.routers, &s->compare.key.router,
        [](analysis::RouterKind x) { return std::string(analysis::router_name(x)); });
  ImGui::PopItemWidth();
  int mode = s->compare.difference ? 1 : 0;
  ImGui::RadioButton("side by side", &mode, 0);
  ImGui::SameLine();
  ImGui::RadioButton("difference", &mode, 1);
  s->compare.difference = mode == 1;
  if (s->compare_loading) ImGui::TextDisabled("loading the compared configuration...");
  if (!s->compare_error.empty()) ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", s->compare_error.c_str());
}

// Which panels the right-hand column shows.
void panel_toggles(ViewerState* s) {
  if (!ImGui::CollapsingHeader("Panels")) return;
  for (int i = 0; i < kPanelCount; ++i) {
    const Panel p = static_cast<Panel>(i);
    auto& shown = s->layout.shown;
    bool on = std::find(shown.begin(), shown.end(), p) != shown.end();
    if (ImGui::Checkbox(panel_name(p), &on)) {
      if (on) shown.push_back(p);
      else shown.erase(std::remove(shown.begin(), shown.end(), p), shown.end());
    }
    if (i % 3 != 2 && i + 1 < kPanelCount) ImGui::SameLine();
  }
}

void block_list(const char* label, const analysis::ResultArrays& a, int64_t t) {
  std::string text;
  const int K = a.config.top_k;
  for (int i = 0; i < K; ++i) {
    const int32_t b = a.selected[static_cast<size_t>(t * K + i)];
    if (b >= 0) text += (text.empty() ? "" : ", ") + std::to_string(b);
  }
  ImGui::TextWrapped("%s {%s}", label, text.c_str());
}

void pinned_query(ViewerState* s, const analysis::PositionView& v) {
  const int64_t t = s->pinned_t;
  if (t < 0 || t >= v.router.n_tokens) {
    ImGui::TextDisabled("click the mask or a plot to pin a query");
    return;
  }
  ImGui::Text("t = %lld, current block %lld", static_cast<long long>(t),
              static_cast<long long>(t / v.router.config.block_size));
  ImGui::SameLine();
  if (ImGui::SmallButton("unpin")) s->pinned_t = -1;
  if (ImGui::SmallButton("<")) s->pinned_t = std::max<int64_t>(0, t - 1);
  ImGui::SameLine();
  if (ImGui::SmallButton(">")) s->pinned_t = std::min<int64_t>(v.router.n_tokens - 1, t + 1);
  ImGui::SameLine();
  if (ImGui::SmallButton("centre view")) s->axis.t_begin = static_cast<double>(t) - 0.5 * s->axis.t_per_px * s->axis.plot_width;
  const char* oracle_name = analysis::router_name(analysis::RouterKind::oracle);
  if (v.router.has_selection()) block_list(analysis::router_name(v.router.config.router), v.router, t);
  if (v.has_oracle && v.oracle.has_selection()) block_list(oracle_name, v.oracle, t);
  if (v.router.metrics.empty()) {
    ImGui::TextDisabled("no per-position metrics stored for this configuration");
    return;
  }
  if (!ImGui::BeginTable("##pinned", v.has_oracle ? 3 : 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) return;
  ImGui::TableSetupColumn("metric");
  ImGui::TableSetupColumn(analysis::router_name(v.router.config.router));
  if (v.has_oracle) ImGui::TableSetupColumn(oracle_name);
  ImGui::TableHeadersRow();
  for (const auto& m : analysis::position_metrics()) {
    const std::string name = m.name;
    const std::vector<float>* r = v.router.metric(name);
    if (!r) continue;
    ImGui::TableNextRow();
    ImGui::TableSetColumnIndex(0);
    ImGui::TextUnformatted(m.label);
    ImGui::TableSetColumnIndex(1);
    ImGui::Text("%.4f", (*r)[static_cast<size_t>(t)]);
    if (v.has_oracle) {
      const std::vector<float>* o = v.oracle.metric(name);
      ImGui::TableSetColumnIndex(2);
      if (o && !o->empty()) ImGui::Text("%.4f", (*o)[static_cast<size_t>(t)]);
    }
  }
  ImGui::EndTable();
}

}  // namespace

void draw_navigator(ViewerState* s, const PanelRect& r) {
  if (!begin_panel("Navigator", r)) {
    ImGui::End();
    return;
  }
  provenance(*s);
  ImGui::Separator();
  analysis::ConfigKey& sel = s->selection;
  ImGui::PushItemWidth(-90);
  combo("layer", s->nav.layers, &sel.layer, [](int l) { return std::to_string(l); });
  const std::vector<int64_t>& with_arrays = s->nav.heads_with_arrays;
  combo("head", s->nav.heads, &sel.head, [&with_arrays](int64_t h) {
    const bool kept = std::find(with_arrays.begin(), with_arrays.end(), h) != with_arrays.end();
    return std::to_string(h) + (kept ? "" : "  (curves only)");
  });
  // Within a head with arrays, the slots and routers left out (e.g. past the default kept
  // set's budget) are marked too.
  const bool head_kept = std::find(with_arrays.begin(), with_arrays.end(), sel.head) != with_arrays.end();
  const auto& slots_kept = s->nav.slots_with_arrays;
  std::pair<int64_t, int> slot{sel.block_size, sel.top_k};
  combo("B x k", s->nav.slots, &slot, [&](const std::pair<int64_t, int>& x) {
    const bool kept = !head_kept || std::find(slots_kept.begin(), slots_kept.end(), x) != slots_kept.end();
    return "B=" + std::to_string(x.first) + "  k=" + std::to_string(x.second) + (kept ? "" : "  (curves only)");
  });
  sel.block_size = slot.first;
  sel.top_k = slot.second;
  const auto& routers_kept = s->nav.routers_with_arrays;
  const bool slot_kept = std::find(slots_kept.begin(), slots_kept.end(), slot) != slots_kept.end();
  combo("router", s->nav.routers, &sel.router, [&](analysis::RouterKind x) {
    const bool kept = !slot_kept || std::find(routers_kept.begin(), routers_kept.end(), x) != routers_kept.end();
    return std::string(analysis::router_name(x)) + (kept ? "" : "  (curves only)");
  });
  ImGui::PopItemWidth();
  compare_controls(s);
  panel_toggles(s);
  if (viewer_busy(*s)) ImGui::TextDisabled("loading...");
  if (!s->load_error.empty()) ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", s->load_error.c_str());

  if (s->loaded.view) {
    const analysis::PositionView& v = *s->loaded.view;
    ImGui::Separator();
    ImGui::Text("layer %d head %lld  B=%lld k=%d  %s", v.router.config.layer, static_cast<long long>(v.router.config.head),
                static_cast<long long>(v.router.config.block_size), v.router.config.top_k,
                analysis::router_name(v.router.config.router));
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
    ImGui::TextWrapped("means over queries with a choice (summary.csv)");
    ImGui::PopStyleColor();
    summary_numbers(v);
    // A pinned query's blocks and metrics right below the numbers (above the fold).
    ImGui::Separator();
    ImGui::TextUnformatted("Pinned query");
    pinned_query(s, v);
    if (!v.missing.empty()) {
      ImGui::Separator();
      ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.8f, 0.4f, 1.0f));
      ImGui::TextWrapped("%s", v.missing.c_str());
      ImGui::PopStyleColor();
    }
    ImGui::Separator();
    if (v.has_mask) legend(*s, v);
  }
  ImGui::End();
}

}  // namespace moba::gui
