#pragma once
// The viewer's panels, one file each (panel_*.cpp), and what they share: the palette, the
// position axis helpers (position_axis.cpp) and tick spacing. Every draw function reads the
// state, records the user's intent in it, and computes nothing but pixel geometry.
#include <imgui.h>

#include <cstdint>

#include "gui/viewer_state.h"

namespace moba::gui {

class TileCache;

// The mask's tile textures (gui/tile_cache.h), owned by the app: the shown configuration's,
// and the compared one's (or the difference mask's).
struct MaskTiles {
  TileCache* shown = nullptr;
  TileCache* compared = nullptr;
};

// Where the app places a panel this frame (screen pixels).
struct PanelRect {
  float x = 0, y = 0, w = 0, h = 0;
};

// Begins the panel's window pinned to `r` (not movable, resizable or collapsible) with
// `extra` flags; returns ImGui::Begin's result. The caller calls ImGui::End() either way.
bool begin_panel(const char* title, const PanelRect& r, ImGuiWindowFlags extra = 0);
// begin_panel for a panel drawn from summary.csv: false (the window already ended, the caller
// just returns) when the window is hidden or there is no summary.csv (said in the panel).
bool begin_summary_panel(const char* title, const PanelRect& r, const ViewerState& s, ImGuiWindowFlags extra = 0);

void draw_navigator(ViewerState* s, const PanelRect& r);
void draw_mask_panel(ViewerState* s, const PanelRect& r, const MaskTiles& tiles);
void draw_metrics_panel(ViewerState* s, const PanelRect& r);
void draw_summary_panel(ViewerState* s, const PanelRect& r);
void draw_overview_panel(ViewerState* s, const PanelRect& r);
void draw_configs_panel(ViewerState* s, const PanelRect& r);
void draw_snr_panel(ViewerState* s, const PanelRect& r);

// Colours (RGBA as ImU32) shared by the mask, its legend and the plots.
namespace palette {
constexpr ImU32 rgba(int r, int g, int b, int a = 255) {
  return static_cast<ImU32>(r) | (static_cast<ImU32>(g) << 8) | (static_cast<ImU32>(b) << 16) |
         (static_cast<ImU32>(a) << 24);
}
constexpr ImU32 kBackground = rgba(22, 24, 30);
constexpr ImU32 kCausal = rgba(40, 44, 56);        // blocks b <= current block
constexpr ImU32 kCurrent = rgba(120, 130, 150);    // the current block
constexpr ImU32 kSelected = rgba(240, 200, 70);    // router pick, no oracle to compare with
constexpr ImU32 kHit = rgba(70, 200, 110);         // router and oracle
constexpr ImU32 kFalsePick = rgba(240, 120, 50);   // router only
constexpr ImU32 kMiss = rgba(80, 150, 255);        // oracle only
constexpr ImU32 kRouterLine = rgba(250, 190, 60);
constexpr ImU32 kOracleLine = rgba(90, 200, 240);
constexpr ImU32 kEnvelope = rgba(250, 190, 60, 60);
constexpr ImU32 kGrid = rgba(255, 255, 255, 28);
constexpr ImU32 kAxisText = rgba(190, 195, 205);
constexpr ImU32 kPinned = rgba(255, 255, 255, 200);
constexpr ImU32 kHover = rgba(255, 255, 255, 90);
constexpr ImU32 kPlanted = rgba(250, 250, 250);    // the planted key's block (synthetic dumps)
constexpr ImU32 kCompareLine = rgba(230, 110, 230); // the compared configuration's curves
constexpr ImU32 kDiffLine = rgba(140, 230, 140);    // a difference curve
constexpr ImU32 kZeroLine = rgba(255, 255, 255, 70);
constexpr ImU32 kLabelBacking = rgba(22, 24, 30, 150);  // behind text drawn over a plot (curves show through)
ImU32 cell_color(int cell);  // analysis::MaskCell as int; 0 = not selected
}  // namespace palette

// Left margin of the mask and metrics plots, so their position axes line up.
constexpr float kPlotLeftMargin = 64.0f;

// Position axis (gui/viewer_state.h PositionAxis): clamp to [0, n_tokens) with at least one
// pixel per 64 positions ... at most 48 pixels per position; fit when t_per_px == 0.
void clamp_axis(PositionAxis* a, int64_t n_tokens, float plot_width);
// Mouse input over a mask plot: the wheel zooms the position axis around the pointer, with
// Shift the key axis, with Ctrl both; drag pans both. Returns true on a click without drag.
bool mask_mouse_input(PositionAxis* x, int64_t x_extent, PositionAxis* y, int64_t y_extent, float x0, float y1,
                      float width, float height, bool hovered);
// A colour map for values in [0, 1] (viridis-like), for the overview grids.
ImU32 heat_color(float v);
// Mouse input over a plot area [x0, x0 + width): wheel zooms around the mouse, drag pans.
// Returns true when the left button was clicked without dragging (a pin request).
bool axis_mouse_input(PositionAxis* a, int64_t n_tokens, float x0, float width, bool hovered);
inline float x_of_t(const PositionAxis& a, float x0, double t) {
  return x0 + static_cast<float>((t - a.t_begin) / a.t_per_px);
}
inline double t_of_x(const PositionAxis& a, float x0, float x) { return a.t_begin + (x - x0) * a.t_per_px; }
// A 1-2-5 step of at least `min_step`.
double nice_step(double min_step);
// "moba B=64 k=8": a configuration as the panels name it (captions, legends, tooltips).
std::string config_label(const analysis::ConfigKey& k);
// Position ticks and labels along [x0, x0 + width) at y (label below the line).
void draw_position_ticks(ImDrawList* dl, const PositionAxis& a, float x0, float width, float y_top, float y_bottom,
                         int64_t n_tokens);

}  // namespace moba::gui
