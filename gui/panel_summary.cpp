// The summary table: DIR/summary.csv's rows (layer x head x router x B x k) with the key
// columns of DESIGN.md §7, sortable by any column, filtered to the shown head or slot on
// request. Clicking a row shows that configuration.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gui/panels.h"

namespace moba::gui {

namespace {

using analysis::KeyColumn;

bool is_key_column(const std::string& name) {
  for (int c = 0; c < static_cast<int>(KeyColumn::count_); ++c)
    if (name == analysis::key_column_name(static_cast<KeyColumn>(c))) return true;
  return false;
}

const char* header_of(const std::string& name) {
  if (name == analysis::key_column_name(KeyColumn::block_size)) return "B";
  if (name == analysis::key_column_name(KeyColumn::top_k)) return "k";
  return name.c_str();
}

}  // namespace

void draw_summary_panel(ViewerState* s, const PanelRect& r) {
  if (!begin_summary_panel("Summary (summary.csv)", r, *s)) return;
  SummaryViewState& v = s->summary;
  const analysis::SummaryTable& t = s->file->summary();
  if (ImGui::Checkbox("this layer & head only", &v.only_selected_head)) v.order_dirty = true;
  ImGui::SameLine();
  if (ImGui::Checkbox("this B x k only", &v.only_selected_slot)) v.order_dirty = true;
  ImGui::SameLine();
  ImGui::TextDisabled("%zu of %zu rows; means over queries with a choice; click a row to show it", v.order.size(),
                      t.rows.size());

  const int n_cols = static_cast<int>(v.columns.size());
  const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                ImGuiTableFlags_ScrollY | ImGuiTableFlags_ScrollX | ImGuiTableFlags_SizingFixedFit |
                                ImGuiTableFlags_Resizable;
  if (n_cols == 0 || !ImGui::BeginTable("##summary_table", n_cols, flags)) {
    ImGui::End();
    return;
  }
  ImGui::TableSetupScrollFreeze(0, 1);
  for (int c = 0; c < n_cols; ++c) {
    const std::string& name = t.columns[static_cast<size_t>(v.columns[static_cast<size_t>(c)])];
    ImGui::TableSetupColumn(header_of(name), is_key_column(name) ? 0 : ImGuiTableColumnFlags_PreferSortDescending);
  }
  ImGui::TableHeadersRow();
  if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs()) {
    if (specs->SpecsDirty) {
      if (specs->SpecsCount > 0) {
        v.sort_column = specs->Specs[0].ColumnIndex;
        v.sort_descending = specs->Specs[0].SortDirection == ImGuiSortDirection_Descending;
      }
      v.order_dirty = true;  // re-sorted in update_viewer() next frame
      specs->SpecsDirty = false;
    }
  }

  if (v.scroll_to >= 0) {
    // Keep two rows of context above the shown configuration.
    const float row_h = ImGui::GetTextLineHeight() + 2.0f * ImGui::GetStyle().CellPadding.y;
    ImGui::SetScrollY(std::max(0.0f, static_cast<float>(v.scroll_to - 2) * row_h));
    v.scroll_to = -1;
  }
  const int c_router = t.column(KeyColumn::router);
  const int c_layer = t.column(KeyColumn::layer), c_head = t.column(KeyColumn::head),
            c_b = t.column(KeyColumn::block_size), c_k = t.column(KeyColumn::top_k);
  ImGuiListClipper clipper;
  clipper.Begin(static_cast<int>(v.order.size()));
  int clicked_row = -1;
  while (clipper.Step()) {
    for (int i = clipper.DisplayStart; i < clipper.DisplayEnd; ++i) {
      const int row_index = v.order[static_cast<size_t>(i)];
      const auto& row = t.rows[static_cast<size_t>(row_index)];
      const bool is_shown = c_layer >= 0 && c_head >= 0 && c_b >= 0 && c_k >= 0 && c_router >= 0 &&
                            row.value[c_layer] == s->selection.layer &&
                            row.value[c_head] == static_cast<double>(s->selection.head) &&
                            row.value[c_b] == static_cast<double>(s->selection.block_size) &&
                            row.value[c_k] == s->selection.top_k && row.text[c_router] == analysis::router_name(s->selection.router);
      ImGui::TableNextRow();
      for (int c = 0; c < n_cols; ++c) {
        ImGui::TableSetColumnIndex(c);
        const int col = v.columns[static_cast<size_t>(c)];
        const std::string& text = row.text[static_cast<size_t>(col)];
        const double x = row.value[static_cast<size_t>(col)];
        // summary.csv's own text (6 significant digits): rounding it again to fewer digits
        // could disagree with the navigator, which rounds analysis.h5's full-precision value.
        char buf[48];
        const bool key = is_key_column(t.columns[static_cast<size_t>(col)]);
        std::snprintf(buf, sizeof buf, "%s", text.c_str());
        if (c == 0) {
          ImGui::PushID(row_index);
          if (ImGui::Selectable(buf, is_shown, ImGuiSelectableFlags_SpanAllColumns)) clicked_row = row_index;
          ImGui::PopID();
        } else if (!key && !std::isfinite(x)) {
          ImGui::TextDisabled("%s", buf);
        } else {
          ImGui::TextUnformatted(buf);
        }
      }
    }
  }
  ImGui::EndTable();
  if (clicked_row >= 0) select_summary_row(s, clicked_row);
  ImGui::End();
}

}  // namespace moba::gui
