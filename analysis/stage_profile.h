#pragma once
// Wall seconds per named stage of `analyze --profile`, summed over heads, groups and worker
// threads: the GPU-resident analysis' stages (each ends with a device synchronisation) and the
// host's summary stages. Thread-safe; costs nothing unless the caller is profiling.
#include <chrono>
#include <string>

namespace moba::analysis {

void stage_profile_add(const std::string& stage, double seconds);

// "  stage  seconds" lines in stage-name order; empty when nothing was added.
std::string stage_profile_report();

// Adds the time since construction (or the last lap) to `stage` at each lap, when on.
class StageTimer {
 public:
  explicit StageTimer(bool on) : on_(on) {}
  void lap(const char* stage) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    stage_profile_add(stage, std::chrono::duration<double>(now - t_).count());
    t_ = now;
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point t_ = std::chrono::steady_clock::now();
};

}  // namespace moba::analysis
