#include "experiments/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "core/errors.h"

namespace moba::cli {

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
          if (i + 1 >= argv.size()) throw UsageError("--" + name + " needs a value");
          value = argv[++i];
        }
        if (values_.count(name)) throw UsageError("--" + name + " given twice");
        values_[name] = value;
      } else {
        throw UsageError("unknown option --" + name);
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

}  // namespace moba::cli
