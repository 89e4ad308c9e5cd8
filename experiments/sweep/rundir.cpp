#include "experiments/sweep/rundir.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "analysis/report.h"
#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/json_writer.h"

namespace fs = std::filesystem;

namespace moba::sweep {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (const char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}


std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (const char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

const char* const kTsvHeader = "index\tid\thash\tdump\tdump_sha256\tbudget_mode\tbudget_target\targs";
const char* const kSweepColumns = "job,dump,dump_sha256,budget_mode,budget_target,attended_keys_mean";

}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string job_dir(const std::string& dir, const Job& j) { return (fs::path(dir) / "jobs" / j.id).string(); }
std::string job_log(const std::string& dir, const Job& j) { return (fs::path(dir) / "logs" / (j.id + ".log")).string(); }

bool job_done(const std::string& dir, const std::string& id, const std::string& hash) {
  return read_file((fs::path(dir) / "jobs" / id / "DONE").string()) == hash + "\n";
}

void mark_done(const std::string& dir, const Job& j) {
  const fs::path jd = job_dir(dir, j);
  std::vector<std::string> args;
  for (const auto& a : j.args) args.push_back(json_string(a));
  write_file_atomic((jd / "job.json").string(), JsonObject()
                                                .add_string("job", j.id)
                                                .add_integer("index", j.index)
                                                .add_string("hash", j.hash)
                                                .add_string("dump", j.dump)
                                                .add_string("dump_sha256", j.dump_sha256)
                                                .add_string("budget_mode", j.budget_mode)
                                                .add_string("budget_target", j.budget_target)
                                                .add_raw("args", json_array(args))
                                                .str() +
                                                "\n");
  write_file_atomic((jd / "DONE").string(), j.hash + "\n");
}

void clear_job(const std::string& dir, const Job& j) {
  const fs::path jobs = fs::path(dir) / "jobs";
  std::error_code ec;
  if (!fs::exists(jobs)) return;
  for (const auto& e : fs::directory_iterator(jobs, ec)) {
    const std::string name = e.path().filename().string();
    if (name == j.id || name.rfind(j.id + ".", 0) == 0) fs::remove_all(e.path(), ec);
  }
}

std::string jobs_tsv(const std::vector<Job>& jobs) {
  std::string s = std::string(kTsvHeader) + "\n";
  for (const auto& j : jobs) {
    std::string args;
    for (const auto& a : j.args) args += (args.empty() ? "" : " ") + a;
    s += std::to_string(j.index) + "\t" + j.id + "\t" + j.hash + "\t" + j.dump_name + "\t" + j.dump_sha256 + "\t" +
         j.budget_mode + "\t" + j.budget_target + "\t" + args + "\n";
  }
  return s;
}

CollectResult collect(const std::string& dir) {
  const std::string tsv_path = (fs::path(dir) / "jobs.tsv").string();
  const std::string tsv = read_file(tsv_path);
  const auto tsv_lines = lines_of(tsv);
  if (tsv_lines.empty() || tsv_lines[0] != kTsvHeader)
    throw FileNotFoundError(tsv_path, "", "not a `moba sweep` run directory (jobs.tsv is missing or unreadable)");
  CollectResult res;
  std::string header;
  std::vector<std::string> rows;
  for (size_t i = 1; i < tsv_lines.size(); ++i) {
    const auto f = split(tsv_lines[i], '\t');
    if (f.size() != 8) throw FormatError(tsv_path, "line " + std::to_string(i + 1), "expected 8 tab-separated fields");
    const std::string &id = f[1], &hash = f[2];
    ++res.n_jobs;
    if (!job_done(dir, id, hash)) {
      res.missing.push_back(id);
      continue;
    }
    ++res.n_done;
    const fs::path jd = fs::path(dir) / "jobs" / id;
    for (const char* table : {"summary.csv", "aggregate.csv"}) {
      const std::string path = (jd / table).string();
      const auto lines = lines_of(read_file(path));
      if (lines.empty()) throw FormatError(path, "", "a done job's table is missing or empty");
      if (header.empty()) header = lines[0];
      if (lines[0] != header) throw FormatError(path, "header", "columns differ from the other jobs' tables");
      const auto cols = split(header, ',');
      int c_b = -1, c_k = -1, c_t = -1;
      for (int c = 0; c < static_cast<int>(cols.size()); ++c) {
        if (cols[c] == "block_size") c_b = c;
        if (cols[c] == "top_k") c_k = c;
        if (cols[c] == "n_tokens") c_t = c;
      }
      if (c_b < 0 || c_k < 0 || c_t < 0) throw FormatError(path, "header", "no block_size, top_k or n_tokens column");
      for (size_t r = 1; r < lines.size(); ++r) {
        const auto v = split(lines[r], ',');
        if (v.size() != cols.size()) throw FormatError(path, "line " + std::to_string(r + 1), "wrong number of fields");
        const int64_t B = std::stoll(v[c_b]), k = std::stoll(v[c_k]), T = std::stoll(v[c_t]);
        char mean[64];
        std::snprintf(mean, sizeof mean, "%.4f", attended_keys_mean(T, B, k));
        const std::string target = f[5] == "top_k" ? v[c_k] : f[6];
        rows.push_back(id + "," + csv_field(f[3]) + "," + f[4] + "," + f[5] + "," + target + "," + mean + "," + lines[r]);
      }
    }
  }
  // The columns are the same whether or not a job is done (no table to take them from then).
  if (header.empty()) header = analysis::summary_csv_header();
  std::string out = std::string(kSweepColumns) + "," + header + "\n";
  for (const auto& r : rows) out += r + "\n";
  res.n_rows = rows.size();
  write_file_atomic((fs::path(dir) / "sweep.csv").string(), out);
  return res;
}

}  // namespace moba::sweep
