// Per-position metrics of the shown configuration (analysis.h5's [n_tokens] arrays): one
// strip per metric over query position, the router's line with the oracle's beside it where
// that is meaningful, per position or as bucket means (analysis::bucket_means, the rule of
// buckets.csv). Where the arrays were not kept (analysis/position_keep.h), the stored bucket
// curves are drawn instead, with a note saying so. The position axis follows the mask panel
// unless told otherwise.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "analysis/summary.h"
#include "gui/panels.h"

namespace moba::gui {

namespace {

constexpr float kStripGap = 4.0f;
constexpr float kStripInset = 2.0f;  // values at a range's ends (coverage 1, KL 0) off the strip's edge

// The y of value v in a strip [y0, y1] showing [lo, hi] (clamped, inset).
float strip_y(float v, float lo, float hi, float y0, float y1) {
  return y1 - kStripInset - (std::clamp(v, lo, hi) - lo) / (hi - lo) * (y1 - y0 - 2 * kStripInset);
}

const char* metric_label(const std::string& name) {
  const analysis::PositionMetricInfo* m = analysis::find_position_metric(name);
  return m ? m->label : name.c_str();
}

bool overlay_makes_sense(const std::string& name) {
  const analysis::PositionMetricInfo* m = analysis::find_position_metric(name);
  return !m || m->oracle_overlay;
}

// One series sampled at the visible pixel columns: per column the mean of its finite values
// and their min..max, from the series mipmap (analysis/view_lod.h), so a column costs O(1)
// however many positions it holds; per position when positions are wider than a pixel.
struct Column {
  float x, mean, mn, mx;
};

std::vector<Column> sample_series(const analysis::SeriesLod& lod, const PositionAxis& a, float x0, float x1) {
  std::vector<Column> out;
  const int64_t T = lod.size();
  if (T == 0) return out;
  if (a.t_per_px > 1.0) {
    const int n_cols = static_cast<int>(x1 - x0);
    out.reserve(static_cast<size_t>(n_cols));
    for (int i = 0; i < n_cols; ++i) {
      const int64_t ta = std::clamp<int64_t>(static_cast<int64_t>(std::floor(t_of_x(a, x0, x0 + static_cast<float>(i)))), 0, T);
      const int64_t tb = std::clamp<int64_t>(
          std::max(static_cast<int64_t>(std::floor(t_of_x(a, x0, x0 + static_cast<float>(i + 1)))), ta + 1), 0, T);
      Column c{x0 + static_cast<float>(i) + 0.5f, 0, 0, 0};
      if (tb > ta && lod.range(ta, tb, std::max<int64_t>(1, (tb - ta) / 2), &c.mn, &c.mx, &c.mean)) out.push_back(c);
      else out.push_back({c.x, NAN, NAN, NAN});
    }
  } else {
    const int64_t t_lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(a.t_begin)));
    const int64_t t_hi = std::min<int64_t>(T, static_cast<int64_t>(std::ceil(t_of_x(a, x0, x1))) + 1);
    for (int64_t t = t_lo; t < t_hi; ++t) {
      const float v = (*lod.base)[static_cast<size_t>(t)];
      const float x = x_of_t(a, x0, static_cast<double>(t) + 0.5);
      out.push_back(std::isfinite(v) ? Column{x, v, v, v} : Column{x, NAN, NAN, NAN});
    }
  }
  return out;
}

// Joins the column means by a line (gaps at NaN; one polyline per run), the min..max as a
// faint one-pixel band.
void draw_columns(ImDrawList* dl, const std::vector<Column>& cols, float y0, float y1, float lo, float hi, ImU32 color,
                  bool envelope) {
  const auto y_of = [&](float v) { return strip_y(v, lo, hi, y0, y1); };
  std::vector<ImVec2> run;
  const auto flush = [&] {
    if (run.size() == 1) dl->AddLine(ImVec2(run[0].x - 0.5f, run[0].y), ImVec2(run[0].x + 0.5f, run[0].y), color, 1.2f);
    else if (run.size() > 1) dl->AddPolyline(run.data(), static_cast<int>(run.size()), color, ImDrawFlags_None, 1.2f);
    run.clear();
  };
  for (const Column& c : cols) {
    if (!std::isfinite(c.mean)) {
      flush();
      continue;
    }
    if (envelope && c.mx > c.mn)
      dl->AddRectFilled(ImVec2(c.x - 0.5f, y_of(c.mx)), ImVec2(c.x + 0.5f, y_of(c.mn)), palette::kEnvelope);
    run.emplace_back(c.x, y_of(c.mean));
  }
  flush();
}

// The values a series shows: its line, and with `envelope` its min..max band (a zoomed-out
// column's extremes lie outside its mean; without them the band ran off the strip).
void extend_range(const std::vector<Column>& cols, bool envelope, float* lo, float* hi) {
  for (const Column& c : cols)
    if (std::isfinite(c.mean)) {
      *lo = std::min(*lo, envelope ? c.mn : c.mean);
      *hi = std::max(*hi, envelope ? c.mx : c.mean);
    }
}

// Bucket means as steps, filled to the strip's bottom, or to zero for a difference.
void draw_buckets(ImDrawList* dl, const PositionAxis& a, float x0, float y0, float y1, float lo, float hi,
                  const analysis::BucketSeries& b, ImU32 color, bool from_zero = false) {
  const auto y_of = [&](float v) { return strip_y(v, lo, hi, y0, y1); };
  const float y_base = from_zero ? y_of(0.0f) : y1;
  for (size_t e = 0; e < b.mean.size(); ++e) {
    if (!std::isfinite(b.mean[e])) continue;
    const float xa = x_of_t(a, x0, static_cast<double>(b.edges[e])), xb = x_of_t(a, x0, static_cast<double>(b.edges[e + 1]));
    const float y = y_of(b.mean[e]);
    dl->AddRectFilled(ImVec2(xa, std::min(y, y_base)), ImVec2(xb, std::max(y, y_base)), (color & 0x00FFFFFFu) | 0x30000000u);
    dl->AddLine(ImVec2(xa, y), ImVec2(xb, y), color, 2.0f);
  }
}

// A difference curve's bucket means as steps from zero, the strip's y range [*lo, *hi] fitted
// to them (auto_y_range of the metric's domain, symmetric), with the zero line.
void draw_bucket_difference(ImDrawList* dl, const PositionAxis& a, float x0, float x1, float y0, float y1,
                            const std::string& name, const analysis::BucketSeries& diff, float* lo, float* hi) {
  float d_lo = INFINITY, d_hi = -INFINITY;
  for (const float x : diff.mean)
    if (std::isfinite(x)) d_lo = std::min(d_lo, x), d_hi = std::max(d_hi, x);
  const analysis::PositionMetricInfo* info = analysis::find_position_metric(name);
  analysis::auto_y_range(info ? info->range : analysis::PlotRange::data, true, d_lo, d_hi, lo, hi);
  const float yz = strip_y(0.0f, *lo, *hi, y0, y1);
  dl->AddLine(ImVec2(x0, yz), ImVec2(x1, yz), palette::kZeroLine);
  draw_buckets(dl, a, x0, y0, y1, *lo, *hi, diff, palette::kDiffLine, true);
}

void draw_toolbar(ViewerState* s, const analysis::PositionView& v) {
  MetricsViewState& m = s->metrics;
  ImGui::Checkbox("follow mask", &m.follow_mask);
  ImGui::SameLine();
  ImGui::Checkbox("auto y", &m.auto_range);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("y range from the visible values (else the whole sequence's)");
  ImGui::SameLine();
  if (s->compare.on || v.has_oracle) {
    ImGui::Checkbox(s->compare.on ? "shown - compared" : "router - oracle", &m.difference);
    ImGui::SameLine();
  }
  if (v.router.metrics.empty()) {
    ImGui::TextDisabled("stored bucket curves (per-position arrays not kept)");
  } else {
    ImGui::Checkbox("bucket means", &m.bucketed);
    if (m.bucketed) {
      ImGui::SameLine();
      ImGui::SetNextItemWidth(120);
      ImGui::SliderInt("buckets", &m.n_buckets, 1, 256);
    }
  }
  // The legend: the lines this panel draws, each named by its configuration.
  const analysis::ConfigKey* compared = s->compare.on && s->compared ? &s->compared->b->view.router.config : nullptr;
  const auto legend = [](ImU32 color, const std::string& text) {
    ImGui::SameLine();
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(color), "%s", text.c_str());
  };
  if (m.difference && (compared || v.has_oracle)) {
    legend(palette::kDiffLine, compared ? "line: " + config_label(v.router.config) + " - " + config_label(*compared)
                                        : "line: " + config_label(v.router.config) + " - oracle");
  } else {
    if (v.has_oracle) {
      ImGui::SameLine();
      ImGui::Checkbox("oracle overlay", &m.overlay_oracle);
    }
    legend(palette::kRouterLine, "line: " + config_label(v.router.config));
    if (compared) legend(palette::kCompareLine, "line: " + config_label(*compared) + " (compared)");
    if (v.has_oracle && m.overlay_oracle) {  // the shown configuration's oracle
      analysis::ConfigKey o = v.router.config;
      o.router = analysis::RouterKind::oracle;
      legend(palette::kOracleLine, "line: " + config_label(o));
    }
  }
  // One toggle per metric in the file, in analyze's order.
  bool first = true;
  for (const std::string& name : analysis::known_metric_names()) {
    if (!v.router.metric(name) && !v.router.bucket_curve(name)) continue;
    if (!first) ImGui::SameLine();
    first = false;
    bool on = std::find(m.shown.begin(), m.shown.end(), name) != m.shown.end();
    if (ImGui::Checkbox(metric_label(name), &on)) {
      if (on) {
        // Keep analyze's order.
        std::vector<std::string> next;
        for (const std::string& k : analysis::known_metric_names())
          if (k == name || std::find(m.shown.begin(), m.shown.end(), k) != m.shown.end()) next.push_back(k);
        m.shown = next;
      } else {
        m.shown.erase(std::remove(m.shown.begin(), m.shown.end(), name), m.shown.end());
      }
    }
  }
}

}  // namespace

void draw_metrics_panel(ViewerState* s, const PanelRect& r) {
  const bool open = begin_panel("Per-position metrics", r,
                                 ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  if (!open || !s->loaded.view) {
    ImGui::End();
    return;
  }
  const analysis::PositionView& v = *s->loaded.view;
  const LoadedView& l = s->loaded;
  draw_toolbar(s, v);

  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float x0 = origin.x + kPlotLeftMargin;
  const float w = std::max(10.0f, avail.x - kPlotLeftMargin - 4), x1 = x0 + w;
  const int64_t T = v.router.n_tokens;
  // The axis: the mask's, or the whole sequence.
  PositionAxis axis = s->axis;
  if (!s->metrics.follow_mask) axis = PositionAxis{};
  clamp_axis(&axis, T, w);

  // Without per-position arrays: the stored bucket curves (analyze's buckets).
  const bool stored_buckets = v.router.metrics.empty();
  std::vector<std::string> shown;
  for (const std::string& name : s->metrics.shown)
    if (stored_buckets ? v.router.bucket_curve(name) != nullptr : v.router.metric(name) != nullptr) shown.push_back(name);
  if (shown.empty()) {
    ImGui::TextDisabled(stored_buckets && v.router.bucket_curves.empty()
                            ? "no per-position data or bucket curves stored for this configuration"
                            : "no metric selected");
    ImGui::End();
    return;
  }
  const float total_h = std::max(40.0f, avail.y - 18.0f);
  const float strip_h = total_h / static_cast<float>(shown.size());
  ImGui::SetCursorScreenPos(ImVec2(x0, origin.y));
  ImGui::InvisibleButton("##metrics", ImVec2(w, total_h));
  const bool hovered = ImGui::IsItemHovered();
  bool clicked = false;
  if (s->metrics.follow_mask) {
    clicked = axis_mouse_input(&s->axis, T, x0, w, hovered);
    axis = s->axis;
    clamp_axis(&axis, T, w);
  } else if (hovered && ImGui::IsMouseReleased(ImGuiMouseButton_Left)) {
    clicked = true;
  }

  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImVec2 mp = ImGui::GetIO().MousePos;
  const int64_t hover_t = hovered ? std::clamp<int64_t>(static_cast<int64_t>(std::floor(t_of_x(axis, x0, mp.x))), 0, T - 1) : -1;
  const ViewData& d = *l.data;
  const CompareData* cmp = s->compare.on ? s->compared.get() : nullptr;
  const bool diff_mode = s->metrics.difference && (cmp || v.has_oracle);
  char buf[64];
  for (size_t i = 0; i < shown.size(); ++i) {
    const std::string& name = shown[i];
    const float y0 = origin.y + static_cast<float>(i) * strip_h + kStripGap, y1 = origin.y + (static_cast<float>(i) + 1) * strip_h;
    auto range = l.ranges.count(name) ? l.ranges.at(name) : std::pair<float, float>{0.0f, 1.0f};
    float lo = range.first, hi = range.second;
    dl->AddRectFilled(ImVec2(x0, y0), ImVec2(x1, y1), palette::kBackground);
    dl->PushClipRect(ImVec2(x0, y0), ImVec2(x1, y1), true);
    const bool overlay = v.has_oracle && s->metrics.overlay_oracle && overlay_makes_sense(name);
    const std::vector<float>* ov = overlay ? v.oracle.metric(name) : nullptr;
    if (ov && ov->empty()) ov = nullptr;
    // The bucket cache (update_viewer) lags a toggle made this frame by one frame.
    const auto cached = std::find(l.bucket_metrics.begin(), l.bucket_metrics.end(), name);
    const char* label = metric_label(name);
    std::string diff_label;
    // A strip of bucket curves holds every curve drawn in it: the range (the shown
    // configuration's) widened, within the metric's valid values, where the compared
    // configuration's or the oracle's means lie outside it.
    const auto fit_buckets = [&](std::initializer_list<const analysis::BucketSeries*> curves) {
      float a_lo = lo, a_hi = hi;
      for (const analysis::BucketSeries* b : curves)
        if (b)
          for (const float m : b->mean)
            if (std::isfinite(m)) a_lo = std::min(a_lo, m), a_hi = std::max(a_hi, m);
      if (a_lo >= lo && a_hi <= hi) return;
      const analysis::PositionMetricInfo* info = analysis::find_position_metric(name);
      analysis::auto_y_range(info ? info->range : analysis::PlotRange::data, false, a_lo, a_hi, &lo, &hi);
    };
    if (stored_buckets) {
      const analysis::BucketSeries& rb = *v.router.bucket_curve(name);
      // The other side: the compared configuration's curve, else the oracle's.
      const analysis::BucketSeries* other =
          cmp ? cmp->b->view.router.bucket_curve(name) : v.has_oracle ? v.oracle.bucket_curve(name) : nullptr;
      if (diff_mode && other && other->edges == rb.edges) {
        analysis::BucketSeries diff{rb.edges, std::vector<float>(rb.mean.size())};
        for (size_t e = 0; e < rb.mean.size(); ++e) diff.mean[e] = rb.mean[e] - other->mean[e];
        draw_bucket_difference(dl, axis, x0, x1, y0, y1, name, diff, &lo, &hi);
        diff_label = std::string(label) + (cmp ? ": shown - compared (bucket means)" : ": router - oracle (bucket means)");
        label = diff_label.c_str();
      } else {
        const analysis::BucketSeries* ob = cmp && overlay ? v.oracle.bucket_curve(name) : nullptr;
        fit_buckets({other && (cmp || overlay) ? other : nullptr, ob, &rb});
        if (other && (cmp || overlay))
          draw_buckets(dl, axis, x0, y0, y1, lo, hi, *other, cmp ? palette::kCompareLine : palette::kOracleLine);
        if (ob)  // the oracle beside the compared curve, as the legend says
          draw_buckets(dl, axis, x0, y0, y1, lo, hi, *ob, palette::kOracleLine);
        draw_buckets(dl, axis, x0, y0, y1, lo, hi, rb, palette::kRouterLine);
        if (diff_mode && other) {  // analyze's buckets start at each configuration's first choice
          diff_label = std::string(label) + " (bucket edges differ: no difference)";
          label = diff_label.c_str();
        }
      }
    } else if (s->metrics.bucketed && cached != l.bucket_metrics.end()) {
      // Bucket means of the per-position arrays (refresh_buckets): the difference curve's, or
      // the compared configuration's, the oracle's and the router's.
      const size_t k = static_cast<size_t>(cached - l.bucket_metrics.begin());
      const auto at = [&](const std::vector<analysis::BucketSeries>& b) -> const analysis::BucketSeries* {
        return k < b.size() && !b[k].mean.empty() ? &b[k] : nullptr;
      };
      if (diff_mode) {
        if (const analysis::BucketSeries* db = at(l.diff_buckets))
          draw_bucket_difference(dl, axis, x0, x1, y0, y1, name, *db, &lo, &hi);
        diff_label =
            std::string(label) + (cmp ? ": shown - compared (bucket means)" : ": router - oracle (bucket means)");
        label = diff_label.c_str();
      } else {
        const analysis::BucketSeries* cb = cmp ? at(l.compared_buckets) : nullptr;
        const analysis::BucketSeries* ob = ov ? at(l.oracle_buckets) : nullptr;
        const analysis::BucketSeries* rb = at(l.router_buckets);
        fit_buckets({cb, ob, rb});
        if (cb) draw_buckets(dl, axis, x0, y0, y1, lo, hi, *cb, palette::kCompareLine);
        if (ob) draw_buckets(dl, axis, x0, y0, y1, lo, hi, *ob, palette::kOracleLine);
        if (rb) draw_buckets(dl, axis, x0, y0, y1, lo, hi, *rb, palette::kRouterLine);
      }
    } else {
      // Per position, from the mipmaps: the series of this strip, then one y range for all.
      struct Drawn {
        std::vector<Column> cols;
        ImU32 color;
        bool envelope;
      };
      std::vector<Drawn> series;
      const auto lod_of = [](const std::map<std::string, analysis::SeriesLod>& m, const std::string& n) {
        auto it = m.find(n);
        return it == m.end() ? nullptr : &it->second;
      };
      if (diff_mode) {
        const analysis::SeriesLod* dl_lod = cmp ? lod_of(cmp->diff_lod, name) : lod_of(d.diff_lod, name);
        if (dl_lod) series.push_back({sample_series(*dl_lod, axis, x0, x1), palette::kDiffLine, true});
        diff_label = std::string(label) + (cmp ? ": shown - compared" : ": router - oracle");
        label = diff_label.c_str();
      } else {
        if (cmp)
          if (const analysis::SeriesLod* c = lod_of(cmp->b->router_lod, name))
            series.push_back({sample_series(*c, axis, x0, x1), palette::kCompareLine, false});
        if (ov)
          if (const analysis::SeriesLod* o = lod_of(d.oracle_lod, name))
            series.push_back({sample_series(*o, axis, x0, x1), palette::kOracleLine, false});
        if (const analysis::SeriesLod* r0 = lod_of(d.router_lod, name))
          series.push_back({sample_series(*r0, axis, x0, x1), palette::kRouterLine, true});
      }
      if (s->metrics.auto_range || diff_mode) {
        // Padded, within the metric's valid values (coverage stays in [0, 1]).
        float a_lo = INFINITY, a_hi = -INFINITY;
        for (const Drawn& sd : series) extend_range(sd.cols, sd.envelope, &a_lo, &a_hi);
        const analysis::PositionMetricInfo* info = analysis::find_position_metric(name);
        analysis::auto_y_range(info ? info->range : analysis::PlotRange::data, diff_mode, a_lo, a_hi, &lo, &hi);
      }
      if (diff_mode && lo < 0 && hi > 0) {
        const float yz = strip_y(0.0f, lo, hi, y0, y1);
        dl->AddLine(ImVec2(x0, yz), ImVec2(x1, yz), palette::kZeroLine);
      }
      for (const Drawn& sd : series) draw_columns(dl, sd.cols, y0, y1, lo, hi, sd.color, sd.envelope);
    }
    if (s->pinned_t >= 0) {
      const float px = x_of_t(axis, x0, static_cast<double>(s->pinned_t) + 0.5);
      dl->AddLine(ImVec2(px, y0), ImVec2(px, y1), palette::kPinned, 1.5f);
    }
    if (hover_t >= 0) {
      const float hx = x_of_t(axis, x0, static_cast<double>(hover_t) + 0.5);
      dl->AddLine(ImVec2(hx, y0), ImVec2(hx, y1), palette::kHover);
    }
    dl->PopClipRect();
    // Name inside the strip (top left, on a backing so that the curves do not hide it), range
    // on the left margin.
    const ImVec2 label_size = ImGui::CalcTextSize(label);
    dl->AddRectFilled(ImVec2(x0 + 2, y0 + 1), ImVec2(x0 + 6 + label_size.x, y0 + 1 + label_size.y),
                      palette::kLabelBacking);
    dl->AddText(ImVec2(x0 + 4, y0 + 1), palette::kAxisText, label);
    // The two range labels in a strip shorter than two lines get a smaller font (they printed
    // over each other and the next strip's).
    ImFont* font = ImGui::GetFont();
    const float fs = std::min(ImGui::GetFontSize(), std::max(7.0f, (y1 - y0) / 2.0f));
    const auto range_label = [&](float v, float y) {
      std::snprintf(buf, sizeof buf, "%.3g", v);
      const float tw = font->CalcTextSizeA(fs, FLT_MAX, 0.0f, buf).x;
      dl->AddText(font, fs, ImVec2(x0 - 4 - tw, y), palette::kAxisText, buf);
    };
    range_label(hi, y0);
    range_label(lo, y1 - fs);
  }
  const float y_axis = origin.y + total_h;
  draw_position_ticks(dl, axis, x0, w, y_axis, y_axis, T);

  if (hover_t >= 0 && !stored_buckets && !ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f)) {
    ImGui::BeginTooltip();
    ImGui::Text("t = %lld", static_cast<long long>(hover_t));
    for (const std::string& name : shown) {
      const float rv = (*v.router.metric(name))[static_cast<size_t>(hover_t)];
      const std::vector<float>* ov = v.has_oracle ? v.oracle.metric(name) : nullptr;
      if (ov && !ov->empty() && overlay_makes_sense(name))
        ImGui::Text("%-15s %9.4f   oracle %9.4f", metric_label(name), rv, (*ov)[static_cast<size_t>(hover_t)]);
      else
        ImGui::Text("%-15s %9.4f", metric_label(name), rv);
    }
    ImGui::EndTooltip();
  }
  if (clicked && hover_t >= 0) s->pinned_t = hover_t;
  ImGui::End();
}

}  // namespace moba::gui
