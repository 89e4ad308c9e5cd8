#include "experiments/sweep/config.h"

#include <glob.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "analysis/config_key.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "experiments/sweep/jobs.h"

namespace fs = std::filesystem;

namespace moba::sweep {
namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date/time";
  }
}

// Reads one table's keys, remembering which were used so the rest can be refused.
class Section {
 public:
  Section(const std::string& file, const std::string& prefix, const toml::table& t)
      : file_(file), prefix_(prefix), t_(t) {}

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw InputError(file_, prefix_ + key, problem);
  }
  const toml::node* get(const std::string& key) {
    used_.insert(key);
    return t_.get(key);
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    return check_int(key, *n, lo, hi);
  }
  int64_t check_int(const std::string& key, const toml::node& n, int64_t lo, int64_t hi) const {
    if (!n.is_integer()) fail(key, std::string("expected an integer, got ") + type_name(n));
    const int64_t v = *n.value<int64_t>();
    if (v < lo || v > hi) fail(key, std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  double check_number(const std::string& key, const toml::node& n, double lo, double hi) const {
    if (!n.is_number()) fail(key, std::string("expected a number, got ") + type_name(n));
    const double v = *n.value<double>();
    if (!(v >= lo && v <= hi)) {
      std::ostringstream s;
      s << v << " is out of range [" << lo << ", " << hi << "]";
      fail(key, s.str());
    }
    return v;
  }
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& choices) {
    const toml::node* n = get(key);
    if (!n) return fallback;
    if (!n->is_string()) fail(key, std::string("expected a string, got ") + type_name(*n));
    const std::string v = *n->value<std::string>();
    for (const auto& c : choices)
      if (v == c) return v;
    std::string all;
    for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
    fail(key, "'" + v + "' is not one of " + all);
  }
  // An array of integers, or one integer (a list of one).
  std::vector<int64_t> int_list(const std::string& key, int64_t lo, int64_t hi, bool scalar_ok) {
    std::vector<int64_t> out;
    const toml::node* n = get(key);
    if (!n) return out;
    if (scalar_ok && n->is_integer()) return {check_int(key, *n, lo, hi)};
    if (!n->is_array()) fail(key, std::string("expected an array of integers, got ") + type_name(*n));
    for (const auto& e : *n->as_array()) out.push_back(check_int(key, e, lo, hi));
    if (out.empty()) fail(key, "the array is empty");
    return out;
  }
  std::vector<double> number_list(const std::string& key, double lo, double hi) {
    std::vector<double> out;
    const toml::node* n = get(key);
    if (!n) return out;
    if (n->is_number()) return {check_number(key, *n, lo, hi)};
    if (!n->is_array()) fail(key, std::string("expected a number or an array of numbers, got ") + type_name(*n));
    for (const auto& e : *n->as_array()) out.push_back(check_number(key, e, lo, hi));
    if (out.empty()) fail(key, "the array is empty");
    return out;
  }
  std::vector<std::string> str_list(const std::string& key) {
    std::vector<std::string> out;
    const toml::node* n = get(key);
    if (!n) return out;
    if (n->is_string()) return {*n->value<std::string>()};
    if (!n->is_array()) fail(key, std::string("expected an array of strings, got ") + type_name(*n));
    for (const auto& e : *n->as_array()) {
      if (!e.is_string()) fail(key, std::string("expected strings, got ") + type_name(e));
      out.push_back(*e.value<std::string>());
    }
    if (out.empty()) fail(key, "the array is empty");
    return out;
  }
  // Refuses keys nobody read.
  void finish(const std::set<std::string>& tables = {}) const {
    for (const auto& [k, v] : t_) {
      const std::string key(k.str());
      if (!used_.count(key) && !tables.count(key))
        fail(key, "unknown key (see docs/sweep.md for the keys a sweep config takes)");
    }
  }

 private:
  std::string file_, prefix_;
  const toml::table& t_;
  std::set<std::string> used_;
};

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

template <class T>
void check_unique(Section& s, const std::string& key, const std::vector<T>& v) {
  std::set<T> seen;
  for (const auto& x : v)
    if (!seen.insert(x).second) {
      std::ostringstream o;
      o << x << " is given twice";
      s.fail(key, o.str());
    }
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// Shortest text that reads back as the same double, always with a '.' or exponent (TOML float).
std::string float_text(double v) {
  std::string s = format_shortest(v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

template <class T, class F>
std::string list_text(const std::vector<T>& v, F f) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + f(v[i]);
  return s + "]";
}

std::string int_text(int64_t v) { return std::to_string(v); }

}  // namespace

SweepConfig parse_config(const std::string& path) {
  SweepConfig c;
  c.path = path;
  if (!fs::is_regular_file(path)) throw FileNotFoundError(path, "", "the sweep config does not exist or is not a file");
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw FormatError(path, "line " + std::to_string(e.source().begin.line),
                      "not valid TOML: " + std::string(e.description()));
  }
  const fs::path base = fs::absolute(fs::path(path)).parent_path();
  Section top(path, "", root);

  // dumps: paths or globs, relative to the config file's folder.
  c.dump_patterns = top.str_list("dumps");
  if (c.dump_patterns.empty()) top.fail("dumps", "required: a list of dump files or globs");
  std::set<std::string> seen;
  for (const auto& pat : c.dump_patterns) {
    const std::string full = fs::path(pat).is_absolute() ? pat : (base / pat).lexically_normal().string();
    std::vector<std::string> matches;
    if (has_glob_chars(pat)) {
      glob_t g{};
      if (::glob(full.c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) matches.push_back(g.gl_pathv[i]);
      globfree(&g);
      if (matches.empty()) top.fail("dumps", "'" + pat + "' matches no file (looked for " + full + ")");
    } else {
      if (!fs::is_regular_file(full)) top.fail("dumps", "'" + pat + "': no such file (" + full + ")");
      matches.push_back(full);
    }
    for (auto& m : matches) {
      m = fs::weakly_canonical(m).string();
      if (seen.insert(m).second) c.dumps.push_back(m);
    }
  }

  // layers: "all", a list of layers (one set), or a list of lists (one job per set).
  if (const toml::node* n = top.get("layers")) {
    if (n->is_string()) {
      if (*n->value<std::string>() != "all") top.fail("layers", "expected \"all\", a list of layers or a list of lists");
      c.layer_sets.push_back({});
    } else if (n->is_array() && !n->as_array()->empty() && n->as_array()->front().is_array()) {
      for (const auto& e : *n->as_array()) {
        if (!e.is_array() || e.as_array()->empty()) top.fail("layers", "every entry of a list of layer sets must be a non-empty list");
        std::vector<int> set;
        for (const auto& x : *e.as_array()) set.push_back(static_cast<int>(top.check_int("layers", x, 0, INT32_MAX)));
        check_unique(top, "layers", set);
        c.layer_sets.push_back(set);
      }
    } else {
      std::vector<int> set;
      for (const int64_t l : top.int_list("layers", 0, INT32_MAX, true)) set.push_back(static_cast<int>(l));
      check_unique(top, "layers", set);
      c.layer_sets.push_back(set);
    }
  } else {
    c.layer_sets.push_back({});
  }

  if (const toml::node* n = top.get("heads"); n && n->is_string()) {
    if (*n->value<std::string>() != "all") top.fail("heads", "expected \"all\" or a list of query heads");
  } else {
    for (const int64_t h : top.int_list("heads", 0, INT32_MAX, true)) c.heads.push_back(static_cast<int>(h));
    check_unique(top, "heads", c.heads);
  }

  c.block_sizes = top.int_list("block_sizes", 1, INT32_MAX, true);
  if (c.block_sizes.empty()) top.fail("block_sizes", "required: a list of block sizes");
  if (c.block_sizes.size() > 8) top.fail("block_sizes", "at most 8 block sizes (one analyze pass serves them all)");
  check_unique(top, "block_sizes", c.block_sizes);

  if (top.get("routers")) {
    c.routers = top.str_list("routers");
    for (const auto& r : c.routers)
      if (analysis::RouterKind kind; !analysis::parse_router(r, &kind))
        top.fail("routers", "'" + r + "' is not one of " + analysis::router_list());
    check_unique(top, "routers", c.routers);
  }
  c.device = top.choice("device", "cpu", {"cpu", "cuda", "auto"});

  const toml::node* budget = top.get("budget");
  if (!budget) top.fail("budget", "required: a [budget] table with top_k, sparsity, attended_keys or attended_fraction");
  if (!budget->is_table()) top.fail("budget", std::string("expected a table, got ") + type_name(*budget));
  {
    Section b(path, "budget.", *budget->as_table());
    c.top_k = b.int_list("top_k", 1, 1 << 20, true);
    c.sparsity = b.number_list("sparsity", 0.0, 0.999999);
    c.attended_keys = b.number_list("attended_keys", 1.0, 1e12);
    c.attended_fraction = b.number_list("attended_fraction", 1e-9, 1.0);
    check_unique(b, "top_k", c.top_k);
    check_unique(b, "sparsity", c.sparsity);
    check_unique(b, "attended_keys", c.attended_keys);
    check_unique(b, "attended_fraction", c.attended_fraction);
    b.finish();
    if (c.top_k.empty() && c.sparsity.empty() && c.attended_keys.empty() && c.attended_fraction.empty())
      top.fail("budget", "give at least one of top_k, sparsity, attended_keys, attended_fraction");
  }

  if (const toml::node* an = top.get("analysis")) {
    if (!an->is_table()) top.fail("analysis", std::string("expected a table, got ") + type_name(*an));
    Section a(path, "analysis.", *an->as_table());
    c.tie = a.choice("tie", c.tie, {"recent", "older"});
    c.gqa = a.choice("gqa", c.gqa, {"per-head", "shared"});
    c.pool_precision = a.choice("pool_precision", c.pool_precision, {"dump", "fp32"});
    c.kconv = static_cast<int>(a.integer("kconv", 3, 3, 5));
    if (c.kconv != 3 && c.kconv != 5) a.fail("kconv", "width must be 3 or 5");
    if (const toml::node* n = a.get("kconv_weights")) {
      if (!n->is_string()) a.fail("kconv_weights", std::string("expected a string, got ") + type_name(*n));
      const std::string w = *n->value<std::string>();
      const fs::path full = fs::path(w).is_absolute() ? fs::path(w) : base / w;
      if (!fs::is_regular_file(full)) a.fail("kconv_weights", "'" + w + "': no such file (" + full.string() + ")");
      c.kconv_weights = fs::weakly_canonical(full).string();
    }
    c.kconv_apply = a.choice("kconv_apply", c.kconv_apply, {"routing", "both"});
    c.precision = a.choice("precision", c.precision, {"exact", "fast"});
    c.top_n = a.integer("top_n", c.top_n, 1, 4096);
    const toml::node* width = a.get("bucket_width");
    if (a.get("buckets") && width && width->value_or<int64_t>(0) != 0)
      a.fail("bucket_width", "buckets and bucket_width are alternatives (as analyze's --buckets and --bucket-width): give one");
    c.buckets = a.integer("buckets", c.buckets, 1, 1 << 20);
    c.bucket_width = a.integer("bucket_width", 0, 0, INT64_MAX / 2);
    c.trailing = a.integer("trailing", 0, 0, INT64_MAX / 2);
    a.finish();
  }
  top.finish();
  return c;
}

std::string resolved_toml(const SweepConfig& c) {
  std::ostringstream o;
  o << "# moba sweep: the resolved configuration (every default filled in; dumps absolute).\n";
  o << "dumps = " << list_text(c.dumps, quote) << "\n";
  if (c.layer_sets.size() == 1 && c.layer_sets[0].empty()) {
    o << "layers = \"all\"\n";
  } else {
    o << "layers = " << list_text(c.layer_sets, [](const std::vector<int>& s) {
      return list_text(s, [](int v) { return std::to_string(v); });
    }) << "\n";
  }
  if (c.heads.empty()) o << "heads = \"all\"\n";
  else o << "heads = " << list_text(c.heads, [](int v) { return std::to_string(v); }) << "\n";
  o << "block_sizes = " << list_text(c.block_sizes, int_text) << "\n";
  o << "routers = " << list_text(c.routers, quote) << "\n";
  o << "device = " << quote(c.device) << "\n\n[budget]\n";
  if (!c.top_k.empty()) o << "top_k = " << list_text(c.top_k, int_text) << "\n";
  if (!c.sparsity.empty()) o << "sparsity = " << list_text(c.sparsity, float_text) << "\n";
  if (!c.attended_keys.empty()) o << "attended_keys = " << list_text(c.attended_keys, float_text) << "\n";
  if (!c.attended_fraction.empty()) o << "attended_fraction = " << list_text(c.attended_fraction, float_text) << "\n";
  o << "\n[analysis]\n";
  o << "tie = " << quote(c.tie) << "\n";
  o << "gqa = " << quote(c.gqa) << "\n";
  o << "pool_precision = " << quote(c.pool_precision) << "\n";
  o << "kconv = " << c.kconv << "\n";
  if (!c.kconv_weights.empty()) o << "kconv_weights = " << quote(c.kconv_weights) << "\n";
  o << "kconv_apply = " << quote(c.kconv_apply) << "\n";
  o << "precision = " << quote(c.precision) << "\n";
  o << "top_n = " << c.top_n << "\n";
  o << "buckets = " << c.buckets << "\n";
  o << "bucket_width = " << c.bucket_width << "  # 0: `buckets` equal buckets\n";
  o << "trailing = " << c.trailing << "  # 0: n_tokens / 16\n";
  return o.str();
}

}  // namespace moba::sweep
