// `moba analyze`: the granularity ablation of one dump (DESIGN.md §4, §5, §7). Streams one
// KV group at a time (analysis/analyze.h) and writes, into DIR:
//   summary.csv    one row per layer x head x router x B x k (DESIGN §7 columns and more)
//   aggregate.csv  count-weighted rows per layer and overall (scope = layer | overall)
//   buckets.csv    per-position-bucket means of the main metrics
//   summary.json   every row of the two CSVs
//   analysis.h5    per head, the summary rows and bucket curves of every configuration; per-position
//                  metrics and selections of those the keep rule keeps (--positions,
//                  --keep-*, the default set's per-head budget; analysis/position_keep.h),
//                  compressed
//   run.json       the run record (resolved config, git commit, device)
// Everything is written into DIR.partial and renamed to DIR at the end; the CSV/JSON files
// are rewritten (atomically) after every layer, so an interrupted run keeps its finished
// layers in DIR.partial (until the next run into DIR starts afresh). Bad input or usage
// removes DIR.partial and leaves DIR untouched.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "analysis/analyze.h"
#include "analysis/backend.h"
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/run_record.h"
#include "analysis/stage_profile.h"
#include "core/atomic_file.h"
#include "core/background.h"
#include "core/dir_lock.h"
#include "core/dump.h"
#include "core/errors.h"
#include "core/h5_output.h"
#include "core/json_writer.h"
#include "core/sha256.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/command.h"
#include "experiments/routing_args.h"
#include "kernels/backend.h"
#ifdef MOBA_HAVE_CUDA
#include "kernels/cuda/tuning.h"
#endif

namespace fs = std::filesystem;

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba analyze DUMP --block-sizes 16,32,64,128 (--top-k 2,4,8 | --sparsity 0.75[,...]) --out DIR\n"
    "                    [--layers 0,1] [--heads 0,3] [--routers moba,oracle,moba-kconv] [options]\n"
    "\n"
    "Routes every query at every block size B and top-k, against full causal attention, and\n"
    "measures (docs/metrics.md): coverage R (attention mass in the selected blocks), oracle\n"
    "coverage (equal-budget oracle by block mass), KL proxy -ln R, block recall vs the oracle,\n"
    "token top-n recall, output relative error and cosine, sparsity, and the routing SNR with\n"
    "the FlashMoBA model's parameters measured on the data. Means are over queries with a\n"
    "choice (more routable blocks than k - 1).\n"
    "\n"
    "  --block-sizes LIST      block sizes (at most 8; one dense pass serves them all)\n"
    "  --top-k LIST            top-k values: every (B, k) pair is analysed, or\n"
    "  --sparsity LIST         fixed sparsity s: per B, k = max(1, round((1 - s) * T / B)), so\n"
    "                          k*B ~ (1 - s) T is the same for every B (T = n_tokens; halves\n"
    "                          round away from zero)\n"
    "  --out DIR               output directory (replaced atomically; an existing DIR must be\n"
    "                          empty or an earlier analyze output)\n"
    "  --layers LIST           layers (all)\n"
    "  --heads LIST            query heads (all)\n"
    "  --routers LIST          of moba, moba-kconv, oracle, quest, sink-window, minference-bs,\n"
    "                          nsa-shared, moba-threshold, oracle-topp (moba,oracle); SNR probe\n"
    "                          for moba, moba-kconv only\n"
    "  --tau X                 moba-threshold / oracle-topp: the mass to reach, in (0, 1] (0.9);\n"
    "                          k of each (B, k) caps their budget; selected_blocks_mean (k_sel)\n"
    "                          is the realised budget\n"
    "  --tie recent|older      tie rule of every selector (recent)\n"
    "  --gqa per-head|shared   GQA routing policy (per-head)\n"
    "  --pool-precision dump|fp32\n"
    "  --kconv W               moba-kconv width 3|5 (3); --kconv-weights FILE; --kconv-apply routing|both\n"
    "  --top-n N               token recall's n (10)\n"
    "  --buckets N             position buckets (16), or --bucket-width W tokens\n"
    "  --trailing N            trailing window in tokens (last 1/16 of the positions)\n"
    "  --query-chunk N         queries per dense-pass chunk on the CPU (256): memory against\n"
    "                          overhead, results do not depend on it; the GPU picks its own\n"
    "  --device cpu|cuda|auto  where the analysis runs (cpu). cuda: every stage on the GPU\n"
    "                          (docs/gpu.md); options it does not take run routing, metrics\n"
    "                          and SNR on the CPU, and analyze says so\n"
    "  --gpus N|all            GPU workers: each KV group's heads are split over N workers, one\n"
    "                          per visible GPU by default (all); results do not depend on N\n"
    "  --profile               print the wall time of each stage (GPU and host) on stderr at the end\n"
    "  --trace FILE            write the stages as a timeline per thread to FILE (Chrome trace JSON,\n"
    "                          for Perfetto or chrome://tracing); adds no GPU synchronisation\n"
    "  --positions none|metrics|selected|all\n"
    "                          per-position data kept in analysis.h5 (selected): none = bucket\n"
    "                          curves only; metrics = metric arrays of the kept set; selected =\n"
    "                          metric arrays and selections of the kept set; all = both for\n"
    "                          every head and configuration (no limit: T^2 x configurations).\n"
    "                          Every configuration always gets its summary and position-bucket\n"
    "                          curves. Without --keep-*, the kept set is the first analysed head\n"
    "                          of every layer, and of its configurations (B, k, router) those\n"
    "                          that fit a 256 MiB per-head budget, smallest first (the same\n"
    "                          ones for every layer); the others keep bucket curves only\n"
    "  --keep-heads LIST       the kept set's heads, of every layer: first (the lowest analysed\n"
    "                          head; default), all, or indices\n"
    "  --keep-configs LIST     the kept set's configurations: all (default) or B64_k8, B128 (every k)\n"
    "  --keep-routers LIST     the kept set's routers: all (default) or names\n"
    "                          A set named with --keep-* is kept whole, without a budget (a\n"
    "                          note says when it is larger than 256 MiB per head)\n"
    "  --precision exact|fast  CUDA numerics (exact): the dump's own precision, or bf16 tensor cores\n"
    "  --json                  print the rows as JSON on stdout instead of the table\n"
    "  --quiet                 no progress on stderr\n"
    "\n"
    "Column notes: sparsity_mean is TOKEN sparsity with the causal denominator,\n"
    "1 - attended keys / (t + 1); block_density_mean is |S_t| / (current block + 1);\n"
    "sparsity_nominal is 1 - k B / T. snr_emp = mean(D)/std(D) of gate-score gaps between the\n"
    "signal block and other routable blocks; snr_theory = delta_mu_eff / (sigma sqrt(2B)) from\n"
    "the measured model parameters; snr_synth = the synth dump's own delta_mu_eff sqrt(d/2B).\n";

// The four files side by side (B4: 73 ms one after another, the end of the run waits on them).
void write_tables(const fs::path& dir, const analysis::DumpAnalysis& a) {
  analysis::StageTimer timer(false);
  std::vector<analysis::SummaryRow> agg = a.layer_rows;
  agg.insert(agg.end(), a.overall_rows.begin(), a.overall_rows.end());
  auto summary = std::async(std::launch::async, [&] {
    write_file_atomic((dir / "summary.csv").string(), analysis::rows_to_csv(a.head_rows));
  });
  auto buckets = std::async(std::launch::async, [&] {
    write_file_atomic((dir / "buckets.csv").string(), analysis::buckets_to_csv(a.buckets));
  });
  auto json = std::async(std::launch::async, [&] {
    std::vector<analysis::SummaryRow> all = a.head_rows;
    all.insert(all.end(), agg.begin(), agg.end());
    write_file_atomic((dir / "summary.json").string(), analysis::rows_to_json(all));
  });
  write_file_atomic((dir / "aggregate.csv").string(), analysis::rows_to_csv(agg));
  summary.get();  // rethrows a failed write (the others are waited for by their futures)
  buckets.get();
  json.get();
  timer.lap("host: tables (summary.csv, aggregate.csv, buckets.csv, summary.json)");
}

// How many configurations (head rows) analysis.h5 holds, and how many of them keep their
// per-position arrays / selections under `keep`.
struct KeptCounts {
  int64_t configurations = 0, with_arrays = 0, with_selection = 0;
};
KeptCounts count_kept(const analysis::DumpAnalysis& a, const analysis::PositionKeep& keep) {
  KeptCounts c;
  for (const auto& r : a.head_rows) {
    ++c.configurations;
    c.with_arrays += keep.keeps_arrays(r.key) ? 1 : 0;
    c.with_selection += keep.keeps_selection(r.key) ? 1 : 0;
  }
  return c;
}

// DIR may be replaced only when it is absent, empty, or an earlier analyze output.
void check_out_dir(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) throw UsageError("--out " + dir.string() + " exists and is not a directory");
  if (fs::is_empty(dir) || fs::exists(dir / "run.json")) return;
  throw UsageError("--out " + dir.string() + " exists and is not an earlier `moba analyze` output; refusing to replace it");
}

int run_analyze(const std::vector<std::string>& argv) {
  const Args args(argv,
                  with_routing_flags({"block-sizes", "top-k", "sparsity", "out", "layers", "heads", "routers", "top-n",
                                      "buckets", "bucket-width", "trailing", "query-chunk", "gpus", "positions",
                                      "keep-heads", "keep-configs", "keep-routers", "keep-budget-bytes",
                                      "attn-window-bytes", "attn-split", "tuning", "trace"}),
                  {"json", "quiet", "help", "profile"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw UsageError("expected exactly one DUMP argument (see --help)");
  const std::string dump_path = args.positional()[0];
  // "DIR/" names DIR: without the trailing separators, DIR.partial would land inside DIR
  // and the final swap would rename DIR into itself.
  fs::path out_dir = args.required("out");
  while (!out_dir.has_filename() && out_dir.has_relative_path()) out_dir = out_dir.parent_path();
  check_output_parent("--out", out_dir.string());
  if (!args.has("block-sizes")) throw UsageError("--block-sizes is required");

  analysis::AnalyzeOptions opt;
  opt.block_sizes = args.int_list("block-sizes", {}, 1, INT32_MAX);
  for (const int64_t k : args.int_list("top-k", {}, 1, 1 << 20)) opt.top_ks.push_back(static_cast<int>(k));
  opt.sparsities = args.number_list("sparsity", {}, 0.0, 0.999999);
  opt.routers.clear();
  for (const auto& r : args.str_list("routers", {"moba", "oracle"})) {
    const analysis::RouterKind kind = analysis::router_from_name(r);
    for (const auto x : opt.routers)
      if (x == kind) throw UsageError("--routers: " + r + " given twice");
    opt.routers.push_back(kind);
  }
  auto& ro = opt.routing;
  ro = parse_routing(args);
  opt.top_n = static_cast<int>(args.integer("top-n", 10, 1, 4096));
  if (args.has("buckets") && args.has("bucket-width"))
    throw UsageError("--buckets and --bucket-width are alternatives: give one");
  opt.n_buckets = static_cast<int>(args.integer("buckets", 16, 1, 1 << 20));
  opt.bucket_width = args.integer("bucket-width", 0, 1, INT64_MAX / 2);
  opt.trailing = args.integer("trailing", 0, 1, INT64_MAX / 2);
  opt.query_chunk = args.integer("query-chunk", 256, 1, 1 << 20);
  if (args.str("gpus", "all") != "all") opt.gpus = static_cast<int>(args.integer("gpus", 0, 1, 1024));
  opt.profile = args.flag("profile");
  // --trace FILE: the stages' intervals from here on (analysis/stage_profile.h), written at the end.
  const std::string trace_path = args.str("trace", "");
  if (args.has("trace")) {
    check_output_file("--trace", trace_path, {dump_path});
    analysis::stage_trace_start();
    analysis::stage_trace_name_thread("main: the analysis (GPU enqueue on cuda)");
  }
  // Not in --help: the GPU path's attention window and its query parts (docs/gpu.md), for A/B timing.
  opt.attn_window_bytes = args.integer("attn-window-bytes", 0, 1, INT64_MAX / 2);
  opt.attn_split = static_cast<int>(args.integer("attn-split", 0, 1, 64));
  // Not in --help either: the CUDA kernels' tuning knobs, as `moba bench --tuning` (speed only).
  if (args.has("tuning")) {
#ifdef MOBA_HAVE_CUDA
    kernels::CudaTuning tuning;
    if (const char* e = kernels::parse_cuda_tuning(args.str("tuning", ""), &tuning))
      throw UsageError(std::string("--") + e);
    kernels::set_cuda_tuning(tuning);
#else
    throw UsageError("--tuning sets CUDA kernel knobs; this build has no CUDA backend");
#endif
  }
  std::vector<int> layers;
  for (const int64_t l : args.int_list("layers", {}, 0, INT32_MAX)) layers.push_back(static_cast<int>(l));
  const std::vector<int64_t> heads = args.int_list("heads", {}, 0, INT32_MAX);
  analysis::KeepFlags keep_flags;
  keep_flags.positions = args.str("positions", "selected");
  keep_flags.heads = args.str_list("keep-heads", {});
  keep_flags.configs = args.str_list("keep-configs", {});
  keep_flags.routers = args.str_list("keep-routers", {});
  opt.keep = analysis::resolve_keep_flags(keep_flags, heads);
  // Not in --help: the default kept set's budget in bytes, for tests that need a small one.
  if (args.has("keep-budget-bytes")) {
    if (opt.keep.budget_bytes <= 0)
      throw UsageError("--keep-budget-bytes: only the default kept set has a budget (not with --keep-* or "
                       "--positions all|none)");
    opt.keep.budget_bytes = args.integer("keep-budget-bytes", analysis::kDefaultKeepBudget, 1, INT64_MAX / 2);
  }
  for (const auto r : opt.keep.routers)
    if (std::find(opt.routers.begin(), opt.routers.end(), r) == opt.routers.end())
      throw UsageError(std::string("--keep-routers: ") + analysis::router_name(r) + " is not analysed (see --routers)");
  analysis::validate_options(opt);
  const analysis::DeviceInfo device = parse_device(args);
  opt.device = device.device;
  // The CUDA context (~0.1 s on an H200) made on a thread of its own while the dump is opened
  // and its first KV group read; joined when this function returns.
  std::future<bool> cuda_context;
  if (opt.device == analysis::Device::cuda)
    cuda_context = std::async(std::launch::async, [] {
      analysis::StageTimer timer(false);
      const bool ok = kernels::cuda_create_context();
      timer.lap("host: CUDA context");
      return ok;
    });
  const bool quiet = args.flag("quiet"), json = args.flag("json");
  check_out_dir(out_dir);

  const auto reader = open_dump(dump_path);
  // The dump's SHA-256 for run.json, computed beside the analysis (GBs take seconds).
  std::future<std::string> input_sha256 = std::async(std::launch::async, [dump_path] {
    lower_thread_priority();  // needed only at the end: the group reads come first
    analysis::StageTimer timer(false);
    std::string sha = sha256_file(dump_path);
    timer.lap("host: dump SHA-256 (run.json)");
    return sha;
  });
  const DumpInfo& info = reader->info();
  // Where the stages run (the GPU-resident analysis, or which steps stay on the host and why).
  const std::string device_split =
      info.layers.empty() ? std::string()
                          : analysis::analyze_device_split(opt, info.layers.front().n_tokens, info.layers.front().head_dim);
  if (!device_split.empty() && !quiet) std::fprintf(stderr, "moba analyze: %s\n", device_split.c_str());
  if (!info.layers.empty()) load_routing_weights(args, info.layers.front().head_dim, ro);
  const std::string layout = layout_warning(info);
  if (!layout.empty()) std::fprintf(stderr, "moba analyze: warning: %s\n", layout.c_str());
  // Degenerate requests are said, never silently run: k >= n_blocks (full attention) is left
  // out, a --sparsity value giving an already requested k is analysed once, one collapsing to
  // k = 1 is flagged. Nothing left to route is a usage error.
  opt.skip_full_attention = true;
  const int64_t n_tokens = info.layers.empty() ? 0 : info.layers.front().n_tokens;
  const std::vector<analysis::ConfigNote> notes = analysis::describe_configs(opt, n_tokens);
  if (analysis::resolve_block_configs(opt, n_tokens).empty())
    throw UsageError("nothing to route: at T=" + std::to_string(n_tokens) + " every requested (B, k) has k >= n_blocks, " +
                     "where MoBA equals full attention (" + notes.front().text + ")");
  for (const auto& n : notes) std::fprintf(stderr, "moba analyze: note: %s\n", n.text.c_str());
  const std::vector<analysis::BlockConfig> resolved = analysis::resolve_block_configs(opt, n_tokens);
  for (const auto& c : opt.keep.configs)
    if (std::none_of(resolved.begin(), resolved.end(), [&](const analysis::BlockConfig& r) {
          return r.block_size == c.first && (c.second == 0 || r.top_k == c.second);
        }))
      throw UsageError("--keep-configs: " + analysis::keep_config_name(c) + " is not analysed at T=" +
                       std::to_string(n_tokens) + " (see --block-sizes, --top-k / --sparsity)");
  // The default kept set's budget, decided once from the plan: every layer and head keeps the
  // same (configuration, router) pairs. A named set is kept whole; say when it is large.
  std::vector<std::pair<int64_t, int>> plan_configs;
  for (const auto& c : resolved) plan_configs.emplace_back(c.block_size, c.top_k);
  analysis::apply_keep_budget(&opt.keep, n_tokens, plan_configs, opt.routers);
  const int64_t kept_bytes = analysis::kept_bytes_per_head(opt.keep, n_tokens, plan_configs, opt.routers);
  const bool named_set = opt.keep.budget_bytes == 0 && (opt.keep.level == analysis::PositionLevel::metrics ||
                                                        opt.keep.level == analysis::PositionLevel::selected);
  if (named_set && kept_bytes > analysis::kDefaultKeepBudget)
    std::fprintf(stderr,
                 "moba analyze: note: the kept set named by --keep-* holds %s of per-position data per kept head, "
                 "more than the default set's %s budget; kept as named\n",
                 analysis::format_bytes(kept_bytes).c_str(), analysis::format_bytes(analysis::kDefaultKeepBudget).c_str());

  const fs::path work = out_dir.string() + ".partial";
  std::error_code ec;
  // DIR.partial locked while this run writes it: a second analyze into the same --out is
  // refused instead of deleting this one's files (the lock follows DIR.partial's rename to DIR).
  fs::create_directories(work, ec);
  // The message names --out as the user gave it; DIR.partial is an internal detail.
  if (ec) throw FileNotFoundError(out_dir.string(), "--out", "cannot create the output directory: " + ec.message());
  const std::unique_ptr<DirLock> work_lock = DirLock::try_acquire(work.string());
  if (!work_lock)
    throw UsageError("--out " + out_dir.string() + ": another moba process is writing it (" + work.string() +
                     " is locked); wait for it to end or choose another --out");
  for (const auto& entry : fs::directory_iterator(work, ec)) fs::remove_all(entry.path(), ec);
  const auto t_start = std::chrono::steady_clock::now();
  // The CUDA context torn down on a thread of its own once the device work is over, beside the
  // last summaries, the tables and analysis.h5's commit, rather than in the process's exit after
  // them (70-92 ms on an H100; B4 -20 to -30 ms of wall: kernels/cuda/NOTES.md, twenty-seventh
  // session). Joined before this returns (also when it throws); nothing after it uses CUDA.
  struct DeviceRelease {
    std::thread thread;
    void join() {
      if (thread.joinable()) thread.join();
    }
    ~DeviceRelease() { join(); }
  } release;
  if (opt.device == analysis::Device::cuda)
    opt.device_work_done = [&release] {
      release.thread = std::thread([] {
        analysis::StageTimer timer(false);  // --trace only
        analysis::release_gpus();
        timer.lap("host: CUDA context released");
      });
    };
  analysis::DumpAnalysis result;
  double commit_seconds = 0;
  try {
    H5Output h5((work / "analysis.h5").string());
    result = analysis::analyze_dump(*reader, layers, heads, opt, quiet, &h5,
                                    [&](const analysis::DumpAnalysis& a, int) { write_tables(work, a); });
    h5.set_string("/", "dump", dump_path);
    h5.set_string("/", "git_commit", build_commit_label());
    h5.set_string("/", "device", device.description);
    h5.set_integer("/", analysis::kAttrLayout, analysis::kLayoutVersion);
    const KeptCounts kept = count_kept(result, opt.keep);
    h5.set_string("/", analysis::kAttrPositions, analysis::position_level_name(opt.keep.level));
    h5.set_string("/", analysis::kAttrPositionsRule, opt.keep.describe());
    h5.set_integer("/", analysis::kAttrNConfigurations, kept.configurations);
    h5.set_integer("/", analysis::kAttrNWithArrays, kept.with_arrays);
    h5.set_integer("/", analysis::kAttrNWithSelection, kept.with_selection);
    h5.set_integer("/", analysis::kAttrPositionsBudget, opt.keep.budget_bytes);
    h5.set_integer("/", analysis::kAttrPositionsKeptBytes, kept_bytes);
    const auto t_commit = std::chrono::steady_clock::now();
    h5.commit();
    commit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_commit).count();
    analysis::stage_trace_add("host: analysis.h5 commit", "", t_commit, std::chrono::steady_clock::now());
  } catch (const InputError&) {
    fs::remove_all(work, ec);
    throw;
  } catch (const UsageError&) {
    fs::remove_all(work, ec);
    throw;
  } catch (...) {
    // Interrupted, an output that failed (a full disk) or an internal error: the tables are
    // rewritten after every finished layer, so keep them when there are any.
    if (fs::exists(work / "summary.csv"))
      std::fprintf(stderr, "moba analyze: the finished layers' tables are kept in %s (%s is unchanged; "
                           "analyze does not resume: run the command again to redo it)\n",
                   work.string().c_str(), out_dir.string().c_str());
    else
      fs::remove_all(work, ec);
    throw;
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  analysis::RunRecord rec = analysis::make_run_record("analyze", build_commit_label(), device.description);
  analysis::record_input(rec, dump_path, input_sha256.get());
  rec.set_string("dump", dump_path);
  rec.set_strings("argv", argv);
  std::vector<double> block_sizes;
  for (const auto b : opt.block_sizes) block_sizes.push_back(static_cast<double>(b));
  rec.set_numbers("block_sizes", block_sizes);
  // (B, k) pairs as [B, k] arrays: the analysed ones, and every one requested.
  auto pairs_json = [](const std::vector<std::pair<int64_t, int>>& pairs) {
    std::vector<std::string> items;
    for (const auto& [B, k] : pairs) items.push_back("[" + std::to_string(B) + ", " + std::to_string(k) + "]");
    return json_array(items);
  };
  std::vector<std::pair<int64_t, int>> analysed;
  for (const auto& r : result.head_rows)
    if (r.key.head == result.head_rows.front().key.head && r.key.layer == result.head_rows.front().key.layer &&
        r.key.router == result.head_rows.front().key.router)
      analysed.emplace_back(r.key.block_size, r.key.top_k);
  rec.config["configs_B_k"] = pairs_json(analysed);
  rec.config["configs_requested"] = pairs_json(analysis::requested_configs(opt, n_tokens));
  std::vector<std::string> note_texts, routers;
  for (const auto& n : notes) note_texts.push_back(n.text);
  rec.set_strings("config_notes", note_texts);
  for (const auto r : opt.routers) routers.push_back(analysis::router_name(r));
  rec.set_strings("routers", routers);
  for (const auto& [name, value] : routing_record(ro)) rec.set_string(name, value);
  rec.set_number("kconv_width", ro.kconv_width);
  rec.set_number("tau", ro.tau);
  rec.set_number("top_n", opt.top_n);
  if (opt.bucket_width > 0) rec.set_number("bucket_width", static_cast<double>(opt.bucket_width));
  else rec.set_number("buckets", opt.n_buckets);
  rec.set_number("trailing", static_cast<double>(opt.trailing > 0 ? opt.trailing : (n_tokens + 15) / 16));
  rec.set_number("query_chunk", static_cast<double>(opt.query_chunk));
  // What analysis.h5 kept (DESIGN.md §8b): the rule, and the counts of configurations.
  {
    const KeptCounts kept = count_kept(result, opt.keep);
    JsonObject o;
    o.add_string("positions", analysis::position_level_name(opt.keep.level));
    std::vector<std::string> heads_kept, configs_kept, routers_kept;
    for (const auto h : opt.keep.heads) heads_kept.push_back(std::to_string(h));
    for (const auto& c : opt.keep.configs) configs_kept.push_back(json_string(analysis::keep_config_name(c)));
    for (const auto r : opt.keep.routers) routers_kept.push_back(json_string(analysis::router_name(r)));
    const bool narrowed = opt.keep.level == analysis::PositionLevel::metrics ||
                          opt.keep.level == analysis::PositionLevel::selected;
    o.add_raw("keep_heads", narrowed && !heads_kept.empty() ? json_array(heads_kept) : json_string("all"));
    o.add_raw("keep_configs", narrowed && !configs_kept.empty() ? json_array(configs_kept) : json_string("all"));
    o.add_raw("keep_routers", narrowed && !routers_kept.empty() ? json_array(routers_kept) : json_string("all"));
    o.add_string("rule", opt.keep.describe());
    // The default set's budget (null without one) and what it admitted; the bytes one kept
    // head holds (analysis/position_keep.h position_bytes).
    if (opt.keep.budget_bytes > 0) {
      o.add_integer("budget_bytes_per_head", opt.keep.budget_bytes);
      std::vector<std::string> admitted;
      for (const auto& p : opt.keep.admission.admitted) admitted.push_back(json_string(analysis::kept_pair_name(p)));
      o.add_raw("budget_admitted", json_array(admitted));
      o.add_integer("budget_candidates", opt.keep.admission.n_candidates);
    } else {
      o.add_null("budget_bytes_per_head");
    }
    o.add_integer("kept_bytes_per_head", kept_bytes);
    o.add_integer("n_configurations", kept.configurations);
    o.add_integer("n_with_arrays", kept.with_arrays);
    o.add_integer("n_with_selection", kept.with_selection);
    o.add_integer("n_with_bucket_curves", kept.configurations);
    rec.config["kept"] = o.str();
  }
  rec.set_number("wall_seconds", wall);
  if (!device_split.empty()) rec.set_string("device_split", device_split);
  // Which GPUs this run could see (`moba sweep --gpus` pins each job to one).
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) rec.set_string("cuda_visible_devices", visible);
  write_file_atomic((work / "run.json").string(), analysis::to_json(rec) + "\n");

  // Swap the finished directory in.
  if (fs::exists(out_dir)) {
    const fs::path old = out_dir.string() + ".old-" + std::to_string(getpid());
    fs::rename(out_dir, old);
    fs::rename(work, out_dir);
    fs::remove_all(old, ec);
  } else {
    fs::rename(work, out_dir);
  }

  if (json) {
    std::vector<analysis::SummaryRow> all = result.head_rows;
    all.insert(all.end(), result.layer_rows.begin(), result.layer_rows.end());
    all.insert(all.end(), result.overall_rows.begin(), result.overall_rows.end());
    std::fputs(analysis::rows_to_json(all).c_str(), stdout);
  } else {
    std::printf("moba analyze %s: %zu head rows (device: %s, %.1f s)\n", dump_path.c_str(), result.head_rows.size(),
                device.description.c_str(), wall);
    if (!device_split.empty()) std::printf("  (%s)\n", device_split.c_str());
    std::printf("overall (count-weighted over layers and heads; means over queries with a choice):\n%s%s",
                analysis::format_table(result.overall_rows).c_str(), analysis::table_legend().c_str());
    std::printf("wrote %s/{summary.csv, aggregate.csv, buckets.csv, summary.json, analysis.h5, run.json}\n",
                out_dir.string().c_str());
    const KeptCounts kept = count_kept(result, opt.keep);
    std::printf("analysis.h5 keeps %s (%lld of %lld configurations with per-position arrays, %lld with selections)\n",
                opt.keep.describe().c_str(), static_cast<long long>(kept.with_arrays),
                static_cast<long long>(kept.configurations), static_cast<long long>(kept.with_selection));
  }
  release.join();
  if (!trace_path.empty()) {
    analysis::stage_trace_add("moba analyze (wall)", "", t_start, std::chrono::steady_clock::now());
    write_file_atomic(trace_path, analysis::stage_trace_json());
  }
  std::fflush(stdout);  // the profile after the table, also when both go to one pipe
  if (opt.profile)
    std::fprintf(stderr,
                 "moba analyze --profile: %.3f s wall; stages summed over heads (gpu: each synchronised; host: "
                 "summary rows and writes, inside the gpu stages' head summary on cuda):\n%s  %-36s %9.3f s\n",
                 wall, analysis::stage_profile_report().c_str(), "host: analysis.h5 commit", commit_seconds);
  return 0;
}

const Command kAnalyze("analyze", "routing metrics and SNR at several block sizes (granularity ablation)", run_analyze);

}  // namespace
}  // namespace moba::cli
