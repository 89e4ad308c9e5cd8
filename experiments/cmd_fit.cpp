// `moba fit`: per-head budget fitting (issue 13 item 2, docs/fit.md). For every analysed
// (layer, head, router, block size B): for the top-k routers (moba, moba-kconv, oracle, ...)
// the smallest top-k whose summary metric on the dump meets a target: coverage_mean >= v,
// block_recall_mean >= v or kl_mean <= v (means over the queries with a choice, exactly as
// `moba analyze` writes them in summary.csv; the fit runs the same library, analysis/analyze.h
// analyze_dump); for the variable-budget routers (moba-threshold, oracle-topp) the smallest
// mass threshold tau on a grid of --tau-resolution whose metric meets it.
//
// k search (docs/fit.md#search): coverage and KL are monotone per query in k (the picks of k are
// a subset of those of k + 1), so for them fit runs one analysis over a coarse k grid
// (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... and each B's largest routable k), takes per head the
// first grid k that meets the target, and analyses, head by head, every k strictly between
// that grid point and the one below it (that head's gaps only): the answer is exact,
// and k - 1 is always evaluated, so "k - 1 misses" is measured, never assumed. Block recall
// is not monotone in k (the oracle's picks change with k), so for it every k in 1..kmax is
// analysed in one pass. Any evaluated k above the fitted one that misses the target is
// counted and reported (the mean over queries with a choice is over a set that shrinks with
// k, so even coverage_mean is monotone only in practice).
//
// tau search (docs/fit.md#tau): the cap is k = n_blocks, which never binds (a query of block c
// may add all c routable blocks), and the metric is the mean over the queries with at least
// one routable block (t >= B), a set that does not depend on tau. analysis/router.h
// select_mass_row ranks the candidates independently of tau and keeps the shortest prefix
// whose mass reaches tau, so the selections are nested in tau and coverage (-KL) per query and
// its mean are monotone in tau (the sums add non-negative terms; rounding is monotone too).
// Per slot: tau = 1 first (reachable?), then bisection over the grid i * resolution: at most
// 1 + ceil(log2(1 / resolution)) analysis passes of that one head; tau - resolution is always
// measured (it misses) unless tau is the grid's first point. Block recall compares with the
// oracle's top-(k-1) picks, which at k = n_blocks are every routable block: not fitted for tau.
//
// Writes PATH.csv and PATH.json (the table) and, per (router, B), the budgets peers read:
// top-k routers: PATH.k_B<B>[_<router>].json ({"block_size": B, "layers": [[k per head], ...]})
// and PATH.density_B<B>[_<router>].json (the fitted k / n_blocks per head); variable-budget
// routers: PATH.tau_B<B>_<router>.json ({"tau": [[tau per head], ...]}, XAttention's per-head
// threshold array, and the realised mean budget per head).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/analyze.h"
#include "analysis/backend.h"
#include "analysis/metrics.h"
#include "core/atomic_file.h"
#include "core/dump.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "core/sha256.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/command.h"
#include "experiments/routing_args.h"

namespace fs = std::filesystem;

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba fit DUMP --block-sizes 32,64 --target coverage=0.95 --out PATH\n"
    "                [--layers 0,1] [--heads 0,3] [--routers moba] [--max-k K]\n"
    "                [--tau-resolution R] [--device cpu|cuda|auto]\n"
    "\n"
    "Per-head budget fitting: for every (layer, head, router, B), the smallest budget whose\n"
    "metric on DUMP meets the target. Top-k routers (moba, moba-kconv, oracle, quest,\n"
    "sink-window, minference-bs, nsa-shared): the smallest\n"
    "top-k (summary means over queries with a choice, as in `moba analyze`'s summary.csv).\n"
    "Variable-budget routers (moba-threshold, oracle-topp): the smallest tau on the grid\n"
    "R, 2R, ..., 1, uncapped (k = n_blocks: the cap never binds), the metric being the mean\n"
    "over the queries with a routable block (t >= B). Heads that cannot reach the target are\n"
    "reported.\n"
    "\n"
    "  --block-sizes LIST      block sizes (at most 8)\n"
    "  --target METRIC=V       coverage=V (coverage_mean >= V, V in (0, 1]),\n"
    "                          block_recall=V (block_recall_mean >= V, V in (0, 1]; top-k\n"
    "                          routers only) or kl=V (kl_mean <= V, V >= 0)\n"
    "  --out PATH              writes PATH.csv, PATH.json (the table) and per router and B:\n"
    "                          top-k routers: PATH.k_B<B>.json (k per head per layer) and\n"
    "                          PATH.density_B<B>.json (k / n_blocks per head), _<router> appended\n"
    "                          for routers other than moba; variable-budget routers:\n"
    "                          PATH.tau_B<B>_<router>.json (tau per head per layer)\n"
    "  --layers LIST           layers (all)\n"
    "  --heads LIST            query heads (all)\n"
    "  --routers LIST          of moba, moba-kconv, oracle, quest, sink-window, minference-bs,\n"
    "                          nsa-shared (top-k) and moba-threshold, oracle-topp (tau) (moba)\n"
    "  --max-k K               largest k tried by the top-k routers (default: n_blocks, i.e. up\n"
    "                          to full attention; k = n_blocks is full attention, where every\n"
    "                          metric is exact); the tau routers are always uncapped\n"
    "  --tau-resolution R      tau grid step, in [1e-06, 0.5] (0.001); at most\n"
    "                          1 + ceil(log2(1 / R)) analysis passes per head, router and B\n"
    "  --device cpu|cuda|auto  where the analysis runs (cpu)\n"
    "  --tie, --gqa, --pool-precision, --kconv, --kconv-weights, --kconv-apply, --precision\n"
    "                          routing options, as in `moba analyze` (no --tau: fit searches it)\n"
    "  --quiet                 no progress on stderr\n"
    "\n"
    "Search: coverage and kl: a coarse k grid, then every k between the bracketing grid points\n"
    "(exact; k - 1 is always measured). block_recall (not monotone in k): every k. tau: tau = 1,\n"
    "then bisection (the selections are nested in tau; tau - R is always measured). docs/fit.md.\n";

enum class Metric { coverage, block_recall, kl };

struct Target {
  Metric metric = Metric::coverage;
  std::string name;  // coverage | block_recall | kl
  double value = 0;
  analysis::SummaryColumn column() const {
    switch (metric) {
      case Metric::coverage: return analysis::SummaryColumn::coverage_mean;
      case Metric::block_recall: return analysis::SummaryColumn::block_recall_mean;
      case Metric::kl: return analysis::SummaryColumn::kl_mean;
    }
    return analysis::SummaryColumn::coverage_mean;
  }
  // NaN (block recall at k = 1: the oracle has no routed pick) never meets a target.
  bool met(double v) const {
    if (!std::isfinite(v)) return false;
    return metric == Metric::kl ? v <= value : v >= value;
  }
  // The metric at full attention (k = n_blocks: every query attends every earlier key).
  double full_attention_value() const { return metric == Metric::kl ? 0.0 : 1.0; }
  std::string text() const { return name + (metric == Metric::kl ? "<=" : ">=") + format_number(value); }
};

Target parse_target(const std::string& s) {
  const size_t eq = s.find('=');
  if (eq == std::string::npos)
    throw UsageError("--target: '" + s + "' is not METRIC=VALUE (coverage=0.95, block_recall=0.9 or kl=0.05)");
  Target t;
  t.name = s.substr(0, eq);
  const std::string v = s.substr(eq + 1);
  if (t.name == "coverage") {
    t.metric = Metric::coverage;
    t.value = parse_number("--target coverage", v, 0.0, 1.0);
  } else if (t.name == "block_recall") {
    t.metric = Metric::block_recall;
    t.value = parse_number("--target block_recall", v, 0.0, 1.0);
  } else if (t.name == "kl") {
    t.metric = Metric::kl;
    t.value = parse_number("--target kl", v, 0.0, 1e300);
  } else {
    throw UsageError("--target: unknown metric '" + t.name + "' (one of coverage, block_recall, kl)");
  }
  if (t.metric != Metric::kl && t.value <= 0)
    throw UsageError("--target " + t.name + ": " + v + " is out of range (0, 1]");
  return t;
}

// The coarse grid: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... (powers of two and 1.5x them) up to
// kmax, plus the listed extra values (each B's largest routable k).
std::vector<int> coarse_grid(int kmax, const std::vector<int>& extra) {
  std::set<int> ks;
  for (int64_t p = 1; p <= kmax; p *= 2) {
    ks.insert(static_cast<int>(p));
    if (p >= 2 && p + p / 2 <= kmax) ks.insert(static_cast<int>(p + p / 2));
  }
  for (const int e : extra)
    if (e >= 1 && e <= kmax) ks.insert(e);
  return {ks.begin(), ks.end()};
}

// One (layer, head, router, B) slot's measured values: k -> summary row.
struct Slot {
  int layer = 0;
  int64_t head = 0;
  analysis::RouterKind router = analysis::RouterKind::moba;
  int64_t block_size = 0;
  std::map<int, analysis::SummaryRow> rows;
};
using SlotKey = std::tuple<int, int64_t, int, int64_t>;  // layer, head, router, B

void collect(std::map<SlotKey, Slot>& slots, const analysis::DumpAnalysis& a) {
  for (const auto& r : a.head_rows) {
    const SlotKey key{r.key.layer, r.key.head, static_cast<int>(r.key.router), r.key.block_size};
    Slot& s = slots[key];
    s.layer = r.key.layer;
    s.head = r.key.head;
    s.router = r.key.router;
    s.block_size = r.key.block_size;
    s.rows[r.key.top_k] = r;
  }
}

struct FitRow {
  int layer = 0;
  int64_t head = 0, kv_head = 0, block_size = 0, n_blocks = 0, n_tokens = 0;
  analysis::RouterKind router = analysis::RouterKind::moba;
  std::string status;  // ok | full_attention | unreachable
  int k = 0;           // 0 when unreachable, and for the tau routers
  double achieved = NAN, achieved_prev = NAN, sparsity_nominal = NAN, sparsity_causal = NAN;
  int max_k_tried = 0;  // tau routers: the cap, n_blocks
  // tau routers: the fitted tau (NaN when unreachable or not a tau router), the mean realised
  // budget |S_t| there; top-k routers: selected_mean = k.
  double tau = NAN, selected_mean = NAN;
  int passes = 0;  // tau routers: analysis passes of this slot
};

// The tau grid: tau_i = i * resolution for i = 1 .. n - 1 and tau_n = 1 (n = ceil(1 / R)).
// Each tau is the double its printed form (format_shortest) parses to, so re-running analyze
// with the printed value routes with exactly the fitted tau.
struct TauGrid {
  double resolution = 0.001;
  int n = 1000;
  explicit TauGrid(double r) : resolution(r), n(static_cast<int>(std::ceil(1.0 / r - 1e-9))) {}
  double tau(int i) const {
    if (i >= n) return 1.0;
    return std::strtod(format_g(static_cast<double>(i) * resolution, 12).c_str(), nullptr);
  }
  int max_passes() const { return 1 + static_cast<int>(std::ceil(std::log2(static_cast<double>(n)))); }
};

// One tau router measurement of one head: means over the queries with a routable block (t >= B).
struct TauMeasure {
  double value = NAN, budget = NAN, sparsity = NAN;
};

// Analyses query head `head` of `group` (its KV group) with router `r` at block size B, cap
// k = n_blocks (never binding) and mass target tau, through analysis::analyze_group with the
// per-position arrays kept, and reduces them over t in [B, T) in index order (double).
TauMeasure measure_tau(const analysis::GroupInput& group, int64_t head, analysis::AnalyzeOptions opt,
                       analysis::RouterKind r, int64_t B, int64_t nb, double tau, const Target& target) {
  opt.routers = {r};
  opt.block_sizes = {B};
  opt.top_ks = {static_cast<int>(nb)};
  opt.sparsities.clear();
  opt.routing.tau = tau;
  opt.keep_arrays = true;
  opt.skip_full_attention = false;
  analysis::GroupInput in = group;
  in.heads = {head};
  const analysis::GroupResult res = analysis::analyze_group(in, opt, nullptr, nullptr);
  const analysis::PositionArrays* a = nullptr;
  for (const auto& x : res.arrays)
    if (x.key.head == head && x.key.router == r && x.key.block_size == B) a = &x;
  if (!a) throw std::logic_error("fit: the analysis returned no per-position arrays");
  const auto T = static_cast<int64_t>(a->coverage.size());
  const std::vector<float>& metric = target.metric == Metric::kl ? a->kl : a->coverage;
  double sum = 0, blocks = 0, sparsity = 0;
  int64_t n = 0;
  for (int64_t t = B; t < T; ++t, ++n) {
    sum += metric[static_cast<size_t>(t)];
    blocks += analysis::selection_count(a->selected.data() + t * nb, static_cast<int>(nb));
    sparsity += a->sparsity_token[static_cast<size_t>(t)];
  }
  TauMeasure m;
  if (n > 0) {
    m.value = sum / static_cast<double>(n);
    m.budget = blocks / static_cast<double>(n);
    m.sparsity = sparsity / static_cast<double>(n);
  }
  return m;
}

std::string budget_suffix(int64_t B, analysis::RouterKind r) {
  std::string s = "_B" + std::to_string(B);
  if (r != analysis::RouterKind::moba) s += std::string("_") + analysis::router_name(r);
  return s;
}

int run_fit(const std::vector<std::string>& argv) {
  const Args args(argv, with_routing_flags({"block-sizes", "target", "out", "layers", "heads", "routers", "max-k", "tau-resolution"}),
                  {"quiet", "help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw UsageError("expected exactly one DUMP argument (see --help)");
  const std::string dump_path = args.positional()[0];
  if (!args.has("block-sizes")) throw UsageError("--block-sizes is required");
  if (!args.has("target")) throw UsageError("--target is required (coverage=V, block_recall=V or kl=V)");
  const std::string out = args.required("out");
  const Target target = parse_target(args.str("target", ""));
  if (fs::is_directory(out))
    throw UsageError("--out " + out + " is a directory; give a path prefix (PATH.csv, PATH.json, ...)");
  // Checked before the analysis: the tables' files can be written, and neither is the dump.
  for (const char* ext : {".csv", ".json"}) check_output_file("--out", out + ext, {dump_path});

  analysis::AnalyzeOptions opt;
  opt.block_sizes = args.int_list("block-sizes", {}, 1, INT32_MAX);
  opt.routers.clear();
  // opt.routers: the top-k routers (coarse grid + refinement); tau_routers: the variable-budget
  // ones (tau bisection).
  std::vector<analysis::RouterKind> tau_routers;
  for (const auto& r : args.str_list("routers", {"moba"})) {
    analysis::RouterKind kind;
    if (!analysis::parse_router(r, &kind))
      throw UsageError("--routers: unknown router '" + r +
                       "' (one of moba, moba-kconv, oracle, quest, sink-window, minference-bs, nsa-shared, "
                       "moba-threshold, oracle-topp)");
    for (const auto x : opt.routers)
      if (x == kind) throw UsageError("--routers: " + r + " given twice");
    for (const auto x : tau_routers)
      if (x == kind) throw UsageError("--routers: " + r + " given twice");
    (analysis::router_is_variable_budget(kind) ? tau_routers : opt.routers).push_back(kind);
  }
  if (args.has("tau"))
    throw UsageError("--tau: fit searches tau itself for moba-threshold and oracle-topp (see --tau-resolution); "
                     "leave --tau out");
  if (!tau_routers.empty() && target.metric == Metric::block_recall)
    throw UsageError("--target block_recall: not fitted for the tau routers (moba-threshold, oracle-topp): "
                     "their tau fit is uncapped (k = n_blocks), where block recall's reference, the oracle's "
                     "top-(k-1) picks, is every routable block; use coverage or kl");
  if (args.has("tau-resolution") && tau_routers.empty())
    throw UsageError("--tau-resolution: only for the tau routers (--routers moba-threshold and/or oracle-topp)");
  const TauGrid grid(args.number("tau-resolution", 0.001, 1e-6, 0.5));
  opt.routing = parse_routing(args);
  const int64_t max_k_flag = args.integer("max-k", 0, 1, 1 << 20);
  std::vector<int> layers;
  for (const int64_t l : args.int_list("layers", {}, 0, INT32_MAX)) layers.push_back(static_cast<int>(l));
  const std::vector<int64_t> heads = args.int_list("heads", {}, 0, INT32_MAX);
  analysis::KeepFlags keep_flags;
  keep_flags.positions = "none";  // fit keeps no per-position data (no analysis.h5)
  opt.keep = analysis::resolve_keep_flags(keep_flags, heads);
  opt.top_ks = {1};
  {
    analysis::AnalyzeOptions all = opt;
    all.routers.insert(all.routers.end(), tau_routers.begin(), tau_routers.end());
    analysis::validate_options(all);
  }
  const analysis::DeviceInfo device = parse_device(args);
  opt.device = device.device;
  opt.skip_full_attention = true;
  const bool quiet = args.flag("quiet");

  const auto reader = open_dump(dump_path);
  const DumpInfo& info = reader->info();
  if (info.layers.empty()) throw InputError(dump_path, "/layers", "the dump has no layers");
  load_routing_weights(args, info.layers.front().head_dim, opt.routing);
  const std::string layout = layout_warning(info);
  if (!layout.empty()) std::fprintf(stderr, "moba fit: warning: %s\n", layout.c_str());
  for (const auto& l : info.layers)
    if (l.n_tokens != info.layers.front().n_tokens)
      throw InputError(dump_path, "/layers/" + std::to_string(l.index), "layers differ in n_tokens; fit needs one T");
  const int64_t T = info.layers.front().n_tokens;
  // The layers and heads, checked as analyze checks them (also when only tau routers run).
  std::vector<int> layer_list = layers;
  if (layer_list.empty())
    for (const auto& l : info.layers) layer_list.push_back(l.index);
  for (size_t i = 0; i < layer_list.size(); ++i) {
    bool found = false;
    for (const auto& l : info.layers) found = found || l.index == layer_list[i];
    if (!found)
      throw UsageError("--layers: the dump " + dump_path + " has no layer " + std::to_string(layer_list[i]));
    for (size_t j = 0; j < i; ++j)
      if (layer_list[i] == layer_list[j])
        throw UsageError("--layers: layer " + std::to_string(layer_list[i]) + " given twice");
  }
  for (size_t i = 0; i < heads.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (heads[i] == heads[j]) throw UsageError("--heads: head " + std::to_string(heads[i]) + " given twice");
  for (const int L : layer_list)
    for (const int64_t h : heads)
      if (h >= info.layer(L).n_q_heads)
        throw UsageError("--heads: layer " + std::to_string(L) + " has query heads 0.." +
                         std::to_string(info.layer(L).n_q_heads - 1) + ", not " + std::to_string(h));
  // The dump's SHA-256 for the tables' provenance, beside the analysis (once the arguments are
  // checked: an error then does not wait for a large dump's hash).
  std::future<std::string> dump_sha256 = std::async(std::launch::async, [dump_path] { return sha256_file(dump_path); });

  // Per B: n_blocks and the largest analysed k (k < n_blocks; k = n_blocks is full attention).
  std::map<int64_t, int64_t> n_blocks;
  std::map<int64_t, int> kmax_of;
  int kmax = 0;
  std::vector<int> extra;
  for (const int64_t B : opt.block_sizes) {
    const int64_t nb = (T + B - 1) / B;
    n_blocks[B] = nb;
    const int64_t cap = max_k_flag > 0 ? std::min<int64_t>(max_k_flag, nb - 1) : nb - 1;
    kmax_of[B] = static_cast<int>(std::max<int64_t>(cap, 0));
    kmax = std::max(kmax, kmax_of[B]);
    extra.push_back(kmax_of[B]);
    if (nb < 2 && !quiet)
      std::fprintf(stderr, "moba fit: note: B=%lld gives one block at T=%lld: only full attention (k = 1)\n",
                   static_cast<long long>(B), static_cast<long long>(T));
  }

  std::vector<FitRow> fits;
  int64_t non_monotone = 0;
  const bool exhaustive = target.metric == Metric::block_recall;
  if (!opt.routers.empty()) {
    std::map<SlotKey, Slot> slots;
    auto run_pass = [&](const std::vector<int>& ks, const char* what) {
      if (ks.empty()) return;
      opt.top_ks = ks;
      if (analysis::resolve_block_configs(opt, T).empty()) return;
      std::string list;
      for (const int k : ks) list += (list.empty() ? "" : ",") + std::to_string(k);
      if (!quiet) std::fprintf(stderr, "moba fit: %s pass, k = %s\n", what, list.c_str());
      collect(slots, analysis::analyze_dump(*reader, layers, heads, opt, quiet, nullptr, nullptr));
    };
    std::vector<int> pass1;
    if (exhaustive)
      for (int k = 1; k <= kmax; ++k) pass1.push_back(k);
    else
      pass1 = coarse_grid(kmax, extra);
    run_pass(pass1, exhaustive ? "exhaustive" : "coarse");

    // The slots analysed (every layer x head x router x B; also B with nothing to route).
    std::map<SlotKey, Slot> all_slots;
    for (const int L : layer_list) {
      const LayerInfo& li = info.layer(L);
      std::vector<int64_t> hs = heads;
      if (hs.empty())
        for (int64_t h = 0; h < li.n_q_heads; ++h) hs.push_back(h);
      for (const int64_t h : hs)
        for (const auto r : opt.routers)
          for (const int64_t B : opt.block_sizes) {
            const SlotKey key{L, h, static_cast<int>(r), B};
            Slot s;
            s.layer = L, s.head = h, s.router = r, s.block_size = B;
            all_slots[key] = s;
          }
    }
    auto value = [&](const analysis::SummaryRow& r) { return r.get(target.column()); };

    if (!exhaustive) {
      // Refinement: per slot, every k strictly between the first grid k that meets the target
      // and the grid k below it; one analysis per (layer, head) over the union of its slots'
      // gaps (a head whose bracket is tight is not analysed again).
      std::map<std::pair<int, int64_t>, std::set<int>> refine;
      for (const auto& [key, s] : slots) {
        int prev = 0;
        for (const auto& [k, row] : s.rows) {
          if (k > kmax_of[s.block_size]) break;
          if (target.met(value(row))) {
            for (int j = prev + 1; j < k; ++j) refine[{s.layer, s.head}].insert(j);
            break;
          }
          prev = k;
        }
      }
      size_t n_configs = 0;
      for (const auto& [lh, ks] : refine) n_configs += ks.size();
      if (!quiet && !refine.empty())
        std::fprintf(stderr, "moba fit: refinement pass, %zu heads, %zu (head, k) pairs\n", refine.size(), n_configs);
      for (const auto& [lh, ks] : refine) {
        opt.top_ks.assign(ks.begin(), ks.end());
        collect(slots, analysis::analyze_dump(*reader, {lh.first}, {lh.second}, opt, true, nullptr, nullptr));
      }
    }

    for (auto& [key, base] : all_slots) {
      const auto it = slots.find(key);
      const Slot& s = it == slots.end() ? base : it->second;
      FitRow f;
      f.layer = s.layer, f.head = s.head, f.router = s.router, f.block_size = s.block_size;
      f.n_blocks = n_blocks[s.block_size];
      f.n_tokens = T;
      const LayerInfo& li = info.layer(s.layer);
      f.kv_head = s.head / std::max<int64_t>(1, li.n_q_heads / std::max<int64_t>(1, li.n_kv_heads));
      f.max_k_tried = kmax_of[s.block_size];
      const analysis::SummaryRow* hit = nullptr;
      for (const auto& [k, row] : s.rows)
        if (k <= kmax_of[s.block_size] && target.met(value(row))) {
          hit = &row;
          break;
        }
      auto prev_value = [&](int k) {
        const auto p = s.rows.find(k - 1);
        return p == s.rows.end() ? NAN : value(p->second);
      };
      if (hit) {
        f.status = "ok";
        f.k = hit->key.top_k;
        f.achieved = value(*hit);
        f.achieved_prev = prev_value(f.k);
        f.sparsity_nominal = hit->get(analysis::SummaryColumn::sparsity_nominal);
        f.sparsity_causal = hit->get(analysis::SummaryColumn::sparsity_mean);
        f.selected_mean = f.k;
        if (f.k > 1 && s.rows.find(f.k - 1) == s.rows.end())
          throw std::logic_error("fit: k - 1 was not evaluated for " + hit->key.name());
        for (const auto& [k, row] : s.rows)
          if (k > f.k && !target.met(value(row))) {
            ++non_monotone;
            break;
          }
      } else if (max_k_flag == 0 || max_k_flag >= f.n_blocks) {
        f.status = "full_attention";
        f.k = static_cast<int>(f.n_blocks);
        f.achieved = target.full_attention_value();
        f.achieved_prev = prev_value(f.k);
        f.sparsity_nominal = 1.0 - static_cast<double>(f.k * f.block_size) / static_cast<double>(T);
        f.sparsity_causal = 0.0;
        f.selected_mean = f.k;
      } else {
        f.status = "unreachable";
        const auto last = s.rows.find(f.max_k_tried);
        f.achieved = last == s.rows.end() ? NAN : value(last->second);
      }
      fits.push_back(f);
    }
  }

  // The tau routers: per (layer, KV group) the group's tensors are read once; per (head,
  // router, B) tau = 1, then bisection over the grid (docs/fit.md#tau).
  if (!tau_routers.empty()) {
    int64_t n_slots = 0;
    for (const int L : layer_list)
      n_slots += (heads.empty() ? info.layer(L).n_q_heads : static_cast<int64_t>(heads.size())) *
                 static_cast<int64_t>(tau_routers.size() * opt.block_sizes.size());
    if (!quiet)
      std::fprintf(stderr, "moba fit: tau search, %lld (layer, head, router, B) slots, resolution %s, at most %d "
                           "analysis passes each (k = n_blocks, uncapped)\n",
                   static_cast<long long>(n_slots), format_shortest(grid.resolution).c_str(), grid.max_passes());
    for (const int L : layer_list) {
      const LayerInfo& li = info.layer(L);
      const int64_t group = li.n_q_heads / std::max<int64_t>(1, li.n_kv_heads);
      std::vector<int64_t> hs = heads;
      if (hs.empty())
        for (int64_t h = 0; h < li.n_q_heads; ++h) hs.push_back(h);
      std::sort(hs.begin(), hs.end());
      for (int64_t g = 0; g < li.n_kv_heads; ++g) {
        std::vector<int64_t> gh;
        for (const int64_t h : hs)
          if (h / group == g) gh.push_back(h);
        if (gh.empty()) continue;
        const Tensor3 q = reader->read(L, TensorKind::q, g * group, group);
        const Tensor3 k = reader->read(L, TensorKind::k, g, 1);
        const Tensor3 v = reader->read(L, TensorKind::v, g, 1);
        analysis::GroupInput in;
        in.layer = L;
        in.kv_head = g;
        in.q = q.view();
        in.q_head_first = g * group;
        in.k = k.view();
        in.v = v.view();
        in.dtype = li.dtype;
        for (const int64_t h : gh)
          for (const auto r : tau_routers)
            for (const int64_t B : opt.block_sizes) {
              FitRow f;
              f.layer = L, f.head = h, f.kv_head = g, f.router = r, f.block_size = B;
              f.n_blocks = n_blocks[B];
              f.n_tokens = T;
              f.max_k_tried = static_cast<int>(f.n_blocks);
              if (f.n_blocks < 2) {
                // One block: no query has a routable block; the budget is full attention.
                f.status = "full_attention";
                f.achieved = target.full_attention_value();
                f.sparsity_causal = 0.0;
                f.selected_mean = 1.0;
                fits.push_back(f);
                continue;
              }
              auto probe = [&](int i) {
                ++f.passes;
                return measure_tau(in, h, opt, r, B, f.n_blocks, grid.tau(i), target);
              };
              const TauMeasure at_one = probe(grid.n);
              if (!target.met(at_one.value)) {
                f.status = "unreachable";
                f.achieved = at_one.value;
                f.selected_mean = at_one.budget;
                f.sparsity_causal = at_one.sparsity;
              } else {
                int lo = 0, hi = grid.n;  // hi meets the target (measured), lo misses (measured unless 0)
                TauMeasure m_hi = at_one, m_lo;
                while (hi - lo > 1) {
                  const int mid = lo + (hi - lo) / 2;
                  const TauMeasure m = probe(mid);
                  if (target.met(m.value)) {
                    hi = mid;
                    m_hi = m;
                  } else {
                    lo = mid;
                    m_lo = m;
                  }
                }
                f.status = "ok";
                f.tau = grid.tau(hi);
                f.achieved = m_hi.value;
                f.achieved_prev = lo > 0 ? m_lo.value : NAN;
                f.selected_mean = m_hi.budget;
                f.sparsity_causal = m_hi.sparsity;
              }
              if (!quiet)
                std::fprintf(stderr, "moba fit: layer %d head %lld %s B=%lld: %s, %s %s, %.2f blocks per query (%d passes)\n",
                             L, static_cast<long long>(h), analysis::router_name(r), static_cast<long long>(B),
                             f.status == "ok" ? ("tau " + format_shortest(f.tau)).c_str() : "unreachable at tau = 1",
                             target.name.c_str(), format_number(f.achieved).c_str(), f.selected_mean, f.passes);
              fits.push_back(f);
            }
      }
    }
  }
  std::stable_sort(fits.begin(), fits.end(), [](const FitRow& a, const FitRow& b) {
    return std::make_tuple(a.layer, a.head, static_cast<int>(a.router), a.block_size) <
           std::make_tuple(b.layer, b.head, static_cast<int>(b.router), b.block_size);
  });

  // The table: PATH.csv and PATH.json.
  std::string csv = "layer,head,kv_head,router,block_size,n_tokens,n_blocks,target,target_value,status,k,k_fraction,"
                    "achieved,achieved_prev,sparsity_nominal,sparsity_causal,max_k_tried,tau,tau_resolution,"
                    "selected_blocks_mean\n";
  std::vector<std::string> json_rows;
  for (const auto& f : fits) {
    const bool is_tau = analysis::router_is_variable_budget(f.router);
    const double kfrac = f.k > 0 ? static_cast<double>(f.k) / static_cast<double>(f.n_blocks) : NAN;
    csv += std::to_string(f.layer) + "," + std::to_string(f.head) + "," + std::to_string(f.kv_head) + "," +
           analysis::router_name(f.router) + "," + std::to_string(f.block_size) + "," + std::to_string(f.n_tokens) +
           "," + std::to_string(f.n_blocks) + "," + target.name + "," + format_number(target.value) + "," +
           f.status + "," + (f.k > 0 ? std::to_string(f.k) : "") + "," + format_number(kfrac) + "," +
           format_number(f.achieved) + "," + format_number(f.achieved_prev) + "," +
           format_number(f.sparsity_nominal) + "," + format_number(f.sparsity_causal) + "," +
           std::to_string(f.max_k_tried) + "," + (std::isfinite(f.tau) ? format_shortest(f.tau) : "") + "," +
           (is_tau ? format_shortest(grid.resolution) : "") + "," + format_number(f.selected_mean) + "\n";
    JsonObject o;
    o.add_integer("layer", f.layer).add_integer("head", f.head).add_integer("kv_head", f.kv_head);
    o.add_string("router", analysis::router_name(f.router)).add_integer("block_size", f.block_size);
    o.add_integer("n_tokens", f.n_tokens).add_integer("n_blocks", f.n_blocks);
    o.add_string("target", target.name).add_number("target_value", target.value).add_string("status", f.status);
    if (f.k > 0) o.add_integer("k", f.k);
    else o.add_null("k");
    o.add_number("k_fraction", kfrac).add_number("achieved", f.achieved).add_number("achieved_prev", f.achieved_prev);
    o.add_number("sparsity_nominal", f.sparsity_nominal).add_number("sparsity_causal", f.sparsity_causal);
    o.add_integer("max_k_tried", f.max_k_tried);
    if (std::isfinite(f.tau)) o.add_raw("tau", format_shortest(f.tau));
    else o.add_null("tau");
    if (is_tau) o.add_raw("tau_resolution", format_shortest(grid.resolution));
    else o.add_null("tau_resolution");
    o.add_number("selected_blocks_mean", f.selected_mean);
    json_rows.push_back(o.str());
  }
  std::string search;
  if (!opt.routers.empty()) search = exhaustive ? "k: exhaustive" : "k: coarse grid + refinement";
  if (!tau_routers.empty())
    search += (search.empty() ? "" : "; ") + std::string("tau: bisection, resolution ") +
              format_shortest(grid.resolution) + ", uncapped (k = n_blocks), mean over t >= B";
  const std::string sha = dump_sha256.get();
  JsonObject routing;
  for (const auto& [name, value] : routing_record(opt.routing))
    if (name != "tau") routing.add_string(name, value);  // fit searches tau itself
  std::string table_json = "{\"command\": \"fit\", \"dump\": " + json_string(dump_path) +
                           ", \"dump_sha256\": " + json_string(sha) +
                           ", \"dump_bytes\": " + std::to_string(std::filesystem::file_size(dump_path)) +
                           ", \"routing\": " + routing.str() +
                           ", \"git_commit\": " + json_string(build_commit_label()) +
                           ", \"target\": " + json_string(target.name) +
                           ", \"target_value\": " + json_number(target.value) +
                           ", \"search\": " + json_string(search) + ", \"rows\": [\n";
  for (size_t i = 0; i < json_rows.size(); ++i) table_json += "  " + json_rows[i] + (i + 1 < json_rows.size() ? ",\n" : "\n");
  table_json += "]}\n";
  // Every output file, written together at the end (write_files_atomic: all or none).
  std::vector<std::pair<std::string, std::string>> files = {{out + ".csv", csv}, {out + ".json", table_json}};

  // Budgets per (router, B): layers indexed by the dump's layer index, heads by query head;
  // null where not fitted or unreachable.
  int max_layer = 0;
  for (const auto& l : info.layers) max_layer = std::max(max_layer, l.index);
  auto layers_json = [](const std::vector<std::string>& rows) {
    std::string s;
    for (size_t i = 0; i < rows.size(); ++i) s += (i ? ",\n  " : "") + rows[i];
    return "[\n  " + s + "\n]";
  };
  std::vector<analysis::RouterKind> all_routers = opt.routers;
  all_routers.insert(all_routers.end(), tau_routers.begin(), tau_routers.end());
  for (const auto r : all_routers)
    for (const int64_t B : opt.block_sizes) {
      const bool is_tau = analysis::router_is_variable_budget(r);
      // Per layer and head: the first and the second array of the files (k and k / n_blocks,
      // or tau and the realised mean budget).
      std::vector<std::vector<std::string>> first(static_cast<size_t>(max_layer + 1)), second(first.size());
      std::vector<bool> fitted(first.size(), false);
      for (const auto& l : info.layers) {
        first[static_cast<size_t>(l.index)].assign(static_cast<size_t>(l.n_q_heads), "null");
        second[static_cast<size_t>(l.index)].assign(static_cast<size_t>(l.n_q_heads), "null");
      }
      for (const auto& f : fits) {
        if (f.router != r || f.block_size != B) continue;
        const auto L = static_cast<size_t>(f.layer), h = static_cast<size_t>(f.head);
        fitted[L] = true;
        if (is_tau) {
          if (f.status == "unreachable") continue;
          // One block (full attention): any tau routes the same (nothing is routable); 1.
          first[L][h] = format_shortest(std::isfinite(f.tau) ? f.tau : 1.0);
          second[L][h] = json_number(f.selected_mean);
        } else {
          if (f.k <= 0) continue;
          first[L][h] = std::to_string(f.k);
          second[L][h] = json_number(static_cast<double>(f.k) / static_cast<double>(f.n_blocks));
        }
      }
      std::vector<std::string> first_layers, second_layers;
      for (size_t L = 0; L < first.size(); ++L) {
        first_layers.push_back(fitted[L] ? json_array(first[L]) : "null");
        second_layers.push_back(fitted[L] ? json_array(second[L]) : "null");
      }
      auto head = [&](const char* kind) {
        JsonObject o;
        o.add_integer("block_size", B).add_integer("n_blocks", n_blocks[B]).add_integer("n_tokens", T);
        o.add_string("router", analysis::router_name(r)).add_string("kind", kind);
        o.add_string("target", target.name).add_number("target_value", target.value);
        o.add_string("dump_sha256", sha);
        return o;
      };
      if (is_tau) {
        const std::string name = out + ".tau_B" + std::to_string(B) + "_" + analysis::router_name(r) + ".json";
        JsonObject tj = head("tau");
        tj.add_raw("tau_resolution", format_shortest(grid.resolution));
        tj.add_string("cap", "none: k = n_blocks");
        tj.add_string("metric_queries", "t >= block_size (queries with a routable block)");
        tj.add_raw("tau", layers_json(first_layers));
        tj.add_raw("selected_blocks_mean", layers_json(second_layers));
        files.emplace_back(name, tj.str() + "\n");
      } else {
        const std::string suffix = budget_suffix(B, r);
        JsonObject kj = head("top_k");
        kj.add_raw("layers", layers_json(first_layers));
        JsonObject dj = head("top_k_fraction");
        dj.add_raw("density", layers_json(second_layers));
        files.emplace_back(out + ".k" + suffix + ".json", kj.str() + "\n");
        files.emplace_back(out + ".density" + suffix + ".json", dj.str() + "\n");
      }
    }
  write_files_atomic(files);

  // The report: the k or tau table per (router, B), then the heads that need full attention or
  // cannot reach the target.
  std::printf("moba fit %s: target %s, %zu (layer, head, router, B) slots (device: %s; search: %s)\n",
              dump_path.c_str(), target.text().c_str(), fits.size(), device.description.c_str(), search.c_str());
  for (const auto r : all_routers)
    for (const int64_t B : opt.block_sizes) {
      const bool is_tau = analysis::router_is_variable_budget(r);
      for (int table = 0; table < (is_tau ? 2 : 1); ++table) {
        if (!is_tau)
          std::printf("\n%s B=%lld (n_blocks %lld): fitted k per head (- = unreachable within --max-k)\n",
                      analysis::router_name(r), static_cast<long long>(B), static_cast<long long>(n_blocks[B]));
        else if (table == 0)
          std::printf("\n%s B=%lld (n_blocks %lld): fitted tau per head (uncapped; - = unreachable at tau = 1)\n",
                      analysis::router_name(r), static_cast<long long>(B), static_cast<long long>(n_blocks[B]));
        else
          std::printf("\n%s B=%lld: mean blocks per query at that tau (t >= B, current block included)\n",
                      analysis::router_name(r), static_cast<long long>(B));
        int cur = -1;
        for (const auto& f : fits) {
          if (f.router != r || f.block_size != B) continue;
          if (f.layer != cur) {
            std::printf("%slayer %2d:", cur >= 0 ? "\n" : "", f.layer);
            cur = f.layer;
          }
          if (!is_tau) {
            if (f.k > 0) std::printf(" %3d", f.k);
            else std::printf("   -");
          } else if (table == 0) {
            if (f.status == "unreachable") std::printf("      -");
            else std::printf(" %6s", format_shortest(std::isfinite(f.tau) ? f.tau : 1.0).c_str());
          } else {
            std::printf(" %6.2f", f.selected_mean);
          }
        }
        std::printf("\n");
      }
    }
  int64_t n_full = 0, n_unreach = 0;
  for (const auto& f : fits) {
    if (f.status == "ok") continue;
    (f.status == "full_attention" ? n_full : n_unreach) += 1;
    std::string why;
    if (analysis::router_is_variable_budget(f.router))
      why = f.status == "full_attention" ? "one block: nothing to route"
                                         : "best " + format_number(f.achieved) + " at tau = 1 (every routable block)";
    else if (f.status == "full_attention")
      why = "no k < n_blocks meets the target (k = n_blocks = " + std::to_string(f.n_blocks) + ")";
    else
      why = "best " + format_number(f.achieved) + " at k = " + std::to_string(f.max_k_tried) + " (--max-k " +
            std::to_string(max_k_flag) + ")";
    std::printf("%s: layer %d head %lld %s B=%lld: %s\n", f.status == "full_attention" ? "full attention" : "unreachable",
                f.layer, static_cast<long long>(f.head), analysis::router_name(f.router),
                static_cast<long long>(f.block_size), why.c_str());
  }
  std::printf("\n%lld of %zu fitted below full attention, %lld need full attention, %lld unreachable\n",
              static_cast<long long>(fits.size() - n_full - n_unreach), fits.size(), static_cast<long long>(n_full),
              static_cast<long long>(n_unreach));
  if (non_monotone > 0)
    std::printf("note: on %lld slots a k above the fitted one misses the target again (the metric is not monotone "
                "there; the fitted k is still the smallest evaluated k that meets it)\n",
                static_cast<long long>(non_monotone));
  int64_t at_floor = 0;
  for (const auto& f : fits)
    if (f.status == "ok" && std::isfinite(f.tau) && f.tau == grid.tau(1)) ++at_floor;
  if (at_floor > 0)
    std::printf("note: on %lld tau slots the fitted tau is the grid's first point (%s): the router's smallest "
                "selection already meets the target (moba-threshold adds at least one routable block at any tau; "
                "oracle-topp stops at the current block when its own mass reaches tau)\n",
                static_cast<long long>(at_floor), format_shortest(grid.tau(1)).c_str());
  std::string names;
  for (const auto& file : files) names += (names.empty() ? "" : ", ") + file.first;
  std::printf("wrote %s\n", names.c_str());
  return 0;
}

const Command kFit("fit", "per-head budget fitting: smallest top-k or tau per head meeting a coverage / recall / KL target",
                   run_fit);

}  // namespace
}  // namespace moba::cli
