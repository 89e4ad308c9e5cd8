#include "analysis/stage_profile.h"

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "core/json_writer.h"

namespace moba::analysis {
namespace {

std::mutex& profile_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, double>& profile_seconds() {
  static std::map<std::string, double> s;
  return s;
}

struct TraceEvent {
  std::string name;
  int thread = 0;
  double begin_us = 0, dur_us = 0;
};
std::atomic<bool> g_trace_on{false};
StageClockPoint g_trace_t0;
std::vector<TraceEvent>& trace_events() {
  static std::vector<TraceEvent> e;
  return e;
}
// Threads numbered in the order they first record an interval (1 = the first).
int trace_thread() {
  static std::atomic<int> next{1};
  thread_local const int id = next++;
  return id;
}

std::map<int, std::string>& thread_names() {
  static std::map<int, std::string> n;
  return n;
}

}  // namespace

void stage_profile_add(const std::string& stage, double seconds) {
  std::lock_guard<std::mutex> lock(profile_mutex());
  profile_seconds()[stage] += seconds;
}

std::string stage_profile_report() {
  std::lock_guard<std::mutex> lock(profile_mutex());
  std::string out;
  char line[160];
  for (const auto& [stage, sec] : profile_seconds()) {
    std::snprintf(line, sizeof line, "  %-36s %9.3f s\n", stage.c_str(), sec);
    out += line;
  }
  return out;
}

void stage_trace_start() {
  std::lock_guard<std::mutex> lock(profile_mutex());
  if (g_trace_on.load()) return;
  g_trace_t0 = std::chrono::steady_clock::now();
  g_trace_on.store(true);
}

bool stage_trace_on() { return g_trace_on.load(std::memory_order_relaxed); }

void stage_trace_name_thread(const std::string& name) {
  const int id = trace_thread();
  std::lock_guard<std::mutex> lock(profile_mutex());
  thread_names()[id] = name;
}

void stage_trace_add(const std::string& stage, const std::string& detail, StageClockPoint begin, StageClockPoint end) {
  if (!stage_trace_on()) return;
  TraceEvent e;
  e.name = detail.empty() ? stage : stage + " (" + detail + ")";
  e.thread = trace_thread();
  std::lock_guard<std::mutex> lock(profile_mutex());
  e.begin_us = std::chrono::duration<double, std::micro>(begin - g_trace_t0).count();
  e.dur_us = std::chrono::duration<double, std::micro>(end - begin).count();
  trace_events().push_back(std::move(e));
}

std::string stage_trace_json() {
  std::lock_guard<std::mutex> lock(profile_mutex());
  // The origin on the steady clock (CLOCK_MONOTONIC on Linux), so that other timelines of the
  // same run (tests/gpu/kernel_trace.cpp: the GPU's kernels) can be laid beside this one.
  const long long origin_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(g_trace_t0.time_since_epoch()).count();
  std::string out = "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"steady_clock_origin_ns\": " +
                    std::to_string(origin_ns) + "}, \"traceEvents\": [\n";
  char num[96];
  bool first = true;
  // Each thread named after the first stage it recorded (its role: reader, GPU, summaries).
  std::map<int, std::string> names = thread_names();
  for (const TraceEvent& e : trace_events())
    if (!names.count(e.thread)) names[e.thread] = e.name.substr(0, e.name.find(" ("));
  for (const auto& [thread, name] : names) {
    out += first ? "  " : ",\n  ";
    out += "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": " + std::to_string(thread) +
           ", \"args\": {\"name\": " + json_string(std::to_string(thread) + ": " + name) + "}}";
    first = false;
  }
  for (const TraceEvent& e : trace_events()) {
    std::snprintf(num, sizeof num, "\"ts\": %.1f, \"dur\": %.1f, \"pid\": 1, \"tid\": %d}", e.begin_us, e.dur_us,
                  e.thread);
    out += first ? "  " : ",\n  ";
    out += "{\"name\": " + json_string(e.name) + ", \"ph\": \"X\", " + num;
    first = false;
  }
  return out + "\n]}\n";
}

}  // namespace moba::analysis
