// The routing-SNR panel: the signal-rank histogram analyze's SNR probe stored for the shown
// (layer, head, B, gate router) — how often the signal block ranked 1, 2, ... among the
// gate scores — beside the compared configuration's, with the configuration's SNR numbers
// (summary columns snr_emp, snr_theory, p_fail_emp). Bars as shares of the probed queries;
// ranks above k - 1 (the signal block missed: k counts the current block, so a router picks
// k - 1 routable blocks; metrics.md signal_recall) are tinted as misses. The rank axis ends at
// the largest rank the layer allows (n_blocks - 1) when that is below the histogram's last bin.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "analysis/snr.h"
#include "analysis/summary.h"
#include "gui/panels.h"

namespace moba::gui {

namespace {

void snr_numbers(const analysis::ResultArrays& a, ImU32 color) {
  ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(color), "%s", config_label(a.config).c_str());
  for (const analysis::SummaryColumn c :
       {analysis::SummaryColumn::snr_emp, analysis::SummaryColumn::snr_theory, analysis::SummaryColumn::p_fail_emp}) {
    const auto& info = analysis::summary_column(c);
    const double v = a.summary_value(info.name);
    ImGui::SameLine();
    if (std::isnan(v)) ImGui::TextDisabled("  %s n/a", info.label);
    else {
      char buf[48];
      std::snprintf(buf, sizeof buf, info.format, v);
      ImGui::Text("  %s %s", info.label, buf);
    }
  }
}

}  // namespace

void draw_snr_panel(ViewerState* s, const PanelRect& r) {
  if (!begin_panel("Routing SNR: signal-rank histogram", r, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse)) {
    ImGui::End();
    return;
  }
  if (!s->loaded.data) {
    ImGui::TextDisabled("loading...");
    ImGui::End();
    return;
  }
  struct Hist {
    const analysis::ResultArrays* a;
    ImU32 color;
  };
  std::vector<Hist> hists{{&s->loaded.data->view.router, palette::kRouterLine}};
  if (s->compare.on && s->compared) hists.push_back({&s->compared->b->view.router, palette::kCompareLine});
  for (const Hist& h : hists) snr_numbers(*h.a, h.color);
  bool any = false;
  for (const Hist& h : hists) any = any || !h.a->signal_rank_hist.empty();
  if (!any) {
    ImGui::TextDisabled("no signal-rank histogram stored: the SNR probe runs for gate routers (moba, moba-kconv) only");
    ImGui::End();
    return;
  }
  // Ranks beyond k - 1 of the shown configuration: the signal block is not selected.
  const int k = s->loaded.data->view.router.config.top_k;
  ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
  ImGui::TextWrapped("shaded: ranks above the shown k - 1 = %d (k counts the current block): its signal block "
                     "is missed",
                     std::max(0, k - 1));
  ImGui::PopStyleColor();
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float x0 = origin.x + kPlotLeftMargin, y0 = origin.y + 4;
  const float w = std::max(40.0f, avail.x - kPlotLeftMargin - 8), h = std::max(30.0f, avail.y - 24);
  const float x1 = x0 + w, y1 = y0 + h;
  // Bins shown: ranks 1 .. kSnrMaxRank and "above", or only up to the largest possible rank
  // (a query has at most n_blocks - 1 routable blocks) when every histogram's layer is smaller.
  int64_t max_rank = 1;
  for (const Hist& hh : hists)  // n_blocks unknown (0): every bin
    max_rank = hh.a->n_blocks > 0 ? std::max<int64_t>(max_rank, hh.a->n_blocks - 1) : INT64_MAX;
  const bool above_bin = max_rank > analysis::kSnrMaxRank;
  const int n_bins = above_bin ? analysis::kSnrMaxRank + 1 : static_cast<int>(max_rank);
  // Shares per bin; the y range is the largest share.
  std::vector<std::vector<double>> share(hists.size());
  double top = 0;
  for (size_t i = 0; i < hists.size(); ++i) {
    const auto& hist = hists[i].a->signal_rank_hist;
    double total = 0;
    for (const int32_t n : hist) total += n;
    share[i].assign(static_cast<size_t>(n_bins), 0.0);
    for (size_t b = 0; b < hist.size() && b < share[i].size(); ++b) share[i][b] = total > 0 ? hist[b] / total : 0.0;
    for (const double x : share[i]) top = std::max(top, x);
  }
  if (!(top > 0)) top = 1;
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(ImVec2(x0, y0), ImVec2(x1, y1), palette::kBackground);
  const float bin_w = w / static_cast<float>(n_bins);
  const float bar_w = bin_w / static_cast<float>(hists.size());
  dl->AddRectFilled(ImVec2(x0 + bin_w * static_cast<float>(std::clamp(k - 1, 0, n_bins)), y0), ImVec2(x1, y1),
                    palette::rgba(80, 150, 255, 28));
  for (size_t i = 0; i < hists.size(); ++i)
    for (int b = 0; b < n_bins; ++b) {
      const float bh = static_cast<float>(share[i][static_cast<size_t>(b)] / top) * (h - 4);
      const float bx = x0 + bin_w * static_cast<float>(b) + bar_w * static_cast<float>(i);
      if (bh > 0) dl->AddRectFilled(ImVec2(bx, y1 - std::max(1.0f, bh)), ImVec2(bx + std::max(1.0f, bar_w - 1), y1), hists[i].color);
    }
  char buf[32];
  for (const double f : {0.0, 0.5, 1.0}) {
    std::snprintf(buf, sizeof buf, "%.0f%%", 100.0 * top * f);
    const float y = y1 - static_cast<float>(f) * (h - 4);
    dl->AddLine(ImVec2(x0, y), ImVec2(x1, y), palette::kGrid);
    dl->AddText(ImVec2(x0 - 6 - ImGui::CalcTextSize(buf).x, y - ImGui::GetTextLineHeight() * 0.5f), palette::kAxisText, buf);
  }
  const int step = std::max(1, static_cast<int>(nice_step(36.0 / bin_w)));
  for (int b = 0; b < n_bins; b += step) {
    if (above_bin && b + 1 == n_bins) break;
    std::snprintf(buf, sizeof buf, "%d", b + 1);
    dl->AddText(ImVec2(x0 + bin_w * (static_cast<float>(b) + 0.5f) - ImGui::CalcTextSize(buf).x * 0.5f, y1 + 2), palette::kAxisText, buf);
  }
  if (above_bin) {
    std::snprintf(buf, sizeof buf, ">%d", analysis::kSnrMaxRank);
    dl->AddText(ImVec2(x1 - ImGui::CalcTextSize(buf).x, y1 + 2), palette::kAxisText, buf);
  }
  dl->AddText(ImVec2(origin.x, y1 + 2), palette::kAxisText, "rank");
  // Hover: the bin's counts.
  ImGui::SetCursorScreenPos(ImVec2(x0, y0));
  ImGui::InvisibleButton("##snr", ImVec2(w, h));
  if (ImGui::IsItemHovered()) {
    const int b = std::clamp(static_cast<int>((ImGui::GetIO().MousePos.x - x0) / bin_w), 0, n_bins - 1);
    ImGui::BeginTooltip();
    const bool above = above_bin && b + 1 == n_bins;
    if (above) ImGui::Text("signal block ranked above %d", analysis::kSnrMaxRank);
    else ImGui::Text("signal block ranked %d", b + 1);
    for (size_t i = 0; i < hists.size(); ++i) {  // selected or missed at each configuration's own k
      const analysis::ConfigKey& c = hists[i].a->config;
      const auto& hist = hists[i].a->signal_rank_hist;
      ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(hists[i].color), "%s: %d queries (%.2f%%), %s",
                         config_label(c).c_str(), b < static_cast<int>(hist.size()) ? hist[static_cast<size_t>(b)] : 0,
                         100.0 * share[i][static_cast<size_t>(b)],
                         above || b + 1 > c.top_k - 1 ? "missed (rank above k - 1)" : "selected");
    }
    ImGui::EndTooltip();
  }
  ImGui::End();
}

}  // namespace moba::gui
