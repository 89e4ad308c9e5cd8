// The block-selection mask: query position t (x) x block index (y, block 0 at the bottom).
// Each selected block of query t is a cell coloured by analysis::MaskCell — the router's
// picks, or against the oracle of the same (layer, head, B, k): hits, false picks, misses;
// the current block apart. Wheel zooms, drag pans, click pins a query, hover shows it.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gui/panels.h"

namespace moba::gui {

namespace {

constexpr float kBottomMargin = 18.0f;

float metric_at(const analysis::ResultArrays& a, const char* name, int64_t t) {
  const std::vector<float>* m = a.metric(name);
  return m && t >= 0 && t < static_cast<int64_t>(m->size()) ? (*m)[static_cast<size_t>(t)] : NAN;
}

void draw_toolbar(ViewerState* s, const analysis::PositionView& v, int64_t n_tokens) {
  if (v.has_oracle) {
    ImGui::Checkbox("compare with oracle", &s->mask.compare_oracle);
  } else {
    ImGui::TextDisabled("(no oracle for this configuration)");
  }
  ImGui::SameLine();
  ImGui::Checkbox("shade causal blocks", &s->mask.shade_causal);
  ImGui::SameLine();
  if (ImGui::Button("fit")) s->axis.t_per_px = 0;
  ImGui::SameLine();
  if (ImGui::Button("zoom +")) {
    const double mid = s->axis.t_begin + 0.5 * s->axis.t_per_px * s->axis.plot_width;
    s->axis.t_per_px *= 0.5;
    s->axis.t_begin = mid - 0.5 * s->axis.t_per_px * s->axis.plot_width;
  }
  ImGui::SameLine();
  if (ImGui::Button("zoom -")) {
    const double mid = s->axis.t_begin + 0.5 * s->axis.t_per_px * s->axis.plot_width;
    s->axis.t_per_px *= 2.0;
    s->axis.t_begin = mid - 0.5 * s->axis.t_per_px * s->axis.plot_width;
  }
  ImGui::SameLine();
  const double t_end = std::min<double>(static_cast<double>(n_tokens), s->axis.t_begin + s->axis.t_per_px * s->axis.plot_width);
  ImGui::Text("t in [%lld, %lld) of %lld  |  B=%lld k=%d, %lld blocks", static_cast<long long>(s->axis.t_begin),
              static_cast<long long>(std::ceil(t_end)), static_cast<long long>(n_tokens),
              static_cast<long long>(v.router.config.block_size), v.router.config.top_k,
              static_cast<long long>(v.router.n_blocks));
  ImGui::SameLine();
  ImGui::TextDisabled("  wheel: zoom   drag: pan   click: pin query");
}

void draw_tooltip(const analysis::PositionView& v, bool compare, int64_t t, int64_t block) {
  const analysis::MaskComparison& m = v.mask;
  const int64_t B = m.block_size;
  ImGui::BeginTooltip();
  ImGui::Text("query t = %lld   (current block %lld)", static_cast<long long>(t), static_cast<long long>(t / B));
  ImGui::Text("block %lld: keys [%lld, %lld)", static_cast<long long>(block), static_cast<long long>(block * B),
              static_cast<long long>(std::min(m.n_tokens, (block + 1) * B)));
  const int cell = m.cell_at(t, block);
  if (cell == 0) {
    ImGui::TextDisabled(block > t / B ? "in the future (not causal)" : "not selected");
  } else {
    const auto c = static_cast<analysis::MaskCell>(cell);
    const analysis::MaskCell shown = !compare && (c == analysis::MaskCell::hit || c == analysis::MaskCell::false_pick)
                                         ? analysis::MaskCell::selected
                                         : c;
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(palette::cell_color(static_cast<int>(shown))), "%s",
                       analysis::mask_cell_name(shown));
  }
  ImGui::Separator();
  ImGui::Text("coverage %.4f   kl %.4f", metric_at(v.router, "coverage", t), metric_at(v.router, "kl", t));
  if (v.has_oracle)
    ImGui::Text("oracle coverage %.4f   oracle kl %.4f", metric_at(v.oracle, "coverage", t),
                metric_at(v.oracle, "kl", t));
  ImGui::Text("block recall %.3f   output rel err %.4f", metric_at(v.router, "block_recall", t),
              metric_at(v.router, "output_rel_err", t));
  if (m.with_oracle)
    ImGui::Text("routed: %d hit, %d false, %d missed", m.n_hit[static_cast<size_t>(t)],
                m.n_false[static_cast<size_t>(t)], m.n_miss[static_cast<size_t>(t)]);
  ImGui::EndTooltip();
}

}  // namespace

void draw_mask_panel(ViewerState* s, const PanelRect& r) {
  const bool open = begin_panel("Block selection mask", r,
                                 ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  if (!open || !s->loaded.view) {
    if (open) ImGui::TextDisabled("%s", s->load_error.empty() ? "loading..." : s->load_error.c_str());
    ImGui::End();
    return;
  }
  const analysis::PositionView& v = *s->loaded.view;
  if (!v.has_mask) {
    // The selection was not kept (analysis/position_keep.h): say so, and how to get it.
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.8f, 0.4f, 1.0f));
    ImGui::TextWrapped("No selection stored: %s", v.missing.c_str());
    ImGui::PopStyleColor();
    ImGui::TextDisabled("The summary numbers and the position-bucket curves below are from analysis.h5.");
    ImGui::End();
    return;
  }
  const analysis::MaskComparison& m = v.mask;
  const int64_t T = m.n_tokens, NB = std::max<int64_t>(1, m.n_blocks), B = m.block_size;
  draw_toolbar(s, v, T);
  const bool compare = m.with_oracle && s->mask.compare_oracle;

  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float x0 = origin.x + kPlotLeftMargin, y0 = origin.y;
  const float w = std::max(10.0f, avail.x - kPlotLeftMargin - 4), h = std::max(10.0f, avail.y - kBottomMargin);
  const float x1 = x0 + w, y1 = y0 + h;
  ImGui::SetCursorScreenPos(ImVec2(x0, y0));
  ImGui::InvisibleButton("##mask", ImVec2(w, h));
  const bool hovered = ImGui::IsItemHovered();
  clamp_axis(&s->axis, T, w);
  const bool clicked = axis_mouse_input(&s->axis, T, x0, w, hovered);
  const PositionAxis& a = s->axis;
  const float bh = h / static_cast<float>(NB);
  s->mask.block_rows_px = bh;

  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->PushClipRect(ImVec2(x0, y0), ImVec2(x1, y1), true);
  dl->AddRectFilled(ImVec2(x0, y0), ImVec2(x1, y1), palette::kBackground);
  const auto y_of_block = [&](int64_t b) { return y1 - static_cast<float>(b) * bh; };  // bottom edge
  const int64_t t_lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(a.t_begin)));
  const int64_t t_hi = std::min<int64_t>(T, static_cast<int64_t>(std::ceil(t_of_x(a, x0, x1))) + 1);
  if (s->mask.shade_causal) {
    // One rectangle per current block c: positions [cB, (c+1)B), blocks 0..c.
    for (int64_t c = t_lo / B; c * B < t_hi; ++c)
      dl->AddRectFilled(ImVec2(x_of_t(a, x0, static_cast<double>(c * B)), y_of_block(c + 1)),
                        ImVec2(x_of_t(a, x0, static_cast<double>(std::min(T, (c + 1) * B))), y1), palette::kCausal);
  }
  // Cells: one column per query when a query is at least a pixel wide, else the query at
  // each pixel column (zoom in to see every query).
  const double step = std::max(1.0, a.t_per_px);
  const float cell_gap = bh > 4 ? 1.0f : 0.0f;
  for (double tf = static_cast<double>(t_lo); tf < static_cast<double>(t_hi); tf += step) {
    const int64_t t = static_cast<int64_t>(tf);
    const float cx0 = x_of_t(a, x0, static_cast<double>(t));
    const float cx1 = std::max(cx0 + 1.0f, x_of_t(a, x0, static_cast<double>(t + 1)));
    const size_t row = static_cast<size_t>(t) * static_cast<size_t>(m.width);
    for (int i = 0; i < m.width; ++i) {
      const int32_t b = m.blocks[row + i];
      if (b < 0) continue;
      auto cell = m.cells[row + i];
      if (!compare) {
        if (cell == analysis::MaskCell::miss) continue;
        if (cell == analysis::MaskCell::hit || cell == analysis::MaskCell::false_pick) cell = analysis::MaskCell::selected;
      }
      dl->AddRectFilled(ImVec2(cx0, y_of_block(b + 1) + cell_gap), ImVec2(cx1, y_of_block(b)),
                        palette::cell_color(static_cast<int>(cell)));
    }
  }
  if (s->pinned_t >= 0) {
    const float px = x_of_t(a, x0, static_cast<double>(s->pinned_t) + 0.5);
    dl->AddLine(ImVec2(px, y0), ImVec2(px, y1), palette::kPinned, 1.5f);
  }
  int64_t hover_t = -1, hover_b = -1;
  if (hovered) {
    const ImVec2 mp = ImGui::GetIO().MousePos;
    hover_t = std::clamp<int64_t>(static_cast<int64_t>(std::floor(t_of_x(a, x0, mp.x))), 0, T - 1);
    hover_b = std::clamp<int64_t>(static_cast<int64_t>(std::floor((y1 - mp.y) / bh)), 0, NB - 1);
    dl->AddRect(ImVec2(x_of_t(a, x0, static_cast<double>(hover_t)), y_of_block(hover_b + 1)),
                ImVec2(std::max(x_of_t(a, x0, static_cast<double>(hover_t)) + 1, x_of_t(a, x0, static_cast<double>(hover_t + 1))),
                       y_of_block(hover_b)),
                palette::kPinned);
    const float hx = x_of_t(a, x0, static_cast<double>(hover_t) + 0.5);
    dl->AddLine(ImVec2(hx, y0), ImVec2(hx, y1), palette::kHover);
  }
  dl->PopClipRect();

  // Axes: block indices on the left, positions below.
  char buf[32];
  const int64_t bstep = std::max<int64_t>(1, static_cast<int64_t>(nice_step(16.0 / std::max(bh, 1e-3f))));
  for (int64_t b = 0; b < NB; b += bstep) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(b));
    const float y = y_of_block(b) - bh * 0.5f - ImGui::GetTextLineHeight() * 0.5f;
    dl->AddText(ImVec2(x0 - 6 - ImGui::CalcTextSize(buf).x, y), palette::kAxisText, buf);
  }
  dl->AddText(ImVec2(origin.x, y0), palette::kAxisText, "block");
  draw_position_ticks(dl, a, x0, w, y0, y1, T);
  dl->AddText(ImVec2(origin.x, y1 + 1), palette::kAxisText, "query t");

  if (hovered && !ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f)) draw_tooltip(v, compare, hover_t, hover_b);
  if (clicked && hover_t >= 0) s->pinned_t = hover_t;
  ImGui::End();
}

}  // namespace moba::gui
