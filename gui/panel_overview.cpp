// The overview grids, from summary.csv's per-head rows: layer x head at the shown (B, k,
// router), and B x k of the shown head and router, each cell coloured by one summary column
// (the catalogue's label and format). Click a cell to show that head / configuration;
// right-click a B x k cell to compare with it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "analysis/summary.h"
#include "gui/panels.h"

namespace moba::gui {

namespace {

using analysis::KeyColumn;

struct Grid {
  std::vector<int64_t> rows, cols;      // row / column labels (ascending)
  struct Cell {
    double value = NAN;
    double n_choice = NAN;  // where summary.csv has the column
  };
  std::map<std::pair<int64_t, int64_t>, Cell> cells;
  double lo = INFINITY, hi = -INFINITY;
};

const analysis::SummaryColumnInfo* metric_info(const std::string& name) {
  analysis::SummaryColumn c;
  return analysis::parse_summary_column(name, &c) ? &analysis::summary_column(c) : nullptr;
}

// The metric combo (columns of summary.csv the catalogue knows, in its order).
void metric_combo(ViewerState* s) {
  const analysis::SummaryColumnInfo* cur = metric_info(s->overview.metric);
  ImGui::SetNextItemWidth(260);
  if (ImGui::BeginCombo("colour by", cur ? cur->label : s->overview.metric.c_str())) {
    for (const auto& c : analysis::summary_columns()) {
      if (s->file->summary().column(c.name) < 0) continue;
      const bool sel = s->overview.metric == c.name;
      const std::string item = std::string(c.label) + "  (" + c.name + ")";
      if (ImGui::Selectable(item.c_str(), sel)) s->overview.metric = c.name;
    }
    ImGui::EndCombo();
  }
}

// Rows of summary.csv with scope "head" passing `keep`, as (row key, column key) -> value.
template <typename Keep, typename RowOf, typename ColOf>
Grid build_grid(const analysis::SummaryTable& t, const std::string& metric, Keep keep, RowOf row_of, ColOf col_of) {
  Grid g;
  const int c_metric = t.column(metric), c_scope = t.column(KeyColumn::scope);
  const int c_choice = t.column(analysis::summary_column(analysis::SummaryColumn::n_choice).name);
  if (c_metric < 0) return g;
  for (const auto& r : t.rows) {
    if (c_scope >= 0 && r.text[c_scope] != analysis::scope_name(analysis::Scope::head)) continue;
    if (!keep(r)) continue;
    const int64_t a = row_of(r), b = col_of(r);
    const double v = r.value[c_metric];
    g.cells[{a, b}] = {v, c_choice >= 0 ? r.value[c_choice] : NAN};
    if (std::find(g.rows.begin(), g.rows.end(), a) == g.rows.end()) g.rows.push_back(a);
    if (std::find(g.cols.begin(), g.cols.end(), b) == g.cols.end()) g.cols.push_back(b);
    if (std::isfinite(v)) g.lo = std::min(g.lo, v), g.hi = std::max(g.hi, v);
  }
  std::sort(g.rows.begin(), g.rows.end());
  std::sort(g.cols.begin(), g.cols.end());
  return g;
}

// Draws the grid into the remaining region; returns the clicked cell (button 0 or 1) or false.
bool draw_grid(const Grid& g, const char* row_name, const char* col_name, const std::string& metric,
               std::pair<int64_t, int64_t> selected, std::pair<int64_t, int64_t> marked, std::pair<int64_t, int64_t>* clicked,
               int* button, const char* id) {
  const analysis::SummaryColumnInfo* info = metric_info(metric);
  const char* fmt = info ? info->format : "%.4g";
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  if (g.rows.empty() || g.cols.empty()) {
    ImGui::TextDisabled("no per-head rows in summary.csv for this choice");
    return false;
  }
  const float left = 56, top = 20, legend_h = 22;
  const float cw = std::max(4.0f, (avail.x - left - 8) / static_cast<float>(g.cols.size()));
  const float ch = std::max(4.0f, (avail.y - top - legend_h - 4) / static_cast<float>(g.rows.size()));
  const float x0 = origin.x + left, y0 = origin.y + top;
  ImGui::SetCursorScreenPos(ImVec2(x0, y0));
  ImGui::InvisibleButton(id, ImVec2(cw * static_cast<float>(g.cols.size()), ch * static_cast<float>(g.rows.size())),
                         ImGuiButtonFlags_MouseButtonLeft | ImGuiButtonFlags_MouseButtonRight);
  const bool hovered = ImGui::IsItemHovered();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  char buf[64];
  // Values that print the same at the column's digits (four heads within 1e-4 of each other)
  // get one colour: a colour scale stretched over differences no number shows misleads.
  char lo_text[64] = "", hi_text[64] = "";
  if (g.lo <= g.hi) std::snprintf(lo_text, sizeof lo_text, fmt, g.lo), std::snprintf(hi_text, sizeof hi_text, fmt, g.hi);
  const bool flat = std::strcmp(lo_text, hi_text) == 0;
  const double span = g.hi > g.lo && !flat ? g.hi - g.lo : 1.0;
  const auto shade = [&](double v) { return std::isfinite(v) && flat ? 0.5 : (v - g.lo) / span; };
  const ImVec2 mp = ImGui::GetIO().MousePos;
  int hr = -1, hc = -1;
  if (hovered) {
    hc = static_cast<int>((mp.x - x0) / cw);
    hr = static_cast<int>((mp.y - y0) / ch);
    if (hc < 0 || hc >= static_cast<int>(g.cols.size()) || hr < 0 || hr >= static_cast<int>(g.rows.size())) hr = hc = -1;
  }
  bool any_missing = false;
  for (size_t i = 0; i < g.rows.size(); ++i) {
    for (size_t j = 0; j < g.cols.size(); ++j) {
      const ImVec2 p0(x0 + static_cast<float>(j) * cw, y0 + static_cast<float>(i) * ch);
      const ImVec2 p1(p0.x + cw - 1, p0.y + ch - 1);
      auto it = g.cells.find({g.rows[i], g.cols[j]});
      const double v = it == g.cells.end() ? NAN : it->second.value;
      if (it == g.cells.end()) {  // not analysed: no summary row (n/a is a row without a value)
        any_missing = true;
        dl->AddRectFilled(p0, p1, palette::kBackground);
        dl->AddLine(p0, p1, palette::kZeroLine);
        dl->AddLine(ImVec2(p0.x, p1.y), ImVec2(p1.x, p0.y), palette::kZeroLine);
      } else {
        dl->AddRectFilled(p0, p1, heat_color(static_cast<float>(shade(v))));
      }
      if (std::isfinite(v) && cw > 44 && ch > 15) {
        std::snprintf(buf, sizeof buf, fmt, v);
        const ImVec2 ts = ImGui::CalcTextSize(buf);
        const bool dark = shade(v) > 0.6;
        dl->AddText(ImVec2(p0.x + (cw - ts.x) * 0.5f, p0.y + (ch - ts.y) * 0.5f),
                    dark ? palette::rgba(20, 20, 20) : palette::rgba(240, 240, 240), buf);
      }
      const std::pair<int64_t, int64_t> key{g.rows[i], g.cols[j]};
      if (key == selected) dl->AddRect(p0, p1, palette::rgba(255, 255, 255), 0, 0, 2.5f);
      else if (key == marked) dl->AddRect(p0, p1, palette::kCompareLine, 0, 0, 2.5f);
    }
  }
  // Labels: rows on the left, columns on top (thinned to fit).
  const int row_step = std::max(1, static_cast<int>(std::ceil(ImGui::GetTextLineHeight() / ch)));
  for (size_t i = 0; i < g.rows.size(); i += static_cast<size_t>(row_step)) {
    std::snprintf(buf, sizeof buf, "%s %lld", row_name, static_cast<long long>(g.rows[i]));
    dl->AddText(ImVec2(origin.x, y0 + static_cast<float>(i) * ch + (ch - ImGui::GetTextLineHeight()) * 0.5f), palette::kAxisText, buf);
  }
  const int col_step = std::max(1, static_cast<int>(std::ceil(64.0f / cw)));
  for (size_t j = 0; j < g.cols.size(); j += static_cast<size_t>(col_step)) {
    std::snprintf(buf, sizeof buf, "%s %lld", col_name, static_cast<long long>(g.cols[j]));
    dl->AddText(ImVec2(x0 + static_cast<float>(j) * cw + 2, origin.y + 2), palette::kAxisText, buf);
  }
  // Colour legend (a grid with no finite value says so in its place).
  const float ly = y0 + ch * static_cast<float>(g.rows.size()) + 6, lw = std::min(240.0f, avail.x - left - 140);
  if (g.lo <= g.hi && flat) {  // one colour: the value every cell shows
    dl->AddRectFilled(ImVec2(x0, ly), ImVec2(x0 + 24, ly + 12), heat_color(0.5f));
    const std::string every = std::string("every cell ") + lo_text;
    dl->AddText(ImVec2(x0 + 30, ly - 2), palette::kAxisText, every.c_str());
  } else if (g.lo <= g.hi) {
    for (int i = 0; i < 48; ++i)
      dl->AddRectFilled(ImVec2(x0 + lw * static_cast<float>(i) / 48, ly),
                        ImVec2(x0 + lw * static_cast<float>(i + 1) / 48, ly + 12), heat_color(static_cast<float>(i) / 47.0f));
    dl->AddText(ImVec2(x0 - 4 - ImGui::CalcTextSize(lo_text).x, ly - 2), palette::kAxisText, lo_text);
    dl->AddText(ImVec2(x0 + lw + 4, ly - 2), palette::kAxisText, hi_text);
  } else {
    dl->AddText(ImVec2(x0, ly - 2), palette::kAxisText, "no cell has a value");
  }
  const std::string title = info ? std::string(info->label) : metric;
  dl->AddText(ImVec2(x0 + lw + 70, ly - 2), palette::kAxisText, title.c_str());
  // The colour of cells without a value.
  const float nx = x0 + lw + 80 + ImGui::CalcTextSize(title.c_str()).x;
  dl->AddRectFilled(ImVec2(nx, ly), ImVec2(nx + 12, ly + 12), heat_color(NAN));
  dl->AddText(ImVec2(nx + 16, ly - 2), palette::kAxisText, "n/a");
  if (any_missing) {  // and of cells not analysed
    const float mx = nx + 28 + ImGui::CalcTextSize("n/a").x;
    dl->AddRectFilled(ImVec2(mx, ly), ImVec2(mx + 12, ly + 12), palette::kBackground);
    dl->AddLine(ImVec2(mx, ly), ImVec2(mx + 12, ly + 12), palette::kZeroLine);
    dl->AddLine(ImVec2(mx, ly + 12), ImVec2(mx + 12, ly), palette::kZeroLine);
    dl->AddText(ImVec2(mx + 16, ly - 2), palette::kAxisText, "not analysed");
  }
  ImGui::SetCursorScreenPos(ImVec2(origin.x, ly + 16));
  ImGui::Dummy(ImVec2(1, 1));

  if (hr >= 0) {
    const std::pair<int64_t, int64_t> cell{g.rows[static_cast<size_t>(hr)], g.cols[static_cast<size_t>(hc)]};
    auto it = g.cells.find(cell);
    ImGui::BeginTooltip();
    ImGui::Text("%s %lld, %s %lld", row_name, static_cast<long long>(cell.first), col_name,
                static_cast<long long>(cell.second));
    if (it != g.cells.end() && std::isfinite(it->second.value)) {
      std::snprintf(buf, sizeof buf, fmt, it->second.value);
      ImGui::Text("%s = %s", title.c_str(), buf);
    } else {
      // Why this cell has no value: no summary row, no query with a choice, or the metric's own rule.
      const char* why = it == g.cells.end() ? "summary.csv has no row for this cell (not analysed in this run)"
                        : it->second.n_choice == 0
                            ? "no query has a choice here (k - 1 covers every routable block: full attention)"
                            : "not defined for this router, or not computed in this run";
      ImGui::TextDisabled("%s: n/a, %s", title.c_str(), why);
    }
    ImGui::EndTooltip();
    for (int b = 0; b < 2; ++b)
      if (ImGui::IsMouseReleased(b)) {
        *clicked = cell;
        *button = b;
        return true;
      }
  }
  return false;
}

// The key columns of summary.csv; false (said in the panel, which is ended) when one is missing.
bool key_columns(const analysis::SummaryTable& t, int* layer, int* head, int* block_size, int* top_k, int* router) {
  *layer = t.column(KeyColumn::layer), *head = t.column(KeyColumn::head), *block_size = t.column(KeyColumn::block_size),
  *top_k = t.column(KeyColumn::top_k), *router = t.column(KeyColumn::router);
  if (*layer >= 0 && *head >= 0 && *block_size >= 0 && *top_k >= 0 && *router >= 0) return true;
  ImGui::TextDisabled("summary.csv lacks the key columns");
  ImGui::End();
  return false;
}

}  // namespace

void draw_overview_panel(ViewerState* s, const PanelRect& r) {
  if (!begin_summary_panel("Overview: layer x head", r, *s, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse)) return;
  metric_combo(s);
  ImGui::SameLine();
  const analysis::ConfigKey sel = s->selection;
  ImGui::TextDisabled("at B=%lld k=%d %s; click a cell to open that head", static_cast<long long>(sel.block_size), sel.top_k,
                      analysis::router_name(sel.router));
  const analysis::SummaryTable& t = s->file->summary();
  int c_layer, c_head, c_b, c_k, c_router;
  if (!key_columns(t, &c_layer, &c_head, &c_b, &c_k, &c_router)) return;
  const Grid g = build_grid(
      t, s->overview.metric,
      [&](const analysis::SummaryTable::Row& row) {
        return row.value[c_b] == static_cast<double>(sel.block_size) && row.value[c_k] == sel.top_k &&
               row.text[c_router] == analysis::router_name(sel.router);
      },
      [&](const analysis::SummaryTable::Row& row) { return static_cast<int64_t>(row.value[c_layer]); },
      [&](const analysis::SummaryTable::Row& row) { return static_cast<int64_t>(row.value[c_head]); });
  std::pair<int64_t, int64_t> clicked;
  int button = 0;
  if (draw_grid(g, "layer", "head", s->overview.metric, {sel.layer, sel.head}, {-1, -1}, &clicked, &button, "##overview") &&
      button == 0) {
    s->selection.layer = static_cast<int>(clicked.first);
    s->selection.head = clicked.second;
  }
  ImGui::End();
}

void draw_configs_panel(ViewerState* s, const PanelRect& r) {
  if (!begin_summary_panel("Configurations: B x k", r, *s, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse)) return;
  metric_combo(s);
  ImGui::SameLine();
  const analysis::ConfigKey sel = s->selection;
  ImGui::TextDisabled("layer %d head %lld %s; click: show, right-click: compare", sel.layer, static_cast<long long>(sel.head),
                      analysis::router_name(sel.router));
  const analysis::SummaryTable& t = s->file->summary();
  int c_layer, c_head, c_b, c_k, c_router;
  if (!key_columns(t, &c_layer, &c_head, &c_b, &c_k, &c_router)) return;
  const Grid g = build_grid(
      t, s->overview.metric,
      [&](const analysis::SummaryTable::Row& row) {
        return row.value[c_layer] == sel.layer && row.value[c_head] == static_cast<double>(sel.head) &&
               row.text[c_router] == analysis::router_name(sel.router);
      },
      [&](const analysis::SummaryTable::Row& row) { return static_cast<int64_t>(row.value[c_b]); },
      [&](const analysis::SummaryTable::Row& row) { return static_cast<int64_t>(row.value[c_k]); });
  std::pair<int64_t, int64_t> clicked;
  int button = 0;
  const std::pair<int64_t, int64_t> marked =
      s->compare.on ? std::pair<int64_t, int64_t>{s->compare.key.block_size, s->compare.key.top_k} : std::pair<int64_t, int64_t>{-1, -1};
  if (draw_grid(g, "B", "k", s->overview.metric, {sel.block_size, sel.top_k}, marked, &clicked, &button, "##configs")) {
    if (button == 0) {
      s->selection.block_size = clicked.first;
      s->selection.top_k = static_cast<int>(clicked.second);
    } else {
      s->compare.on = true;
      s->compare.key = s->selection;
      s->compare.key.block_size = clicked.first;
      s->compare.key.top_k = static_cast<int>(clicked.second);
    }
  }
  ImGui::End();
}

}  // namespace moba::gui
