// The viewer's window and frame loop (GLFW + OpenGL 3 + Dear ImGui): one ViewerState, updated
// and drawn once per frame, panels tiled to the window; optional headless screenshot.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "core/errors.h"
#include "gui/gui.h"
#include "gui/panels.h"
#include "gui/screenshot.h"
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

struct Layout {
  PanelRect navigator, mask, metrics, summary;
};

// Navigator on the left; mask, metrics and summary stacked on the right, so the mask and the
// metric strips share their position axis.
Layout tile(float w, float h) {
  Layout l;
  const float nav_w = std::clamp(w * 0.22f, 300.0f, 380.0f);
  const float right_w = std::max(100.0f, w - nav_w);
  const float mask_h = h * 0.44f, metrics_h = h * 0.32f;
  l.navigator = {0, 0, nav_w, h};
  l.mask = {nav_w, 0, right_w, mask_h};
  l.metrics = {nav_w, mask_h, right_w, metrics_h};
  l.summary = {nav_w, mask_h + metrics_h, right_w, h - mask_h - metrics_h};
  return l;
}

std::string title_for(const analysis::ResultsFile& file) { return "moba gui - " + file.h5_path(); }

}  // namespace

bool begin_panel(const char* title, const PanelRect& r, ImGuiWindowFlags extra) {
  ImGui::SetNextWindowPos(ImVec2(r.x, r.y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(r.w, r.h), ImGuiCond_Always);
  return ImGui::Begin(title, nullptr,
                      ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse | extra);
}

void run_viewer(const analysis::ResultsFile& file, const GuiOptions& options) {
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
  const bool screenshot = !options.screenshot.empty();

  Session session(options.width, options.height, title_for(file));
  glfwSwapInterval(screenshot ? 0 : 1);
  setup_style();

  const auto start = std::chrono::steady_clock::now();
  int settled_frames = 0;
  while (!glfwWindowShouldClose(session.window())) {
    // Idle while nothing happens; keep polling while a load runs.
    if (screenshot || viewer_busy(state)) glfwPollEvents();
    else glfwWaitEventsTimeout(0.25);
    update_viewer(&state);

    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    if (screenshot) {
      // A headless run sees no pointer unless one is asked for (to show the hover tooltip).
      ImGuiIO& io = ImGui::GetIO();
      io.MousePos = options.hover_x >= 0 ? ImVec2(options.hover_x, options.hover_y) : ImVec2(-FLT_MAX, -FLT_MAX);
    }
    ImGui::NewFrame();
    const ImVec2 size = ImGui::GetIO().DisplaySize;
    const Layout layout = tile(size.x, size.y);
    draw_navigator(&state, layout.navigator);
    draw_mask_panel(&state, layout.mask);
    draw_metrics_panel(&state, layout.metrics);
    draw_summary_panel(&state, layout.summary);
    ImGui::Render();

    int fb_w = 0, fb_h = 0;
    glfwGetFramebufferSize(session.window(), &fb_w, &fb_h);
    glViewport(0, 0, fb_w, fb_h);
    glClearColor(0.08f, 0.08f, 0.1f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

    if (screenshot) {
      if (!viewer_busy(state)) ++settled_frames;
      if (settled_frames >= options.frames) {
        write_png(options.screenshot, fb_w, fb_h, read_framebuffer(fb_w, fb_h));
        return;
      }
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > kScreenshotTimeoutSeconds)
        throw std::runtime_error("screenshot: loading " + file.h5_path() + " did not finish in time");
    }
    glfwSwapBuffers(session.window());
  }
}

}  // namespace moba::gui
