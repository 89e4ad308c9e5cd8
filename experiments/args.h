#pragma once
// A small command-line parser for the `moba` subcommands: --name value, --name=value,
// boolean --flag, and positional arguments. Unknown or malformed flags raise UsageError
// (exit 2) naming the flag.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace moba::cli {

class Args {
 public:
  // value_flags take a value; bool_flags do not. Both are given without the leading "--".
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
       const std::set<std::string>& bool_flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  std::string str(const std::string& name, const std::string& fallback) const;
  std::string required(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  double number(const std::string& name, double fallback, double lo, double hi) const;
  std::vector<int64_t> int_list(const std::string& name, const std::vector<int64_t>& fallback,
                                int64_t lo, int64_t hi) const;
  std::vector<double> number_list(const std::string& name, const std::vector<double>& fallback,
                                  double lo, double hi) const;
  std::vector<std::string> str_list(const std::string& name, const std::vector<std::string>& fallback) const;
  // The value must be one of `choices`.
  std::string choice(const std::string& name, const std::string& fallback,
                     const std::vector<std::string>& choices) const;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// An output file named by `flag` (e.g. "--out"), checked before any work is done: not a
// directory, its directory exists and is writable, and it is none of `inputs` (the same file by
// any name: links, "./x"). Throws UsageError (exit 2) naming the flag and the path otherwise.
void check_output_file(const std::string& flag, const std::string& path, const std::vector<std::string>& inputs = {});
// UsageError unless the directory an output `path` goes into (its parent, or ".") exists and is
// writable: outputs never create missing directories (a typo in a path is an error, not a tree).
void check_output_parent(const std::string& flag, const std::string& path);

// Parses "a/b" style or plain integers with range checks; exposed for config parsing.
int64_t parse_int(const std::string& what, const std::string& text, int64_t lo, int64_t hi);
double parse_number(const std::string& what, const std::string& text, double lo, double hi);

}  // namespace moba::cli
