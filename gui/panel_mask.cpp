// The block-selection mask: query position t (x) x key position (y; block b of block size B
// spans keys [b B, (b + 1) B), block 0 at the bottom). Drawn from tile textures of a
// level-of-detail pyramid (gui/tile_cache.h, analysis/view_lod.h): each cell is coloured by
// analysis::MaskCell — the router's picks, or against the oracle of the same (layer, head, B,
// k): hits, false picks, misses; the current block apart — zoomed out by each class's density
// (analysis::CellColouring). With a compared configuration, two
// masks on the same axes (side by side) or one difference mask (both / only shown / only
// compared). Wheel zooms the position axis (Shift: the key axis, Ctrl: both), drag pans,
// click pins a query, hover shows it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "gui/panels.h"
#include "gui/tile_cache.h"

namespace moba::gui {

namespace {

using analysis::kTileCells;
using analysis::TileKey;

constexpr float kBottomMargin = 18.0f;
constexpr int kFallbackLevels = 6;  // coarser cached levels drawn under tiles still building

float metric_at(const analysis::ResultArrays& a, const char* name, int64_t t) {
  const std::vector<float>* m = a.metric(name);
  return m && t >= 0 && t < static_cast<int64_t>(m->size()) ? (*m)[static_cast<size_t>(t)] : NAN;
}

void zoom_axis(PositionAxis* a, double factor) {
  const double mid = a->t_begin + 0.5 * a->t_per_px * a->plot_width;
  a->t_per_px *= factor;
  a->t_begin = mid - 0.5 * a->t_per_px * a->plot_width;
}

void draw_toolbar(ViewerState* s, const ViewData& d) {
  const analysis::PositionView& v = d.view;
  if (s->compare.on && s->compare.difference) {
    ImGui::TextDisabled("difference:");
  } else if (v.has_oracle) {
    ImGui::Checkbox("oracle classes", &s->mask.compare_oracle);
  } else {
    ImGui::TextDisabled(v.router.config.router == analysis::RouterKind::oracle ? "(the oracle itself)"
                                                                                : "(no oracle analysed)");
  }
  ImGui::SameLine();
  ImGui::Checkbox("causal", &s->mask.shade_causal);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::CalcTextSize("presence").x + ImGui::GetFrameHeight() + 12);
  if (ImGui::BeginCombo("cells", analysis::cell_colouring_name(s->mask.cells))) {
    for (const auto c : {analysis::CellColouring::density, analysis::CellColouring::presence, analysis::CellColouring::dominant})
      if (ImGui::Selectable(analysis::cell_colouring_name(c), c == s->mask.cells)) s->mask.cells = c;
    ImGui::EndCombo();
  }
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("how a zoomed-out cell (many positions x blocks) is coloured:\n"
                      "density: every class it holds gets quadrants (miss, false pick, hit, current), each as\n"
                      "  bright as its count (log scale): dim = one entry (never hidden), full = the most of\n"
                      "  that class in one cell at this zoom; so bright blue is where misses concentrate\n"
                      "presence: every class it holds at full colour (one entry looks like many)\n"
                      "dominant: the class with most entries, at its density (rare classes may vanish)");
  ImGui::SameLine();
  if (d.planted) {
    ImGui::Checkbox("planted", &s->mask.planted);
  } else {
    ImGui::BeginDisabled();
    bool off = false;
    ImGui::Checkbox("planted", &off);
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled)) ImGui::SetTooltip("%s", d.planted_missing.c_str());
  }
  ImGui::SameLine();
  if (ImGui::Button("fit")) s->axis.t_per_px = s->key_axis.t_per_px = 0;
  ImGui::SameLine();
  if (ImGui::Button("t+")) zoom_axis(&s->axis, 0.5);
  ImGui::SameLine();
  if (ImGui::Button("t-")) zoom_axis(&s->axis, 2.0);
  ImGui::SameLine();
  if (ImGui::Button("key+")) zoom_axis(&s->key_axis, 0.5);
  ImGui::SameLine();
  if (ImGui::Button("key-")) zoom_axis(&s->key_axis, 2.0);
  const int64_t T = v.router.n_tokens, B = v.router.config.block_size;
  const double t_end = std::min<double>(static_cast<double>(T), s->axis.t_begin + s->axis.t_per_px * s->axis.plot_width);
  const double k_end = s->key_axis.t_begin + s->key_axis.t_per_px * s->key_axis.plot_width;
  ImGui::Text("t [%lld, %lld) of %lld   blocks [%lld, %lld) of %lld (B=%lld k=%d)   level %d/%d",
              static_cast<long long>(s->axis.t_begin), static_cast<long long>(std::ceil(t_end)),
              static_cast<long long>(T), static_cast<long long>(s->key_axis.t_begin / static_cast<double>(B)),
              static_cast<long long>(std::min<double>(static_cast<double>(v.router.n_blocks), std::ceil(k_end / static_cast<double>(B)))),
              static_cast<long long>(v.router.n_blocks), static_cast<long long>(B), v.router.config.top_k, s->mask.level_x,
              s->mask.level_y);
  ImGui::SameLine();
  ImGui::TextDisabled("  wheel: zoom t  shift: keys  ctrl: both  drag: pan");
}

void draw_tooltip(const analysis::PositionView& v, const analysis::MaskComparison& m, const std::vector<int32_t>* planted,
                  bool classes, bool pair, const char* a_name, const char* b_name, int64_t t, int64_t block) {
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
    const analysis::MaskCell shown = !classes && (c == analysis::MaskCell::hit || c == analysis::MaskCell::false_pick)
                                         ? analysis::MaskCell::selected
                                         : c;
    char buf[160];
    if (pair && shown == analysis::MaskCell::hit) std::snprintf(buf, sizeof buf, "both %s and %s", a_name, b_name);
    else if (pair && shown == analysis::MaskCell::false_pick) std::snprintf(buf, sizeof buf, "only %s", a_name);
    else if (pair && shown == analysis::MaskCell::miss) std::snprintf(buf, sizeof buf, "only %s", b_name);
    else std::snprintf(buf, sizeof buf, "%s", analysis::mask_cell_name(shown));
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(palette::cell_color(static_cast<int>(shown))), "%s", buf);
  }
  // The planted overlay on: where this query's planted key is (synthetic dumps).
  if (planted && t >= 0 && static_cast<size_t>(t) < planted->size()) {
    const int32_t p = (*planted)[static_cast<size_t>(t)];
    if (p < 0)
      ImGui::TextDisabled("no planted key for this query");
    else if (p / B == block)
      ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(palette::kPlanted), "planted key here (position %d)", p);
    else
      ImGui::TextDisabled("planted key at position %d, block %lld", p, static_cast<long long>(p / B));
  }
  ImGui::Separator();
  ImGui::Text("coverage %.4f   kl %.4f", metric_at(v.router, "coverage", t), metric_at(v.router, "kl", t));
  if (v.has_oracle)
    ImGui::Text("oracle coverage %.4f   oracle kl %.4f", metric_at(v.oracle, "coverage", t), metric_at(v.oracle, "kl", t));
  if (m.with_oracle && t >= 0 && t < m.n_tokens) {
    const size_t i = static_cast<size_t>(t);
    if (pair)  // a difference mask: the classes are both / only the shown / only the compared
      ImGui::Text("%d both, %d only %s, %d only %s", m.n_hit[i], m.n_false[i], a_name, m.n_miss[i], b_name);
    else
      ImGui::Text("%d hit, %d false, %d missed", m.n_hit[i], m.n_false[i], m.n_miss[i]);
  }
  ImGui::EndTooltip();
}

// The tiles of level (lx, ly) covering the visible [t_lo, t_hi) x blocks [b_lo, b_hi).
std::vector<TileKey> visible_tiles(int lx, int ly, double t_lo, double t_hi, double b_lo, double b_hi, int64_t T,
                                   int64_t NB) {
  std::vector<TileKey> out;
  const double span_t = static_cast<double>(int64_t{kTileCells} << lx), span_b = static_cast<double>(int64_t{kTileCells} << ly);
  const int64_t tx0 = static_cast<int64_t>(std::floor(std::max(0.0, t_lo) / span_t));
  const int64_t tx1 = static_cast<int64_t>(std::floor((std::min<double>(static_cast<double>(T), t_hi) - 1e-9) / span_t));
  const int64_t ty0 = static_cast<int64_t>(std::floor(std::max(0.0, b_lo) / span_b));
  const int64_t ty1 = static_cast<int64_t>(std::floor((std::min<double>(static_cast<double>(NB), b_hi) - 1e-9) / span_b));
  for (int64_t ty = ty0; ty <= ty1; ++ty)
    for (int64_t tx = tx0; tx <= tx1; ++tx) out.push_back({lx, ly, tx, ty});
  return out;
}

struct PlotGeometry {
  float x0, y0, x1, y1;
};

// One mask plot: tiles, grid, pinned / hovered query, axes, tooltip. Returns the hovered
// query (or -1) and records a pin request.
void draw_mask_plot(ViewerState* s, const char* id, const analysis::PositionView& v, const analysis::MaskComparison& m,
                    TileCache* cache, const TileSource& source, const TileShading& shading, const PlotGeometry& g,
                    const char* title, bool pair, const char* a_name, const char* b_name, bool main_plot) {
  const int64_t T = m.n_tokens, NB = std::max<int64_t>(1, m.n_blocks), B = m.block_size;
  const float w = g.x1 - g.x0, h = g.y1 - g.y0;
  ImGui::SetCursorScreenPos(ImVec2(g.x0, g.y0));
  ImGui::InvisibleButton(id, ImVec2(w, h));
  const bool hovered = ImGui::IsItemHovered();
  PositionAxis& ax = s->axis;
  PositionAxis& ay = s->key_axis;
  const int64_t key_extent = NB * B;
  clamp_axis(&ax, T, w);
  clamp_axis(&ay, key_extent, h);
  const bool clicked = mask_mouse_input(&ax, T, &ay, key_extent, g.x0, g.y1, w, h, hovered);

  const double bpp = ay.t_per_px / static_cast<double>(B);  // blocks per pixel
  // Cells of at least two pixels, so the 2 x 2 class quadrants of a cell stay visible.
  const int lx = analysis::tile_level(2 * ax.t_per_px), ly = analysis::tile_level(2 * bpp);
  if (main_plot) {
    s->mask.level_x = lx;
    s->mask.level_y = ly;
    s->mask.block_rows_px = static_cast<float>(1.0 / bpp);
  }
  const double t_lo = ax.t_begin, t_hi = ax.t_begin + ax.t_per_px * w;
  const double b_lo = ay.t_begin / static_cast<double>(B), b_hi = (ay.t_begin + ay.t_per_px * h) / static_cast<double>(B);
  const std::vector<TileKey> tiles = visible_tiles(lx, ly, t_lo, t_hi, b_lo, b_hi, T, NB);
  cache->set_source(source, shading);
  cache->want(tiles);
  if (main_plot) s->mask.level_top_known = cache->level_top(lx, ly, &s->mask.level_top);

  const auto y_of_key = [&](double k) { return g.y1 - static_cast<float>((k - ay.t_begin) / ay.t_per_px); };
  const auto y_of_block = [&](double b) { return y_of_key(b * static_cast<double>(B)); };
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->PushClipRect(ImVec2(g.x0, g.y0), ImVec2(g.x1, g.y1), true);
  dl->AddRectFilled(ImVec2(g.x0, g.y0), ImVec2(g.x1, g.y1), palette::kBackground);
  const auto draw_tile = [&](const TileKey& k, unsigned tex) {
    const double span_t = static_cast<double>(int64_t{kTileCells} << k.lx), span_b = static_cast<double>(int64_t{kTileCells} << k.ly);
    const ImVec2 p0(x_of_t(ax, g.x0, static_cast<double>(k.tx) * span_t), y_of_block(static_cast<double>(k.ty + 1) * span_b));
    const ImVec2 p1(x_of_t(ax, g.x0, static_cast<double>(k.tx + 1) * span_t), y_of_block(static_cast<double>(k.ty) * span_b));
    dl->AddImage(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(tex)), p0, p1);
  };
  // Tiles still building: the nearest coarser level already cached stands in.
  std::vector<TileKey> fallbacks;
  for (const TileKey& k : tiles) {
    bool built = false;
    cache->texture(k, &built);
    if (built) continue;
    for (int j = 1; j <= kFallbackLevels; ++j) {
      const TileKey parent{std::min(k.lx + j, analysis::kTileLevels - 1), std::min(k.ly + j, analysis::kTileLevels - 1),
                           k.tx >> std::min(j, analysis::kTileLevels - 1 - k.lx), k.ty >> std::min(j, analysis::kTileLevels - 1 - k.ly)};
      bool parent_built = false;
      cache->texture(parent, &parent_built);
      if (parent_built) {
        if (std::find(fallbacks.begin(), fallbacks.end(), parent) == fallbacks.end()) fallbacks.push_back(parent);
        break;
      }
    }
  }
  for (const TileKey& k : fallbacks) {
    bool built = false;
    if (const unsigned tex = cache->texture(k, &built)) draw_tile(k, tex);
  }
  for (const TileKey& k : tiles) {
    bool built = false;
    if (const unsigned tex = cache->texture(k, &built)) draw_tile(k, tex);
  }
  // Cell grid once cells are large.
  const float px_per_block = static_cast<float>(1.0 / bpp), px_per_t = static_cast<float>(1.0 / ax.t_per_px);
  if (px_per_block >= 8) {
    for (int64_t b = std::max<int64_t>(0, static_cast<int64_t>(b_lo)); b <= std::min<int64_t>(NB, static_cast<int64_t>(b_hi) + 1); ++b)
      dl->AddLine(ImVec2(g.x0, y_of_block(static_cast<double>(b))), ImVec2(g.x1, y_of_block(static_cast<double>(b))), palette::kGrid);
  }
  if (px_per_t >= 8) {
    for (int64_t t = std::max<int64_t>(0, static_cast<int64_t>(t_lo)); t <= std::min<int64_t>(T, static_cast<int64_t>(t_hi) + 1); ++t)
      dl->AddLine(ImVec2(x_of_t(ax, g.x0, static_cast<double>(t)), g.y0), ImVec2(x_of_t(ax, g.x0, static_cast<double>(t)), g.y1),
                  palette::kGrid);
  }
  if (s->pinned_t >= 0) {
    const float px = x_of_t(ax, g.x0, static_cast<double>(s->pinned_t) + 0.5);
    dl->AddLine(ImVec2(px, g.y0), ImVec2(px, g.y1), palette::kPinned, 1.5f);
  }
  int64_t hover_t = -1, hover_b = -1;
  if (hovered) {
    const ImVec2 mp = ImGui::GetIO().MousePos;
    hover_t = std::clamp<int64_t>(static_cast<int64_t>(std::floor(t_of_x(ax, g.x0, mp.x))), 0, T - 1);
    hover_b = std::clamp<int64_t>(static_cast<int64_t>(std::floor((ay.t_begin + (g.y1 - mp.y) * ay.t_per_px) / static_cast<double>(B))), 0, NB - 1);
    dl->AddRect(ImVec2(x_of_t(ax, g.x0, static_cast<double>(hover_t)), y_of_block(static_cast<double>(hover_b + 1))),
                ImVec2(std::max(x_of_t(ax, g.x0, static_cast<double>(hover_t)) + 1, x_of_t(ax, g.x0, static_cast<double>(hover_t + 1))),
                       y_of_block(static_cast<double>(hover_b))),
                palette::kPinned);
    const float hx = x_of_t(ax, g.x0, static_cast<double>(hover_t) + 0.5);
    dl->AddLine(ImVec2(hx, g.y0), ImVec2(hx, g.y1), palette::kHover);
  }
  if (title) {
    // Top left where that corner is past every query's causal blocks (the mask's empty triangle:
    // the caption covers no cell), else top right.
    const ImVec2 ts = ImGui::CalcTextSize(title);
    const double t_right = t_of_x(ax, g.x0, g.x0 + ts.x + 10);
    const double b_below = (ay.t_begin + (g.y1 - (g.y0 + ts.y + 4)) * ay.t_per_px) / static_cast<double>(B);
    const float cx = b_below >= std::floor(t_right / static_cast<double>(B)) + 1 ? g.x0 : g.x1 - ts.x - 10;
    dl->AddRectFilled(ImVec2(cx, g.y0), ImVec2(cx + ts.x + 10, g.y0 + ts.y + 4), palette::rgba(0, 0, 0, 170));
    dl->AddText(ImVec2(cx + 5, g.y0 + 2), palette::kAxisText, title);
  }
  dl->PopClipRect();

  // Axes: block indices on the left, positions below.
  char buf[32];
  const double bstep = std::max(1.0, nice_step(1.6 * ImGui::GetTextLineHeight() * bpp));
  for (double b = std::ceil(std::max(0.0, b_lo) / bstep) * bstep; b < std::min<double>(static_cast<double>(NB), b_hi); b += bstep) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(b));
    const float y = y_of_block(b + (px_per_block >= ImGui::GetTextLineHeight() ? 0.5 : 0.0)) - ImGui::GetTextLineHeight() * 0.5f;
    // Not on the axis title's line (top left), not below the plot.
    if (y < g.y0 + ImGui::GetTextLineHeight() || y > g.y1 - ImGui::GetTextLineHeight() * 0.5f) continue;
    dl->AddText(ImVec2(g.x0 - 6 - ImGui::CalcTextSize(buf).x, y), palette::kAxisText, buf);
  }
  dl->AddText(ImVec2(g.x0 - kPlotLeftMargin + 2, g.y0), palette::kAxisText, "block");
  draw_position_ticks(dl, ax, g.x0, w, g.y0, g.y1, T);

  if (hovered && !ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f))
    draw_tooltip(v, m, source.planted.get(), shading.compare, pair, a_name, b_name, hover_t, hover_b);
  if (clicked && hover_t >= 0) s->pinned_t = hover_t;
}

}  // namespace

void draw_mask_panel(ViewerState* s, const PanelRect& r, const MaskTiles& tiles) {
  const bool open = begin_panel("Block selection mask", r, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  if (!open || !s->loaded.data) {
    if (open) ImGui::TextDisabled("%s", s->load_error.empty() ? "loading..." : s->load_error.c_str());
    ImGui::End();
    return;
  }
  const ViewData& d = *s->loaded.data;
  const analysis::PositionView& v = d.view;
  if (!v.has_mask) {
    // The selection was not kept (analysis/position_keep.h): say so, and how to get it.
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.8f, 0.4f, 1.0f));
    ImGui::TextWrapped("No selection stored: %s", v.missing.c_str());
    ImGui::PopStyleColor();
    ImGui::TextDisabled("The summary numbers and the position-bucket curves below are from analysis.h5.");
    ImGui::End();
    return;
  }
  draw_toolbar(s, d);
  TileShading shading;
  shading.compare = v.mask.with_oracle && s->mask.compare_oracle;
  shading.causal = s->mask.shade_causal;
  shading.planted = s->mask.planted && d.planted != nullptr;
  shading.cells = s->mask.cells;
  const TileSource source{shared_mask(s->loaded.data), shading.planted ? d.planted : nullptr};

  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  PlotGeometry g;
  g.x0 = origin.x + kPlotLeftMargin;
  g.y0 = origin.y;
  g.x1 = g.x0 + std::max(10.0f, avail.x - kPlotLeftMargin - 4);
  g.y1 = g.y0 + std::max(10.0f, avail.y - kBottomMargin);
  const std::string a_name = config_label(v.router.config);

  const CompareData* c = s->compare.on ? s->compared.get() : nullptr;
  if (s->compare.on && !c) {
    ImGui::SetCursorScreenPos(ImVec2(g.x0, g.y1 + 2));
    ImGui::TextDisabled("%s", s->compare_error.empty() ? "loading the compared configuration..." : s->compare_error.c_str());
    // Still loading: no plot yet, so that a requested block range (--blocks) is fitted to the
    // half-height plots the comparison will have, not to this one.
    if (s->compare_error.empty()) {
      ImGui::End();
      return;
    }
  }
  if (c && s->compare.difference && c->pair) {
    TileShading ps = shading;
    ps.compare = true;
    const std::string b_name = config_label(c->b->view.router.config);
    const std::string title = "difference: green both, orange only " + a_name + ", blue only " + b_name;
    draw_mask_plot(s, "##maskdiff", v, *c->pair, tiles.compared, TileSource{c->pair, shading.planted ? d.planted : nullptr}, ps,
                   g, title.c_str(), true, a_name.c_str(), b_name.c_str(), true);
  } else if (c && c->b->view.has_mask) {
    // Side by side: the shown configuration above, the compared one below, same axes.
    const float gap = kBottomMargin + 2;
    const float hh = (g.y1 - g.y0 - gap) * 0.5f;
    PlotGeometry top = g, bottom = g;
    top.y1 = g.y0 + hh;
    bottom.y0 = top.y1 + gap;
    const std::string b_name = config_label(c->b->view.router.config);
    draw_mask_plot(s, "##maskA", v, v.mask, tiles.shown, source, shading, top, a_name.c_str(), false, "", "", true);
    TileShading bs = shading;
    bs.compare = c->b->view.mask.with_oracle && s->mask.compare_oracle;
    draw_mask_plot(s, "##maskB", c->b->view, c->b->view.mask, tiles.compared, TileSource{shared_mask(c->b), bs.planted ? d.planted : nullptr},
                   bs, bottom, b_name.c_str(), false, "", "", false);
    if (s->compare.difference && !c->pair) {
      ImGui::SetCursorScreenPos(ImVec2(g.x0, g.y1 + 2));
      ImGui::TextDisabled("%s", c->pair_missing.c_str());
    }
  } else {
    draw_mask_plot(s, "##mask", v, v.mask, tiles.shown, source, shading, g, s->compare.on ? a_name.c_str() : nullptr, false, "",
                   "", true);
  }
  ImGui::End();
}

}  // namespace moba::gui
