#include "analysis/run_record.h"

#include <cstdio>
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

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string to_json(const RunRecord& r) {
  std::string s = "{\"command\": \"" + json_escape(r.command) + "\", \"git_commit\": \"" +
                  json_escape(r.git_commit) + "\", \"device\": \"" + json_escape(r.device) +
                  "\", \"started_utc\": \"" + json_escape(r.started_utc) + "\", \"config\": {";
  bool first = true;
  for (const auto& [k, v] : r.config) {
    s += (first ? "\"" : ", \"") + json_escape(k) + "\": \"" + json_escape(v) + "\"";
    first = false;
  }
  return s + "}}";
}

}  // namespace moba::analysis
