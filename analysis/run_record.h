#pragma once
// What every run records beside its outputs: tool version, git commit, device, time, and
// the resolved configuration (key -> value, as given or defaulted).
#include <map>
#include <string>

#include "core/json_writer.h"

namespace moba::analysis {

struct RunRecord {
  std::string command;                      // e.g. "analyze"
  std::string git_commit;                   // commit the binary was built from
  std::string device;                       // "cpu (2 threads)" or the GPU's name
  std::string started_utc;                  // ISO 8601
  std::map<std::string, std::string> config;
};

RunRecord make_run_record(const std::string& command, const std::string& git_commit,
                          const std::string& device);
// One JSON object (core/json_writer.h JsonObject): command, git_commit, device, started_utc,
// then config as an object of strings, keys sorted.
std::string to_json(const RunRecord& r);

}  // namespace moba::analysis
