// `moba info DUMP [--json] [--check [--layer L] [--tensor q|k|v|o] [--head H]]`
//
// Describes a dump (DESIGN.md §7): model, format, layers, q/kv heads, tokens, head dim,
// dtype, rope flag, token_ids, extra root attributes. Opening reads metadata only.
// --check reads and validates values (NaN/Inf, ranges) one head at a time and prints
// per-slice statistics; --layer/--tensor/--head narrow it to that slice (and imply
// --check), and only that slice is read from disk: peak memory is one head's
// [n_tokens, head_dim] float32 slice, whatever the size of the file.
#include <cinttypes>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "analysis/results_file.h"
#include "analysis/results_schema.h"
#include "core/dump.h"
#include "core/errors.h"
#include "core/h5_input.h"
#include "core/interrupt.h"
#include "core/json_writer.h"
#include "experiments/args.h"
#include "experiments/command.h"

namespace moba::cli {
namespace {

const char* kUsage =
    "usage: moba info DUMP [--json] [--check] [--layer L] [--tensor q|k|v|o] [--head H]\n"
    "  Describes an attention dump (HDF5 schema v1 or safetensors).\n"
    "  --json            machine-readable output\n"
    "  --check           read and validate values (NaN/Inf), print per-head statistics\n"
    "  --layer, --tensor, --head   restrict --check to that slice (each implies --check)\n";

struct SliceStats {
  int layer = 0;
  std::string tensor;
  int64_t head = 0;
  int64_t n_values = 0;
  double mean = 0, std = 0, mean_row_norm = 0, min = 0, max = 0;
};

// Statistics of one head [n_tokens, head_dim], accumulated in double.
SliceStats stats_of(const Tensor3& t) {
  SliceStats s;
  double sum = 0, sum_sq = 0, norm_sum = 0;
  s.min = INFINITY;
  s.max = -INFINITY;
  for (int64_t tok = 0; tok < t.n_tokens; ++tok) {
    const float* r = t.row(0, tok);
    double row_sq = 0;
    for (int64_t d = 0; d < t.head_dim; ++d) {
      const double x = r[d];
      sum += x;
      row_sq += x * x;
      s.min = std::fmin(s.min, x);
      s.max = std::fmax(s.max, x);
    }
    sum_sq += row_sq;
    norm_sum += std::sqrt(row_sq);
  }
  s.n_values = t.n_tokens * t.head_dim;
  const double n = static_cast<double>(s.n_values);
  s.mean = sum / n;
  s.std = std::sqrt(std::fmax(0.0, sum_sq / n - s.mean * s.mean));
  s.mean_row_norm = norm_sum / static_cast<double>(t.n_tokens);
  return s;
}

std::string layer_list(const DumpInfo& info) {
  std::string s;
  for (const auto& l : info.layers) s += (s.empty() ? "" : ", ") + std::to_string(l.index);
  return s;
}

std::string extras_of(const LayerInfo& l) {
  std::string s;
  if (l.has_o) s += "o ";
  if (l.has_lse) s += "lse ";
  if (l.has_planted) s += "planted ";
  if (!s.empty()) s.pop_back();
  return s.empty() ? "none" : s;
}

void print_text(const DumpInfo& info, const std::vector<SliceStats>& checks, bool checked) {
  const LayerInfo& f = info.layers.front();
  std::printf("file        %s\n", info.path.c_str());
  std::printf("format      %s (schema v%" PRId64 ")\n", info.format.c_str(), info.version);
  std::printf("model       %s\n", info.model.c_str());
  if (!info.source.empty()) std::printf("source      %s\n", info.source.c_str());
  std::printf("layers      %zu (%s)\n", info.layers.size(), layer_list(info).c_str());
  if (uniform_layers(info)) {
    std::printf("q heads     %" PRId64 "\n", f.n_q_heads);
    std::printf("kv heads    %" PRId64 "\n", f.n_kv_heads);
    std::printf("tokens      %" PRId64 "\n", f.n_tokens);
    std::printf("head dim    %" PRId64 "\n", f.head_dim);
    std::printf("dtype       %s\n", dtype_name(f.dtype));
  } else {
    std::printf("tokens      %" PRId64 "\n", f.n_tokens);
    for (const auto& l : info.layers)
      std::printf("layer %-5d q heads %" PRId64 ", kv heads %" PRId64 ", head dim %" PRId64 ", dtype %s\n", l.index,
                  l.n_q_heads, l.n_kv_heads, l.head_dim, dtype_name(l.dtype));
  }
  std::printf("rope        %s\n", info.rope_applied ? "applied (post-RoPE q/k)" : "not applied (pre-RoPE q/k)");
  std::printf("token_ids   %s\n", info.has_token_ids ? "present" : "absent");
  std::string extras = extras_of(f);
  for (const auto& l : info.layers)
    if (extras_of(l) != extras) extras = "varies by layer";
  std::printf("extras      %s\n", extras.c_str());
  if (!info.attributes.empty()) {
    std::printf("attributes\n");
    for (const auto& kv : info.attributes) std::printf("  %-24s %s\n", kv.first.c_str(), kv.second.c_str());
  }
  if (!checked) return;
  std::printf("check       %zu slice(s) read, all values finite\n", checks.size());
  std::printf("  %-5s %-6s %-5s %14s %14s %14s %14s %14s\n", "layer", "tensor", "head", "mean", "std", "row_norm",
              "min", "max");
  for (const auto& s : checks)
    std::printf("  %-5d %-6s %-5" PRId64 " %14.6g %14.6g %14.6g %14.6g %14.6g\n", s.layer, s.tensor.c_str(), s.head,
                s.mean, s.std, s.mean_row_norm, s.min, s.max);
}

void print_json(const DumpInfo& info, const std::vector<SliceStats>& checks, bool checked) {
  std::vector<std::string> checks_json;
  JsonObject o;
  add_dump_info_json(info, o);
  if (checked) {
    for (const SliceStats& c : checks)
      checks_json.push_back(JsonObject()
                                .add_integer("layer", c.layer)
                                .add_string("tensor", c.tensor)
                                .add_integer("head", c.head)
                                .add_integer("n_values", c.n_values)
                                .add_raw("mean", format_g(c.mean, 9))
                                .add_raw("std", format_g(c.std, 9))
                                .add_raw("mean_row_norm", format_g(c.mean_row_norm, 9))
                                .add_raw("min", format_g(c.min, 9))
                                .add_raw("max", format_g(c.max, 9))
                                .str());
    o.add_raw("checks", json_array(checks_json));
  }
  std::fputs((o.str() + "\n").c_str(), stdout);
}

// What an analysis.h5 keeps (analysis/position_keep.h): how many configurations, how many
// with per-position arrays / selections / bucket curves, the heads with arrays, the stored
// selection widths, and the keep rule analyze recorded (absent in files written before keep
// rules, which kept everything).
struct AnalysisContents {
  int64_t configurations = 0, with_arrays = 0, with_selection = 0, with_buckets = 0;
  std::vector<std::string> heads_with_arrays;  // "L/H"
  std::vector<std::string> selection_dtypes;   // distinct, e.g. "int8"
  std::string rule;
};

AnalysisContents analysis_contents(const std::string& path) {
  AnalysisContents c;
  const analysis::ResultsFile f(path);
  const H5Input h5(path);
  c.rule = f.keep_rule();
  const auto push_unique = [](std::vector<std::string>* v, const std::string& x) {
    for (const auto& y : *v)
      if (y == x) return;
    v->push_back(x);
  };
  for (size_t i = 0; i < f.configs().size(); ++i) {
    const analysis::ConfigKey& k = f.configs()[i];
    const analysis::StoredLevels& st = f.stored_levels()[i];
    ++c.configurations;
    c.with_arrays += st.metrics ? 1 : 0;
    c.with_buckets += st.buckets ? 1 : 0;
    if (st.metrics || st.selection) push_unique(&c.heads_with_arrays, std::to_string(k.layer) + "/" + std::to_string(k.head));
    if (st.selection) {
      ++c.with_selection;
      push_unique(&c.selection_dtypes, h5.dataset_info(analysis::selected_path(k)).dtype);
    }
  }
  return c;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// `moba route`'s output (root attribute moba_route_version) or analyze's analysis.h5 (root
// attributes dump and git_commit, groups /layers/L/...): what it is, its attributes and its
// datasets. False when the HDF5 file is neither.
bool describe_output_file(const std::string& path, bool json) {
  const H5Input f(path);
  const auto attrs = f.attributes("/");
  std::string kind;
  if (attrs.count("moba_route_version")) kind = "route";
  else if (attrs.count("dump") && attrs.count("git_commit") && f.has_group("/layers")) kind = "analysis";
  else return false;
  std::vector<std::string> datasets;  // "path [shape] dtype"
  std::vector<std::string> stack = {"/"};
  while (!stack.empty() && datasets.size() < 64) {
    const std::string g = stack.back();
    stack.pop_back();
    const std::string prefix = g == "/" ? "/" : g + "/";
    for (const auto& d : f.list_datasets(g)) {
      const H5DatasetInfo di = f.dataset_info(prefix + d);
      std::string shape;
      for (const int64_t n : di.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(n);
      datasets.push_back(prefix + d + " [" + shape + "] " + di.dtype);
    }
    const auto groups = f.list_groups(g);
    for (auto it = groups.rbegin(); it != groups.rend(); ++it) stack.push_back(prefix + *it);
  }
  const char* what = kind == "route" ? "a `moba route` output (block selections; docs/cli.md#route)"
                                     : "a `moba analyze` output (analysis.h5; docs/metrics.md; view it with `moba gui DIR`)";
  AnalysisContents contents;
  if (kind == "analysis") contents = analysis_contents(path);
  if (json) {
    JsonObject a;
    for (const auto& [name, value] : attrs) a.add_string(name, value);
    std::vector<std::string> ds;
    for (const auto& d : datasets) ds.push_back(json_string(d));
    JsonObject o;
    o.add_string("file", path).add_string("kind", kind).add_raw("attributes", a.str());
    if (kind == "analysis") {
      std::vector<std::string> heads, dtypes;
      for (const auto& h : contents.heads_with_arrays) heads.push_back(json_string(h));
      for (const auto& d : contents.selection_dtypes) dtypes.push_back(json_string(d));
      o.add_raw("kept", JsonObject()
                            .add_integer("n_configurations", contents.configurations)
                            .add_integer("n_with_arrays", contents.with_arrays)
                            .add_integer("n_with_selection", contents.with_selection)
                            .add_integer("n_with_bucket_curves", contents.with_buckets)
                            .add_raw("heads_with_arrays", json_array(heads))
                            .add_raw("selection_dtypes", json_array(dtypes))
                            .add_string("rule", contents.rule)
                            .str());
    }
    o.add_raw("datasets", json_array(ds));
    std::printf("%s\n", o.str().c_str());
    return true;
  }
  std::printf("file        %s\nkind        %s: not a dump\n", path.c_str(), what);
  if (kind == "analysis") {
    std::printf("contents    %lld configurations (layer, head, B x k, router); per-position metric arrays for %lld, "
                "selections for %lld (%s), bucket curves for %lld\n",
                static_cast<long long>(contents.configurations), static_cast<long long>(contents.with_arrays),
                static_cast<long long>(contents.with_selection),
                contents.selection_dtypes.empty() ? "none stored" : join(contents.selection_dtypes).c_str(),
                static_cast<long long>(contents.with_buckets));
    std::printf("            per-position data for layer/head %s\n",
                contents.heads_with_arrays.empty() ? "none" : join(contents.heads_with_arrays).c_str());
    std::printf("kept        %s\n", contents.rule.empty() ? "everything (written before keep rules existed)"
                                                             : contents.rule.c_str());
  }
  for (const auto& [name, value] : attrs) std::printf("  %-22s %s\n", name.c_str(), value.c_str());
  std::printf("datasets%s\n", datasets.size() >= 64 ? " (first 64)" : "");
  for (const auto& d : datasets) std::printf("  %s\n", d.c_str());
  return true;
}

int run_info(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  const Args args(argv, {"layer", "tensor", "head"}, {"json", "check", "stats"});
  if (args.positional().size() != 1) throw UsageError(std::string("expected one DUMP argument\n") + kUsage);
  const bool checked = args.flag("check") || args.flag("stats") || args.has("layer") || args.has("tensor") || args.has("head");
  std::unique_ptr<DumpReader> reader;
  try {
    reader = open_dump(args.positional()[0]);
  } catch (const MissingFieldError& e) {
    // Not a dump: maybe one of the workbench's own outputs, which info describes instead.
    if (e.field() != "moba_dump_version" || !describe_output_file(args.positional()[0], args.flag("json"))) throw;
    return 0;
  }
  const DumpInfo& info = reader->info();

  std::vector<SliceStats> checks;
  if (checked) {
    std::vector<int> layers;
    if (args.has("layer")) {
      const int l = static_cast<int>(args.integer("layer", 0, 0, 1 << 20));
      info.layer(l);  // throws MissingFieldError naming /layers/L
      layers.push_back(l);
    } else {
      for (const auto& l : info.layers) layers.push_back(l.index);
    }
    std::vector<std::string> tensors = {"q", "k", "v", "o"};
    if (args.has("tensor")) tensors = {args.choice("tensor", "q", {"q", "k", "v", "o"})};
    for (int l : layers) {
      const LayerInfo& li = info.layer(l);
      for (const std::string& name : tensors) {
        const TensorKind kind = name == "q" ? TensorKind::q : name == "k" ? TensorKind::k : name == "v" ? TensorKind::v : TensorKind::o;
        if (kind == TensorKind::o && !li.has_o && !args.has("tensor")) continue;
        const int64_t n_heads = (kind == TensorKind::k || kind == TensorKind::v) ? li.n_kv_heads : li.n_q_heads;
        int64_t h_begin = 0, h_end = n_heads;
        if (args.has("head")) {
          h_begin = args.integer("head", 0, 0, INT32_MAX);
          h_end = h_begin + 1;  // the reader rejects a head out of range, naming the dataset
        }
        for (int64_t h = h_begin; h < h_end; ++h) {
          throw_if_interrupted();  // Ctrl-C / SIGTERM between heads of a long check
          const Tensor3 slice = reader->read(l, kind, h, 1);
          SliceStats s = stats_of(slice);
          s.layer = l;
          s.tensor = name;
          s.head = h;
          checks.push_back(s);
        }
      }
      if (li.has_planted && !args.has("tensor")) reader->read_planted(l);  // validates the range
    }
    if (!args.has("layer") && !args.has("tensor")) reader->read_token_ids();
  }
  if (args.flag("json")) print_json(info, checks, checked);
  else print_text(info, checks, checked);
  const std::string layout = layout_warning(info);
  if (!layout.empty()) std::fprintf(stderr, "moba info: warning: %s\n", layout.c_str());
  return 0;
}

const Command kInfo("info", "describe a dump: layers, heads, tokens, head dim, dtype (--check: validate values)", run_info);

}  // namespace
}  // namespace moba::cli
