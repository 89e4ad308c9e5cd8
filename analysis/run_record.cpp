#include "analysis/run_record.h"

#include <ctime>

namespace moba::analysis {

RunRecord make_run_record(const std::string& command, const std::string& git_commit,
                          const std::string& device) {
  RunRecord r;
  r.command = command;
  r.git_commit = git_commit;
  r.device = device;
  char buf[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  r.started_utc = buf;
  return r;
}

std::string to_json(const RunRecord& r) {
  JsonObject config;
  for (const auto& [k, v] : r.config) config.add_string(k, v);
  return JsonObject()
      .add_string("command", r.command)
      .add_string("git_commit", r.git_commit)
      .add_string("device", r.device)
      .add_string("started_utc", r.started_utc)
      .add_raw("config", config.str())
      .str();
}

}  // namespace moba::analysis
