#include "analysis/stage_profile.h"

#include <cstdio>
#include <map>
#include <mutex>

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

}  // namespace moba::analysis
