#pragma once
// Wall seconds per named stage of `analyze --profile`, summed over heads, groups and worker
// threads: the GPU-resident analysis' stages (each ends with a device synchronisation) and the
// host's summary stages. Thread-safe; costs nothing unless the caller is profiling.
//
// `analyze --trace FILE`: the same stages as intervals on a timeline, per thread, written as a
// Chrome trace (JSON "traceEvents", opened by Perfetto or chrome://tracing), with what each
// interval was about (a group, a head). Tracing adds no device synchronisation: without
// --profile the GPU shows as one interval per head, from its first enqueue to the end of its
// reductions (which wait for the head's device work).
#include <chrono>
#include <string>

namespace moba::analysis {

using StageClockPoint = std::chrono::steady_clock::time_point;

void stage_profile_add(const std::string& stage, double seconds);

// "  stage  seconds" lines in stage-name order; empty when nothing was added.
std::string stage_profile_report();

// Starts recording intervals (the trace's time 0 is this call); idempotent.
void stage_trace_start();
bool stage_trace_on();
// Names the calling thread in the trace (else it is named after the first stage it records).
void stage_trace_name_thread(const std::string& name);
// One interval of the calling thread; `detail` (may be empty) names what it was about.
void stage_trace_add(const std::string& stage, const std::string& detail, StageClockPoint begin, StageClockPoint end);
// The recorded intervals as a Chrome trace: {"traceEvents": [...], "displayTimeUnit": "ms"}.
std::string stage_trace_json();

// At each lap, the time since construction (or the last lap): added to `stage` when profiling,
// recorded as an interval when tracing.
class StageTimer {
 public:
  explicit StageTimer(bool on) : on_(on) {}
  void lap(const char* stage, const std::string& detail = std::string()) {
    if (!on_ && !stage_trace_on()) return;
    const auto now = std::chrono::steady_clock::now();
    if (on_) stage_profile_add(stage, std::chrono::duration<double>(now - t_).count());
    stage_trace_add(stage, detail, t_, now);
    t_ = now;
  }

 private:
  bool on_;
  StageClockPoint t_ = std::chrono::steady_clock::now();
};

}  // namespace moba::analysis
