// The viewer's window and frame loop (GLFW + OpenGL 3 + Dear ImGui): one ViewerState, updated
// and drawn once per frame, panels tiled to the window; optional headless screenshot.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <sys/resource.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.h"
#include "gui/gui.h"
#include "gui/panels.h"
#include "gui/screenshot.h"
#include "gui/tile_cache.h"
#include "gui/viewer_state.h"

namespace moba::gui {

namespace {

constexpr const char* kFontPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
constexpr float kFontSize = 15.0f;
constexpr double kScreenshotTimeoutSeconds = 120.0;

// Owns GLFW, the window and the ImGui context for the duration of run_viewer, so an exception
// anywhere tears everything down in order.
class Session {
 public:
  Session(int width, int height, const std::string& title) {
    if (!glfwInit()) throw std::runtime_error("cannot initialise GLFW: " + last_glfw_error() + " (no display? run under xvfb-run)");
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    window_ = glfwCreateWindow(width, height, title.c_str(), nullptr, nullptr);
    if (!window_) {
      const std::string why = last_glfw_error();
      glfwTerminate();
      throw std::runtime_error("cannot open an OpenGL 3 window: " + why);
    }
    glfwMakeContextCurrent(window_);
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui_ImplGlfw_InitForOpenGL(window_, true);
    ImGui_ImplOpenGL3_Init("#version 130");
  }
  ~Session() {
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(window_);
    glfwTerminate();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  GLFWwindow* window() const { return window_; }

 private:
  static std::string last_glfw_error() {
    const char* desc = nullptr;
    glfwGetError(&desc);
    return desc ? desc : "unknown GLFW error";
  }
  GLFWwindow* window_ = nullptr;
};

void setup_style() {
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // the layout is tiled from the window size every frame
  if (std::filesystem::exists(kFontPath)) io.Fonts->AddFontFromFileTTF(kFontPath, kFontSize);
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  style.WindowRounding = 0;
  style.FrameRounding = 2;
  style.WindowPadding = ImVec2(8, 6);
  style.ItemSpacing = ImVec2(8, 4);
}

// Navigator on the left; the chosen panels stacked on the right, heights by their weights
// (dragging the gap between two panels moves weight from one to the other), so the mask and
// the metric strips share their position axis. When a panel would get less than its least
// readable height (kMinHeight) by its weight, or five or six panels are shown (each a sliver
// of any common screen's height in one stack), the right side splits in two stacks: the mask
// and the metrics (which share the position axis) on the left, the tables and grids on the right.
constexpr float kSplitter = 6.0f;
constexpr float kMinHeight[kPanelCount] = {220.0f, 170.0f, 140.0f, 150.0f, 120.0f, 140.0f};

struct Layout {
  PanelRect navigator;
  std::vector<std::pair<Panel, PanelRect>> column;  // stacks left to right, each top to bottom
  std::vector<int> stack;                           // [i]: the stack of column[i]
};

// `panels` stacked in [x, x + w) x [0, h).
void stack_panels(const LayoutState& ls, const std::vector<Panel>& panels, float x, float w, float h, int id,
                  Layout* l) {
  float total = 0;
  for (const Panel p : panels) total += ls.weight[static_cast<int>(p)];
  const float usable = h - kSplitter * static_cast<float>(std::max<size_t>(1, panels.size()) - 1);
  float y = 0;
  for (const Panel p : panels) {
    const float ph = usable * ls.weight[static_cast<int>(p)] / std::max(total, 1e-3f);
    l->column.push_back({p, {x, y, w, ph}});
    l->stack.push_back(id);
    y += ph + kSplitter;
  }
}

Layout tile(const LayoutState& ls, float w, float h) {
  Layout l;
  const float nav_w = std::clamp(w * 0.22f, 296.0f, 380.0f);
  const float right_w = std::max(100.0f, w - nav_w);
  l.navigator = {0, 0, nav_w, h};
  float total = 0;
  for (const Panel p : ls.shown) total += ls.weight[static_cast<int>(p)];
  const float usable = h - kSplitter * static_cast<float>(std::max<size_t>(1, ls.shown.size()) - 1);
  bool cramped = ls.shown.size() > 4;
  for (const Panel p : ls.shown)
    cramped |= usable * ls.weight[static_cast<int>(p)] / std::max(total, 1e-3f) < kMinHeight[static_cast<int>(p)];
  std::vector<Panel> axis_panels, others;
  for (const Panel p : ls.shown) (p == Panel::mask || p == Panel::metrics ? axis_panels : others).push_back(p);
  if (!cramped || axis_panels.empty() || others.empty()) {
    stack_panels(ls, ls.shown, nav_w, right_w, h, 0, &l);
    return l;
  }
  const float left_w = std::floor(right_w * 0.6f);
  stack_panels(ls, axis_panels, nav_w, left_w - kSplitter, h, 0, &l);
  stack_panels(ls, others, nav_w + left_w, right_w - left_w, h, 1, &l);
  return l;
}

// The gaps between stacked panels: drag to resize (weights move between the two neighbours).
void draw_splitters(LayoutState* ls, const Layout& l) {
  for (size_t i = 0; i + 1 < l.column.size(); ++i) {
    if (l.stack[i] != l.stack[i + 1]) continue;  // the last of one stack, the first of the next
    const PanelRect& a = l.column[i].second;
    ImGui::SetNextWindowPos(ImVec2(a.x, a.y + a.h), ImGuiCond_Always);
    ImGui::SetNextWindowSize(ImVec2(a.w, kSplitter), ImGuiCond_Always);
    ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(0, 0));
    ImGui::PushStyleVar(ImGuiStyleVar_WindowMinSize, ImVec2(1, 1));
    const std::string id = "##split" + std::to_string(i);
    ImGui::Begin(id.c_str(), nullptr,
                 ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoSavedSettings |
                     ImGuiWindowFlags_NoBackground);
    ImGui::InvisibleButton("##grip", ImVec2(a.w, kSplitter));
    const bool active = ImGui::IsItemActive();
    if (ImGui::IsItemHovered() || active) ImGui::SetMouseCursor(ImGuiMouseCursor_ResizeNS);
    ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(a.x, a.y + a.h + 2), ImVec2(a.x + a.w, a.y + a.h + kSplitter - 2),
                                              active ? palette::kPinned : palette::kGrid);
    if (active && ImGui::GetIO().MouseDelta.y != 0.0f) {
      float& wa = ls->weight[static_cast<int>(l.column[i].first)];
      float& wb = ls->weight[static_cast<int>(l.column[i + 1].first)];
      const float per_px = wa / std::max(1.0f, a.h);
      const float dw = ImGui::GetIO().MouseDelta.y * per_px;
      if (wa + dw > 0.2f && wb - dw > 0.2f) wa += dw, wb -= dw;
    }
    ImGui::End();
    ImGui::PopStyleVar(2);
  }
}

void draw_panel(ViewerState* s, Panel p, const PanelRect& r, const MaskTiles& tiles) {
  switch (p) {
    case Panel::mask: draw_mask_panel(s, r, tiles); break;
    case Panel::metrics: draw_metrics_panel(s, r); break;
    case Panel::summary: draw_summary_panel(s, r); break;
    case Panel::overview: draw_overview_panel(s, r); break;
    case Panel::configs: draw_configs_panel(s, r); break;
    case Panel::snr: draw_snr_panel(s, r); break;
    case Panel::count_: break;
  }
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// The timing run (GuiOptions::timing): a zoom from the whole sequence into a target range and
// back, one step per settled view; a step whose tile level differs from the last one times
// how long the new level's visible tiles take.
struct ZoomSweep {
  int n_steps = 0;       // steps in (and as many out)
  int step = -1;         // -1: not started
  double t_whole = 0, k_whole = 0;
  double t_begin = 0, t_span = 0, k_begin = 0, k_span = 0;  // target
  int last_lx = -1, last_ly = -1;
  bool level_pending = false;
  std::chrono::steady_clock::time_point level_start;
  std::vector<double> level_ms;
};

void apply_sweep_step(ZoomSweep* z, ViewerState* s) {
  const int i = z->step <= z->n_steps ? z->step : 2 * z->n_steps - z->step;
  const double f = static_cast<double>(i) / std::max(1, z->n_steps);
  const auto place = [&](PositionAxis* a, double whole, double begin, double span) {
    const double cur = whole * std::pow(span / whole, f);
    a->t_begin = whole > span ? begin * (whole - cur) / (whole - span) : 0.0;
    a->t_per_px = cur / std::max(1.0f, a->plot_width);
  };
  place(&s->axis, z->t_whole, z->t_begin, z->t_span);
  place(&s->key_axis, z->k_whole, z->k_begin, z->k_span);
}

std::string title_for(const analysis::ResultsFile& file) { return "moba gui - " + file.h5_path(); }

}  // namespace

bool begin_panel(const char* title, const PanelRect& r, ImGuiWindowFlags extra) {
  ImGui::SetNextWindowPos(ImVec2(r.x, r.y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(r.w, r.h), ImGuiCond_Always);
  return ImGui::Begin(title, nullptr,
                      ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse | extra);
}

bool begin_summary_panel(const char* title, const PanelRect& r, const ViewerState& s, ImGuiWindowFlags extra) {
  if (!begin_panel(title, r, extra)) {
    ImGui::End();
    return false;
  }
  if (!s.file->has_summary()) {
    ImGui::TextDisabled("no summary.csv beside %s", s.file->h5_path().c_str());
    ImGui::End();
    return false;
  }
  return true;
}

void run_viewer(const analysis::ResultsFile& file, const GuiOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  validate_view(file, options);
  ViewerState state;
  if (!init_viewer(&state, file, options.initial))
    throw UsageError(file.h5_path() + " has no configuration matching the given --layer/--head/--block-size/--top-k/--router");
  state.pinned_t = options.query;
  if (options.buckets > 0) {
    state.metrics.bucketed = true;
    state.metrics.n_buckets = options.buckets;
  }
  state.axis.request_begin = static_cast<double>(options.t_begin);
  state.axis.request_end = static_cast<double>(options.t_end);
  const double B = static_cast<double>(state.selection.block_size);
  state.key_axis.request_begin = static_cast<double>(options.b_begin) * B;
  state.key_axis.request_end = static_cast<double>(options.b_end) * B;
  if (options.compare) {
    state.compare.on = true;
    state.compare.key = state.selection;
    if (options.compare_with.block_size > 0) state.compare.key.block_size = options.compare_with.block_size;
    if (options.compare_with.top_k > 0) state.compare.key.top_k = options.compare_with.top_k;
    if (!options.compare_with.any_router) state.compare.key.router = options.compare_with.router;
    state.compare.difference = options.compare_difference;
  }
  if (!options.panels.empty()) {
    state.layout.shown.clear();
    for (const std::string& name : options.panels) {
      Panel p;
      if (parse_panel(name, &p)) state.layout.shown.push_back(p);
    }
  }
  if (!options.metric.empty()) state.overview.metric = options.metric;
  state.mask.planted = options.planted;
  state.mask.cells = options.cells;
  if (!options.metrics.empty()) state.metrics.shown = options.metrics;
  state.metrics.difference = options.difference_curves;
  const bool screenshot = !options.screenshot.empty();
  const bool headless = screenshot || options.timing;

  Session session(options.width, options.height, title_for(file));
  glfwSwapInterval(headless ? 0 : 1);
  setup_style();
  // Tile workers: all cores but the GUI thread's, at least two (the GUI thread mostly waits
  // while a level builds).
  const int n_workers = std::max(2, static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 2u, 5u)) - 1);
  TileCache shown_tiles(n_workers), compared_tiles(n_workers);
  const MaskTiles tiles{&shown_tiles, &compared_tiles};

  int settled_frames = 0;
  double open_ms = -1;
  std::vector<double> frame_ms, build_frame_ms;  // with and without the GL submission
  ZoomSweep sweep;
  const auto tiles_busy = [&] {
    const bool mask_shown = std::find(state.layout.shown.begin(), state.layout.shown.end(), Panel::mask) != state.layout.shown.end();
    return mask_shown && state.loaded.view && state.loaded.view->has_mask && (shown_tiles.busy() || compared_tiles.busy());
  };
  while (!glfwWindowShouldClose(session.window())) {
    // Idle while nothing happens; while a load or a tile build runs, redraw at most every
    // 8 ms, so the frame loop (and a software rasteriser under Xvfb) leaves the cores to the
    // workers; a headless run settled on a view draws back to back.
    if (viewer_busy(state) || shown_tiles.busy() || compared_tiles.busy()) glfwWaitEventsTimeout(0.008);
    else if (headless) glfwPollEvents();
    else glfwWaitEventsTimeout(0.25);
    const auto frame_start = std::chrono::steady_clock::now();
    update_viewer(&state);
    shown_tiles.upload();
    compared_tiles.upload();

    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    if (headless) {
      // A headless run sees no pointer unless one is asked for (to show the hover tooltip).
      ImGuiIO& io = ImGui::GetIO();
      io.MousePos = options.hover_x >= 0 ? ImVec2(options.hover_x, options.hover_y) : ImVec2(-FLT_MAX, -FLT_MAX);
    }
    ImGui::NewFrame();
    const ImVec2 size = ImGui::GetIO().DisplaySize;
    const Layout layout = tile(state.layout, size.x, size.y);
    // Each drawn mask plot states the tiles it needs; a cache no plot uses this frame (mask
    // hidden, or one mask in the difference view) builds nothing more.
    shown_tiles.want({});
    compared_tiles.want({});
    draw_navigator(&state, layout.navigator);
    for (const auto& [panel, rect] : layout.column) draw_panel(&state, panel, rect, tiles);
    draw_splitters(&state.layout, layout);
    ImGui::Render();
    const auto t_built = std::chrono::steady_clock::now();

    int fb_w = 0, fb_h = 0;
    glfwGetFramebufferSize(session.window(), &fb_w, &fb_h);
    glViewport(0, 0, fb_w, fb_h);
    glClearColor(0.08f, 0.08f, 0.1f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - frame_start).count();
    const double build_ms = std::chrono::duration<double, std::milli>(t_built - frame_start).count();

    if (headless) {
      const bool busy = viewer_busy(state) || tiles_busy();
      if (!busy && open_ms < 0) {
        open_ms = options.opened_ms + std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        std::printf("moba gui: open %.0f ms (reading the file list %.0f ms, loading the configuration %.0f ms), %d tile workers\n",
                    open_ms, options.opened_ms, state.loaded.data ? state.loaded.data->load_ms : 0.0, n_workers);
      }
      if (open_ms >= 0) frame_ms.push_back(ms), build_frame_ms.push_back(build_ms);
      if (options.timing && open_ms >= 0 && state.loaded.view) {
        if (sweep.step < 0) {
          // Target: the requested ranges, else 1000x into the middle on both axes.
          sweep.n_steps = std::max(1, options.frames / 2);
          sweep.t_whole = static_cast<double>(state.loaded.view->router.n_tokens);
          sweep.k_whole = static_cast<double>(state.loaded.view->router.n_blocks) * B;
          sweep.t_span = options.t_end > options.t_begin ? static_cast<double>(options.t_end - options.t_begin) : sweep.t_whole / 1000;
          sweep.t_begin = options.t_end > options.t_begin ? static_cast<double>(options.t_begin) : 0.5 * (sweep.t_whole - sweep.t_span);
          sweep.k_span = options.b_end > options.b_begin ? static_cast<double>(options.b_end - options.b_begin) * B : std::max(B, sweep.k_whole / 1000);
          sweep.k_begin = options.b_end > options.b_begin ? static_cast<double>(options.b_begin) * B : 0.5 * (sweep.k_whole - sweep.k_span);
          sweep.step = 0;
          shown_tiles.take_stats();
          apply_sweep_step(&sweep, &state);
        } else {
          if (sweep.level_pending && !tiles_busy()) {
            sweep.level_pending = false;
            sweep.level_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sweep.level_start).count());
          }
          if (!sweep.level_pending && !tiles_busy()) {
            if (++sweep.step > 2 * sweep.n_steps) {
              const TileStats st = shown_tiles.take_stats();
              std::printf("moba gui: %zu frames, CPU frame time (update, panels, draw lists) median %.2f ms, p90 %.2f ms, "
                          "max %.2f ms; with the OpenGL submission median %.2f ms, p90 %.2f ms\n",
                          frame_ms.size(), percentile(build_frame_ms, 0.5), percentile(build_frame_ms, 0.9),
                          percentile(build_frame_ms, 1.0), percentile(frame_ms, 0.5), percentile(frame_ms, 0.9));
              std::printf("moba gui: %zu tiles built, build time median %.1f ms, max %.1f ms\n", st.build_ms.size(),
                          percentile(st.build_ms, 0.5), percentile(st.build_ms, 1.0));
              std::printf("moba gui: %zu new tile levels, visible tiles ready in median %.1f ms, max %.1f ms\n",
                          sweep.level_ms.size(), percentile(sweep.level_ms, 0.5), percentile(sweep.level_ms, 1.0));
              std::printf("moba gui: peak RSS %.0f MiB, %zu tile textures held\n", peak_rss_mib(), shown_tiles.n_textures());
              std::fflush(stdout);
              return;
            }
            apply_sweep_step(&sweep, &state);
          }
        }
        if (!sweep.level_pending && (state.mask.level_x != sweep.last_lx || state.mask.level_y != sweep.last_ly)) {
          sweep.last_lx = state.mask.level_x;
          sweep.last_ly = state.mask.level_y;
          if (tiles_busy()) {
            sweep.level_pending = true;
            sweep.level_start = frame_start;
          }
        }
      }
      if (screenshot && !options.timing) {
        if (!busy) ++settled_frames;
        if (settled_frames >= options.frames) {
          write_png(options.screenshot, fb_w, fb_h, read_framebuffer(fb_w, fb_h));
          std::printf("moba gui: %zu frames, CPU frame time median %.2f ms (%.2f ms with the OpenGL submission); peak RSS %.0f MiB\n",
                      frame_ms.size(), percentile(build_frame_ms, 0.5), percentile(frame_ms, 0.5), peak_rss_mib());
          return;
        }
      }
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > kScreenshotTimeoutSeconds)
        throw std::runtime_error("screenshot: loading " + file.h5_path() + " did not finish in time");
    }
    glfwSwapBuffers(session.window());
  }
}

}  // namespace moba::gui
