#include "analysis/run_record.h"

#include <ctime>
#include <filesystem>
#include <system_error>

#include "core/sha256.h"

namespace moba::analysis {

std::string utc_now() {
  char buf[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

RunRecord make_run_record(const std::string& command, const std::string& git_commit,
                          const std::string& device) {
  RunRecord r;
  r.command = command;
  r.git_commit = git_commit;
  r.device = device;
  r.started_utc = utc_now();
  return r;
}

void RunRecord::set_strings(const std::string& key, const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const auto& v : values) items.push_back(json_string(v));
  config[key] = json_array(items);
}

void RunRecord::set_numbers(const std::string& key, const std::vector<double>& values) {
  std::vector<std::string> items;
  for (const double v : values) items.push_back(json_number(v));
  config[key] = json_array(items);
}

void record_input(RunRecord& r, const std::string& path) { record_input(r, path, sha256_file(path)); }

void record_input(RunRecord& r, const std::string& path, const std::string& sha256) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  r.input_path = ec ? path : abs.lexically_normal().string();
  r.input_sha256 = sha256;
  const auto size = fs::file_size(path, ec);
  r.input_size = ec ? -1 : static_cast<int64_t>(size);
}

std::string to_json(const RunRecord& r) {
  JsonObject config;
  for (const auto& [k, v] : r.config) config.add_raw(k, v);
  JsonObject o;
  o.add_string("command", r.command)
      .add_string("git_commit", r.git_commit)
      .add_string("device", r.device)
      .add_string("started_utc", r.started_utc);
  if (!r.input_sha256.empty())
    o.add_raw("input", JsonObject()
                           .add_string("path", r.input_path)
                           .add_integer("size", r.input_size)
                           .add_string("sha256", r.input_sha256)
                           .str());
  return o.add_raw("config", config.str()).str();
}

}  // namespace moba::analysis
