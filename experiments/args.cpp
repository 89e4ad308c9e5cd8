#include "experiments/args.h"

#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <system_error>

#include "core/errors.h"

namespace moba::cli {
namespace {

// Edit distance (insert, delete, substitute, swap of neighbours) between two flag names.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// "unknown option --x", plus "; did you mean --y?" when one known flag is close: within two
// edits (a third of the name for short names), or the name with a plural 's' added or dropped.
std::string unknown_option(const std::string& name, const std::set<std::string>& value_flags,
                           const std::set<std::string>& bool_flags) {
  std::string best;
  size_t best_d = std::max<size_t>(1, std::min<size_t>(2, name.size() / 3)) + 1;
  for (const auto* flags : {&value_flags, &bool_flags})
    for (const auto& f : *flags) {
      const size_t dist = edit_distance(name, f);
      if (dist < best_d) best_d = dist, best = f;
    }
  std::string msg = "unknown option --" + name;
  if (!best.empty()) msg += "; did you mean --" + best + "?";
  return msg + " (see --help)";
}

}  // namespace

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
           const std::set<std::string>& bool_flags) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      if (bool_flags.count(name)) {
        if (inline_value) throw UsageError("--" + name + " takes no value");
        values_[name] = "1";
      } else if (value_flags.count(name)) {
        if (!inline_value) {
          // The next word is the value, unless it is missing or is itself an option (a value
          // left out before the next flag: `--top-k --out DIR`).
          if (i + 1 >= argv.size() || (argv[i + 1].size() > 2 && argv[i + 1].compare(0, 2, "--") == 0))
            throw UsageError("--" + name + " needs a value");
          value = argv[++i];
        }
        if (values_.count(name)) throw UsageError("--" + name + " given twice");
        values_[name] = value;
      } else {
        throw UsageError(unknown_option(name, value_flags, bool_flags));
      }
    } else {
      positional_.push_back(a);
    }
  }
}

bool Args::has(const std::string& name) const { return values_.count(name) != 0; }

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) throw UsageError("--" + name + " is required");
  return it->second;
}

int64_t parse_int(const std::string& what, const std::string& text, int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError(what + ": '" + text + "' is not an integer");
  if (v < lo || v > hi) {
    std::ostringstream s;
    s << what << ": " << v << " is out of range [" << lo << ", " << hi << "]";
    throw UsageError(s.str());
  }
  return v;
}

double parse_number(const std::string& what, const std::string& text, double lo, double hi) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw UsageError(what + ": '" + text + "' is not a finite number");
  if (v < lo || v > hi) {
    std::ostringstream s;
    s << what << ": " << v << " is out of range [" << lo << ", " << hi << "]";
    throw UsageError(s.str());
  }
  return v;
}

int64_t Args::integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
  return has(name) ? parse_int("--" + name, str(name, ""), lo, hi) : fallback;
}

double Args::number(const std::string& name, double fallback, double lo, double hi) const {
  return has(name) ? parse_number("--" + name, str(name, ""), lo, hi) : fallback;
}

static std::vector<std::string> split_commas(const std::string& name, const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ',')) {
    if (cur.empty()) throw UsageError("--" + name + ": empty item in list '" + s + "'");
    out.push_back(cur);
  }
  if (out.empty()) throw UsageError("--" + name + ": empty list");
  // getline drops the empty field after a trailing comma ("16,"): an empty item like ",16"
  if (s.back() == ',') throw UsageError("--" + name + ": empty item in list '" + s + "'");
  return out;
}

std::vector<int64_t> Args::int_list(const std::string& name, const std::vector<int64_t>& fallback,
                                    int64_t lo, int64_t hi) const {
  if (!has(name)) return fallback;
  std::vector<int64_t> out;
  for (const auto& item : split_commas(name, str(name, ""))) out.push_back(parse_int("--" + name, item, lo, hi));
  return out;
}

std::vector<double> Args::number_list(const std::string& name, const std::vector<double>& fallback,
                                      double lo, double hi) const {
  if (!has(name)) return fallback;
  std::vector<double> out;
  for (const auto& item : split_commas(name, str(name, ""))) out.push_back(parse_number("--" + name, item, lo, hi));
  return out;
}

std::vector<std::string> Args::str_list(const std::string& name, const std::vector<std::string>& fallback) const {
  return has(name) ? split_commas(name, str(name, "")) : fallback;
}

std::string Args::choice(const std::string& name, const std::string& fallback,
                         const std::vector<std::string>& choices) const {
  const std::string v = str(name, fallback);
  for (const auto& c : choices)
    if (c == v) return v;
  std::string all;
  for (const auto& c : choices) all += (all.empty() ? "" : "|") + c;
  throw UsageError("--" + name + ": '" + v + "' is not one of " + all);
}

void check_output_parent(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  const fs::path dir = parent.empty() ? fs::path(".") : parent;
  if (!fs::is_directory(dir, ec))
    throw UsageError(flag + " " + path + ": the directory " + dir.string() + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw UsageError(flag + " " + path + ": the directory " + dir.string() + " is not writable");
}

void check_output_file(const std::string& flag, const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  if (path.empty()) throw UsageError(flag + ": expected a file name");
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UsageError(flag + " " + path + " is a directory; give the output file's name");
  check_output_parent(flag, path);
  for (const std::string& in : inputs) {
    if (fs::equivalent(path, in, ec) && !ec)
      throw UsageError(flag + " " + path + " is the input " + in + " itself; give another path");
    ec.clear();
  }
}

}  // namespace moba::cli
