#pragma once
// What every run records beside its outputs: tool version, git commit, device, time, and
// the resolved configuration (key -> value, as given or defaulted).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/json_writer.h"

namespace moba::analysis {

struct RunRecord {
  std::string command;                      // e.g. "analyze"
  std::string git_commit;                   // commit the binary was built from (+ "-dirty")
  std::string device;                       // "cpu (2 threads)" or the GPU's name
  std::string started_utc;                  // ISO 8601
  // The input file: absolute path, size in bytes, SHA-256 (core/sha256.h); empty when none.
  std::string input_path, input_sha256;
  int64_t input_size = -1;
  // The resolved configuration: key -> a JSON value (string, number, array), so scripts read
  // numbers as numbers. Written with keys sorted.
  std::map<std::string, std::string> config;

  void set_string(const std::string& key, const std::string& value) { config[key] = json_string(value); }
  void set_number(const std::string& key, double value) { config[key] = json_number(value); }
  void set_strings(const std::string& key, const std::vector<std::string>& values);
  void set_numbers(const std::string& key, const std::vector<double>& values);
};

// Now, as ISO 8601 UTC to the second ("2026-12-03T05:02:02Z").
std::string utc_now();

RunRecord make_run_record(const std::string& command, const std::string& git_commit,
                          const std::string& device);
// Records `path` as the run's input: its absolute path, size and SHA-256 (reads the file
// once). Throws FileNotFoundError when it cannot be read.
void record_input(RunRecord& r, const std::string& path);
// The same with the file's SHA-256 already computed (e.g. on another thread during the run).
void record_input(RunRecord& r, const std::string& path, const std::string& sha256);
// One JSON object (core/json_writer.h JsonObject): command, git_commit, device, started_utc,
// input {path, size, sha256} when recorded, then config, keys sorted.
std::string to_json(const RunRecord& r);

}  // namespace moba::analysis
