// The position axis shared by the mask and metrics panels (gui/panels.h), and the palette.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "analysis/results_file.h"
#include "gui/panels.h"

namespace moba::gui {

namespace palette {
ImU32 cell_color(int cell) {
  switch (static_cast<analysis::MaskCell>(cell)) {
    case analysis::MaskCell::current: return kCurrent;
    case analysis::MaskCell::selected: return kSelected;
    case analysis::MaskCell::hit: return kHit;
    case analysis::MaskCell::false_pick: return kFalsePick;
    case analysis::MaskCell::miss: return kMiss;
  }
  return kBackground;
}
}  // namespace palette

void clamp_axis(PositionAxis* a, int64_t n_tokens, float plot_width) {
  a->plot_width = plot_width;
  if (plot_width < 1 || n_tokens <= 0) return;
  if (a->request_end > a->request_begin) {
    a->t_begin = a->request_begin;
    a->t_per_px = (a->request_end - a->request_begin) / plot_width;
    a->request_begin = a->request_end = 0;
  }
  const double fit = static_cast<double>(n_tokens) / plot_width;
  const double min_tpp = 1.0 / 48.0;
  const bool was_fit = a->last_fit > 0 && std::fabs(a->t_per_px - a->last_fit) <= 1e-9 * a->last_fit;
  if (a->t_per_px <= 0 || a->t_per_px > fit || was_fit) a->t_per_px = fit;
  a->last_fit = fit;
  a->t_per_px = std::max(a->t_per_px, std::min(min_tpp, fit));
  const double span = a->t_per_px * plot_width;
  a->t_begin = std::clamp(a->t_begin, 0.0, std::max(0.0, static_cast<double>(n_tokens) - span));
}

bool axis_mouse_input(PositionAxis* a, int64_t n_tokens, float x0, float width, bool hovered) {
  const ImGuiIO& io = ImGui::GetIO();
  bool clicked = false;
  if (hovered && io.MouseWheel != 0.0f) {
    // Zoom around the position under the mouse.
    const double t_mouse = t_of_x(*a, x0, io.MousePos.x);
    a->t_per_px *= std::pow(0.8, static_cast<double>(io.MouseWheel));
    clamp_axis(a, n_tokens, width);
    a->t_begin = t_mouse - (io.MousePos.x - x0) * a->t_per_px;
  }
  if (hovered && io.MouseWheelH != 0.0f) a->t_begin -= io.MouseWheelH * 40.0 * a->t_per_px;
  if (hovered && ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f)) {
    a->t_begin -= io.MouseDelta.x * a->t_per_px;
  } else if (hovered && ImGui::IsMouseReleased(ImGuiMouseButton_Left) &&
             ImGui::GetMouseDragDelta(ImGuiMouseButton_Left, 3.0f).x == 0.0f) {
    clicked = true;
  }
  clamp_axis(a, n_tokens, width);
  return clicked;
}

bool mask_mouse_input(PositionAxis* x, int64_t x_extent, PositionAxis* y, int64_t y_extent, float x0, float y1,
                      float width, float height, bool hovered) {
  const ImGuiIO& io = ImGui::GetIO();
  bool clicked = false;
  if (hovered && io.MouseWheel != 0.0f) {
    const double f = std::pow(0.8, static_cast<double>(io.MouseWheel));
    if (!io.KeyShift) {
      const double t_mouse = t_of_x(*x, x0, io.MousePos.x);
      x->t_per_px *= f;
      clamp_axis(x, x_extent, width);
      x->t_begin = t_mouse - (io.MousePos.x - x0) * x->t_per_px;
    }
    if (io.KeyShift || io.KeyCtrl) {
      const double k_mouse = y->t_begin + (y1 - io.MousePos.y) * y->t_per_px;
      y->t_per_px *= f;
      clamp_axis(y, y_extent, height);
      y->t_begin = k_mouse - (y1 - io.MousePos.y) * y->t_per_px;
    }
  }
  if (hovered && ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f)) {
    x->t_begin -= io.MouseDelta.x * x->t_per_px;
    y->t_begin += io.MouseDelta.y * y->t_per_px;
  } else if (hovered && ImGui::IsMouseReleased(ImGuiMouseButton_Left)) {
    const ImVec2 d = ImGui::GetMouseDragDelta(ImGuiMouseButton_Left, 3.0f);
    clicked = d.x == 0.0f && d.y == 0.0f;
  }
  clamp_axis(x, x_extent, width);
  clamp_axis(y, y_extent, height);
  return clicked;
}

namespace {
// Viridis at five stops.
constexpr float kStops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
}  // namespace

ImU32 heat_color(float v) {
  if (!std::isfinite(v)) return palette::rgba(60, 60, 66);
  v = std::clamp(v, 0.0f, 1.0f) * 4.0f;
  const int i = std::min(3, static_cast<int>(v));
  const float f = v - static_cast<float>(i);
  const auto c = [&](int k) { return static_cast<int>(kStops[i][k] * (1 - f) + kStops[i + 1][k] * f + 0.5f); };
  return palette::rgba(c(0), c(1), c(2));
}

std::string config_label(const analysis::ConfigKey& k) {
  return std::string(analysis::router_name(k.router)) + " B=" + std::to_string(k.block_size) + " k=" +
         std::to_string(k.top_k);
}

double nice_step(double min_step) {
  if (!(min_step > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(min_step)));
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= min_step) return m * p;
  return 10 * p;
}

void draw_position_ticks(ImDrawList* dl, const PositionAxis& a, float x0, float width, float y_top, float y_bottom,
                         int64_t n_tokens) {
  const double step = std::max(1.0, nice_step(90.0 * a.t_per_px));
  const double t_end = std::min(static_cast<double>(n_tokens), t_of_x(a, x0, x0 + width));
  // The axis title in the left margin, on the tick labels' line.
  dl->AddText(ImVec2(x0 - kPlotLeftMargin + 2, y_bottom + 1), palette::kAxisText, "query t");
  char buf[32];
  for (double t = std::ceil(a.t_begin / step) * step; t <= t_end; t += step) {
    const float x = x_of_t(a, x0, t);
    dl->AddLine(ImVec2(x, y_top), ImVec2(x, y_bottom), palette::kGrid);
    // The label centred under its tick, kept inside the plot at its edges.
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(t));
    const float tw = ImGui::CalcTextSize(buf).x;
    if (tw > width) continue;
    dl->AddText(ImVec2(std::clamp(x - tw / 2, x0, x0 + width - tw), y_bottom + 1), palette::kAxisText, buf);
  }
}

}  // namespace moba::gui
