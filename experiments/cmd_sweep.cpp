// `moba sweep`: batch experiments (docs/sweep.md). A TOML config names dumps, layer sets,
// block sizes and budgets; every (dump x layer set x budget) job is one `moba analyze` run,
// executed as a child process of this binary into DIR/jobs/<id>/, so a crashing job cannot
// corrupt the sweep. A job is done iff its DONE marker (written last) holds the job's hash:
// `--resume` skips done jobs and reruns the rest from scratch. DIR/sweep.csv is rebuilt from
// the done job directories (atomically) after every job and by `--collect`. With device cuda
// or auto and 2+ visible GPUs, jobs run one per GPU at a time (run_parallel, `--gpus`).

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "analysis/backend.h"
#include "analysis/run_record.h"
#include "core/atomic_file.h"
#include "core/dir_lock.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "core/sha256.h"
#include "core/interrupt.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/child_process.h"
#include "experiments/command.h"
#include "experiments/sweep/config.h"
#include "experiments/sweep/jobs.h"
#ifdef MOBA_HAVE_MPI
#include "experiments/sweep/mpi_queue.h"
#endif
#include "experiments/sweep/rundir.h"
#include "kernels/backend.h"

namespace fs = std::filesystem;

namespace moba::cli {
namespace {

using namespace moba::sweep;

const char* const kUsage =
    "usage: moba sweep CONFIG.toml --out DIR [--resume] [--shard I/N] [--gpus N|all] [--dry-run] [--quiet]\n"
    "       moba sweep --collect DIR\n"
    "       moba sweep --sha256 FILE...\n"
    "\n"
    "Runs a batch of `moba analyze` jobs described by a TOML config (docs/sweep.md): every\n"
    "dump x layer set x budget is one job, run as a child process into DIR/jobs/<id>/. Budgets:\n"
    "top_k lists, nominal sparsity, or matched attended keys (per B the k whose mean causal\n"
    "attended-key count is closest to the target). DIR gets config.resolved.toml,\n"
    "provenance.json (build, host, device, every dump's SHA-256), jobs.tsv, budgets.csv and\n"
    "sweep.csv: one long table of every job's summary.csv and aggregate.csv rows.\n"
    "\n"
    "  --out DIR      run directory; an existing non-empty DIR is refused unless --resume\n"
    "  --resume       continue the sweep in DIR: done jobs are skipped, others rerun\n"
    "  --shard I/N    run only jobs j with j mod N = I (0 <= I < N); shards share DIR. Without\n"
    "                 it, SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT select the shard\n"
    "  --gpus N|all   device cuda or auto with 2+ visible GPUs: run up to N jobs at once, each\n"
    "                 pinned to one GPU by CUDA_VISIBLE_DEVICES (default all; 1 = one job at a\n"
    "                 time, unpinned); results are those of a one-at-a-time run\n"
    "  --dry-run      check the config and DIR, list the jobs and matched budgets; write nothing\n"
    "  --collect DIR  rebuild DIR/sweep.csv (and provenance.json from shards) from the done\n"
    "                 jobs; exit 1 when some jobs are not done\n"
    "  --sha256 FILE  print the SHA-256 that provenance records, as sha256sum does\n"
    "  --quiet        no progress on stderr\n"
    "\n"
    "Ctrl-C stops the running job and keeps the done ones; run again with --resume.\n"
#ifdef MOBA_HAVE_MPI
    "Built with MPI: `mpirun -np N moba sweep CONFIG.toml --out DIR` hands the jobs out from rank 0\n"
    "to ranks 1..N-1 (docs/sweep.md).\n"
#endif
    ;

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(line.find_first_not_of(" \t", p + 1));
    }
  return "unknown";
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string format_seconds(double s) {
  char buf[32];
  if (s < 90) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else if (s < 5400) std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  return buf;
}

// The NVIDIA kernel module's version line (/proc/driver/nvidia/version), "" when absent.
std::string nvidia_driver_version() {
  std::ifstream f("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(f, line)) return "";
  const auto p = line.find("Kernel Module");
  if (p == std::string::npos) return line;
  const auto b = line.find_first_not_of(" \t", p + 13);
  const auto e = line.find_first_of(" \t", b);
  return b == std::string::npos ? line : line.substr(b, e - b);
}

// One GPU a job can be pinned to: its entry for the child's CUDA_VISIBLE_DEVICES (this
// process's own list entry when CUDA_VISIBLE_DEVICES is set, else its index) and its name.
struct Gpu {
  std::string visible, name;
};

// The GPUs this process sees. MOBA_SWEEP_FAKE_GPUS=N (a test hook) stands N fake devices in
// for CUDA's, so the all-GPUs scheduling runs and is tested on a machine without a GPU.
std::vector<Gpu> visible_gpus() {
  const char* fake = std::getenv("MOBA_SWEEP_FAKE_GPUS");
  const bool faked = fake && *fake;
  const int n = faked ? static_cast<int>(parse_int("MOBA_SWEEP_FAKE_GPUS", fake, 0, 1024)) : kernels::cuda_device_count();
  std::vector<std::string> ids;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES"); v && *v) {
    std::string list = v;
    for (size_t b = 0; b <= list.size();) {
      const size_t e = std::min(list.find(',', b), list.size());
      ids.push_back(list.substr(b, e - b));
      b = e + 1;
    }
  }
  std::vector<Gpu> out;
  for (int i = 0; i < n; ++i)
    out.push_back({i < static_cast<int>(ids.size()) ? ids[i] : std::to_string(i),
                   faked ? "fake (MOBA_SWEEP_FAKE_GPUS)" : kernels::cuda_device_name(i)});
  return out;
}

// How many jobs run at once: `--gpus` (N or all; default all) over the visible GPUs when the
// device may be a GPU; 1 = the one-at-a-time loop.
int concurrent_jobs(const std::string& device, const std::string& gpus_flag, size_t n_gpus) {
  if (device == "cpu") {
    if (!gpus_flag.empty())
      throw UsageError("--gpus: the config's device is \"cpu\"; set device = \"cuda\" or \"auto\" to run on GPUs");
    return 1;
  }
  int64_t n = static_cast<int64_t>(n_gpus);
  if (!gpus_flag.empty() && gpus_flag != "all") {
    n = parse_int("--gpus", gpus_flag, 1, 1 << 20);
    if (n > 1 && n > static_cast<int64_t>(n_gpus))
      throw UsageError("--gpus " + gpus_flag + ": only " + std::to_string(n_gpus) + " GPU(s) visible");
  }
  return n >= 2 ? static_cast<int>(n) : 1;
}

// Where the jobs ran, for provenance.json.
struct Placement {
  std::vector<Gpu> gpus;                                        // visible GPUs (device cuda/auto)
  int concurrent = 1;                                           // jobs at once
  int max_in_flight = 0;                                        // measured peak of running jobs
  std::vector<std::pair<std::string, std::string>> job_device;  // job id -> where it ran
};

struct Shard {
  int index = 0, count = 1;
  std::string source = "none";  // none | --shard | SLURM_ARRAY_TASK_ID
};

Shard parse_shard(const Args& args) {
  Shard s;
  if (args.has("shard")) {
    const std::string v = args.str("shard", "");
    const auto slash = v.find('/');
    if (slash == std::string::npos) throw UsageError("--shard: expected I/N (e.g. 0/4), got '" + v + "'");
    s.count = static_cast<int>(parse_int("--shard N", v.substr(slash + 1), 1, 1 << 20));
    s.index = static_cast<int>(parse_int("--shard I", v.substr(0, slash), 0, s.count - 1));
    s.source = "--shard";
    return s;
  }
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* count = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (id && count && *id && *count) {
    const char* min = std::getenv("SLURM_ARRAY_TASK_MIN");
    const int64_t lo = (min && *min) ? parse_int("SLURM_ARRAY_TASK_MIN", min, 0, INT32_MAX) : 0;
    s.count = static_cast<int>(parse_int("SLURM_ARRAY_TASK_COUNT", count, 1, 1 << 20));
    s.index = static_cast<int>(parse_int("SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN",
                                         std::to_string(parse_int("SLURM_ARRAY_TASK_ID", id, 0, INT32_MAX) - lo), 0,
                                         s.count - 1));
    s.source = "SLURM_ARRAY_TASK_ID";
  }
  return s;
}

std::string provenance_json(const std::string& config_path, const SweepConfig& cfg, const std::vector<DumpFacts>& dumps,
                            const Shard& shard, const std::string& device, const std::string& start,
                            const std::string& end, const std::string& status, int n_jobs, int n_shard_jobs,
                            int n_done, int n_skipped, const std::vector<std::string>& failed,
                            const std::vector<std::string>& argv, const Placement& placement) {
  const BuildInfo& b = build_info();
  std::vector<std::string> command = {json_string("moba"), json_string("sweep")};
  for (const auto& x : argv) command.push_back(json_string(x));
  JsonObject device_json;
  device_json.add_string("requested", cfg.device)
      .add_string("resolved", device)
      .add_string("cpu_model", cpu_model())
      .add_integer("hardware_threads", std::thread::hardware_concurrency());
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) device_json.add_string("OMP_NUM_THREADS", omp);
  else device_json.add_null("OMP_NUM_THREADS");
  if (cfg.device != "cpu") device_json.add_string("cuda_device", kernels::cuda_device_name());
  if (!placement.gpus.empty()) {
    std::vector<std::string> gpus;
    for (size_t i = 0; i < placement.gpus.size(); ++i)
      gpus.push_back(JsonObject()
                         .add_integer("index", static_cast<int64_t>(i))
                         .add_string("cuda_visible_devices", placement.gpus[i].visible)
                         .add_string("name", placement.gpus[i].name)
                         .str());
    device_json.add_raw("gpus", json_array(gpus));
    const auto add_text = [&](const char* key, const std::string& v) {
      if (v.empty()) device_json.add_null(key);
      else device_json.add_string(key, v);
    };
    add_text("cuda_driver_version", kernels::cuda_driver_version());
    add_text("cuda_runtime_version", kernels::cuda_runtime_version());
    add_text("nvidia_driver_version", nvidia_driver_version());
  }
  device_json.add_integer("concurrent_jobs", placement.concurrent);
  JsonObject environment;
  for (const char* v : {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                        "SLURM_JOB_NODELIST", "CUDA_VISIBLE_DEVICES"})
    if (const char* e = std::getenv(v)) environment.add_string(v, e);
  std::vector<std::string> failed_json, dumps_json;
  for (const auto& f : failed) failed_json.push_back(json_string(f));
  // analyze itself draws no random numbers; synthetic dumps carry their generator's seed.
  JsonObject seeds;
  for (const auto& d : dumps) {
    if (d.seed.empty()) seeds.add_null(d.name);
    else seeds.add_string(d.name, d.seed);
    dumps_json.push_back(JsonObject()
                             .add_string("path", d.path)
                             .add_string("name", d.name)
                             .add_integer("size", static_cast<int64_t>(d.size))
                             .add_string("sha256", d.sha256)
                             .add_raw("info", d.info_json)
                             .str());
  }
  JsonObject o;
  o.add_string("moba_version", version_line())
      .add_raw("build", JsonObject()
                            .add_string("version", b.version)
                            .add_string("git_commit", b.git_commit)
                            .add_bool("git_dirty", b.git_dirty)
                            .add_string("compiler", b.compiler)
                            .add_string("build_type", b.build_type)
                            .add_bool("cuda", b.cuda)
                            .str())
      .add_raw("command", json_array(command))
      .add_string("config", fs::weakly_canonical(config_path).string())
      .add_string("config_sha256", sha256_file(config_path))
      .add_string("host", host_name())
      .add_raw("device", device_json.str())
      .add_raw("shard", JsonObject()
                            .add_integer("index", shard.index)
                            .add_integer("count", shard.count)
                            .add_string("source", shard.source)
                            .str())
      .add_raw("environment", environment.str())
      .add_string("start_utc", start);
  if (end.empty()) o.add_null("end_utc");
  else o.add_string("end_utc", end);
  o.add_string("status", status)
      .add_raw("jobs", JsonObject()
                           .add_integer("total", n_jobs)
                           .add_integer("this_shard", n_shard_jobs)
                           .add_integer("done", n_done)
                           .add_integer("skipped_as_done", n_skipped)
                           .add_raw("failed", json_array(failed_json))
                           .str())
      .add_raw("seeds", seeds.str())
      .add_raw("dumps", json_array(dumps_json));
  JsonObject job_device;
  for (const auto& [id, where] : placement.job_device) job_device.add_string(id, where);
  o.add_raw("job_devices", job_device.str()).add_integer("max_concurrent_jobs", placement.max_in_flight);
  return o.str() + "\n";
}

// Runs `moba analyze ...` as a child of this binary, output into `log`. Returns the child's
// wait status; after a SIGINT/SIGTERM (passed on to the child) throws Interrupted.
int run_child(const std::vector<std::string>& args, const std::string& log, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {"/proc/self/exe"};
  argv.insert(argv.end(), args.begin(), args.end());
  const int status = run_child_process(argv, log, env);
  if (const int sig = pending_interrupt()) throw Interrupted(sig);
  return status;
}

// Whether an existing DIR may be used: empty; --resume with the same resolved config; or a
// shard of the same sweep whose own jobs have not started.
void check_run_dir(const fs::path& dir, const std::string& resolved, bool resume, const Shard& shard,
                   const std::vector<Job>& mine) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) throw UsageError("--out " + dir.string() + " exists and is not a directory");
  bool empty = true;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") == std::string::npos) empty = false;
  if (empty) return;
  const std::string existing = read_file((dir / "config.resolved.toml").string());
  if (resume) {
    if (existing.empty())
      throw UsageError("--resume: " + dir.string() + " is not a `moba sweep` run directory (no config.resolved.toml)");
    if (existing != resolved)
      throw UsageError("--resume: " + dir.string() + " was made by a different configuration (compare " +
                       (dir / "config.resolved.toml").string() + " with this config); use another --out DIR");
    return;
  }
  // Shards of one sweep share DIR; one that starts while another is setting DIR up may see
  // only the other's directories and temporaries, before config.resolved.toml.
  bool same_sweep = existing == resolved;
  if (shard.count > 1 && existing.empty()) {
    same_sweep = true;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n != "jobs" && n != "logs" && n.find(".tmp-") == std::string::npos && n.rfind("provenance.shard-", 0) != 0)
        same_sweep = false;
    }
  }
  if (shard.count > 1 && same_sweep) {
    bool started = false;
    for (const auto& j : mine)
      started = started || fs::exists(job_dir(dir.string(), j)) || fs::exists(job_log(dir.string(), j));
    if (!started) return;
  }
  throw UsageError("--out " + dir.string() + " exists and is not empty: use --resume to continue the sweep in it, "
                   "or another --out DIR");
}

// Merges provenance.shard-*.json into provenance.json (--collect).
void merge_provenance(const fs::path& dir) {
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("provenance.shard-", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".json") shards.push_back(e.path());
  }
  if (shards.empty()) return;
  std::sort(shards.begin(), shards.end());
  std::vector<std::string> parts;
  for (const auto& shard : shards) {
    std::string t = read_file(shard.string());
    while (!t.empty() && t.back() == '\n') t.pop_back();
    parts.push_back(t);
  }
  write_file_atomic((dir / "provenance.json").string(), JsonObject()
                                                       .add_string("merged_by", version_line())
                                                       .add_string("merged_utc", analysis::utc_now())
                                                       .add_raw("shards", json_array(parts))
                                                       .str() +
                                                       "\n");
}

int run_collect(const fs::path& dir) {
  const CollectResult r = collect(dir.string());
  merge_provenance(dir);
  std::fprintf(stderr, "moba sweep --collect: %d of %d jobs done, %zu rows -> %s\n", r.n_done, r.n_jobs, r.n_rows,
               (dir / "sweep.csv").string().c_str());
  if (!r.missing.empty()) {
    std::string ids;
    for (size_t i = 0; i < r.missing.size() && i < 10; ++i) ids += (i ? ", " : "") + r.missing[i];
    if (r.missing.size() > 10) ids += ", ...";
    std::fprintf(stderr, "moba sweep --collect: %zu jobs are not done (%s); run the sweep again with --resume\n",
                 r.missing.size(), ids.c_str());
    return 1;
  }
  return 0;
}

std::string budgets_csv(const SweepConfig& cfg, const std::vector<DumpFacts>& dumps, bool quiet) {
  std::string s = "dump,n_tokens,budget_mode,budget_target,target_keys,block_size,top_k,attended_keys_mean,deviation\n";
  for (const auto& d : dumps)
    for (const auto& t : matched_targets(cfg, d.n_tokens)) {
      double lo = 1e300, hi = -1e300;
      std::string line;
      for (const int64_t B : cfg.block_sizes) {
        const int64_t k = matched_top_k(d.n_tokens, B, t.keys);
        const double m = attended_keys_mean(d.n_tokens, B, k);
        lo = std::min(lo, m);
        hi = std::max(hi, m);
        char buf[512];
        std::snprintf(buf, sizeof buf, "%s,%lld,%s,%s,%.4f,%lld,%lld,%.4f,%+.4f\n", d.name.c_str(),
                      static_cast<long long>(d.n_tokens), t.mode.c_str(), t.text.c_str(), t.keys,
                      static_cast<long long>(B), static_cast<long long>(k), m, m / t.keys - 1);
        s += buf;
        std::snprintf(buf, sizeof buf, " B=%lld:k=%lld:%.1f", static_cast<long long>(B), static_cast<long long>(k), m);
        line += buf;
      }
      const double spread = hi / lo - 1;
      if (!quiet)
        std::fprintf(stderr, "moba sweep: %s (T=%lld) %s=%s (%.1f keys):%s; spread over B %.1f%%%s\n", d.name.c_str(),
                     static_cast<long long>(d.n_tokens), t.mode.c_str(), t.text.c_str(), t.keys, line.c_str(),
                     100 * spread, spread > 0.05 ? " (over 5%: no k matches closer at this T and these B)" : "");
    }
  return s;
}

// One sweep's state once the config is read: the serial loop and the MPI coordinator share it.
struct SweepRun {
  std::vector<std::string> argv;
  std::string config_path, resolved, device, start, prov_path, shard_flag, gpus_flag;
  fs::path dir;
  bool resume = false, quiet = false, dry_run = false, mpi = false;
  Shard shard;
  SweepConfig cfg;
  std::vector<DumpFacts> dumps;
  std::vector<Job> jobs, mine;
  int n_done = 0, n_skipped = 0, n_run = 0;
  std::vector<std::string> failed;
  double spent = 0;
  Placement placement;
  std::unique_ptr<DirLock> dir_lock;  // DIR's, from setup() on

  void provenance(const std::string& end, const std::string& status) {
    write_file_atomic(prov_path, provenance_json(config_path, cfg, dumps, shard, device, start, end, status,
                                            static_cast<int>(jobs.size()), static_cast<int>(mine.size()), n_done,
                                            n_skipped, failed, argv, placement));
  }

  // Reads the config and dumps, checks DIR; unless a dry run, writes the shared files.
  // Returns false for a dry run (done: the jobs were listed).
  bool setup() {
    cfg = parse_config(config_path);
    device = analysis::resolve_device(cfg.device).description;
    if (cfg.device != "cpu") placement.gpus = visible_gpus();
    placement.concurrent = mpi ? 1 : concurrent_jobs(cfg.device, gpus_flag, placement.gpus.size());
    start = analysis::utc_now();
    if (!quiet) std::fprintf(stderr, "moba sweep: hashing %zu dump(s)\n", cfg.dumps.size());
    dumps = inspect_dumps(cfg);
    std::vector<std::string> notes;
    jobs = expand_jobs(cfg, dumps, &notes);
    for (const auto& n : notes) std::fprintf(stderr, "moba sweep: note: %s\n", n.c_str());
    if (jobs.empty()) throw UsageError(config_path + ": nothing to route: every job's (B, k) has k >= n_blocks");
    for (const auto& j : jobs)
      if (j.index % shard.count == shard.index) mine.push_back(j);
    resolved = resolved_toml(cfg);
    check_run_dir(dir, resolved, resume, shard, mine);
    if (dry_run) {
      budgets_csv(cfg, dumps, quiet);
      std::printf("job\tshard\tdone\tanalyze arguments\n");
      for (const auto& j : jobs) {
        std::string a;
        for (const auto& x : j.args) a += (a.empty() ? "" : " ") + x;
        std::printf("%s\t%d\t%s\t%s\n", j.id.c_str(), j.index % shard.count,
                    job_done(dir.string(), j.id, j.hash) ? "yes" : "no", a.c_str());
      }
      std::fprintf(stderr, "moba sweep --dry-run: %zu jobs (%zu in this shard), %d at a time; nothing written\n",
                   jobs.size(), mine.size(), placement.concurrent);
      return false;
    }
    // DIR locked for this run's life: a second sweep into it (a retry script beside a running
    // one) is refused instead of rerunning the same jobs over each other's files. Shards of one
    // sweep share it (a shared lock, which an unsharded run's excludes).
    dir_lock = DirLock::try_acquire(dir.string(), shard.count > 1);
    if (!dir_lock)
      throw UsageError("--out " + dir.string() + ": another moba sweep is running in it; wait for it to end" +
                       (shard.count > 1 ? " (shards of one sweep may share it: a run without --shard holds it)" : ""));
    check_run_dir(dir, resolved, resume, shard, mine);  // again, under the lock: a run just finished beside this one
    for (const char* name : {"config.resolved.toml", "jobs.tsv", "budgets.csv", "sweep.csv", "provenance.json"})
      remove_stale_temporaries((dir / name).string());
    write_file_atomic((dir / "config.resolved.toml").string(), resolved);
    fs::create_directories(dir / "jobs");
    fs::create_directories(dir / "logs");
    write_file_atomic((dir / "jobs.tsv").string(), jobs_tsv(jobs));
    write_file_atomic((dir / "budgets.csv").string(), budgets_csv(cfg, dumps, quiet));
    prov_path = (dir / (shard.count > 1 ? "provenance.shard-" + std::to_string(shard.index) + ".json"
                                        : "provenance.json")).string();
    shard_flag = shard.source == "--shard" ? " --shard " + std::to_string(shard.index) + "/" + std::to_string(shard.count) : "";
    provenance("", "running");
    if (resume) note_foreign_jobs();
    if (!quiet)
      std::fprintf(stderr, "moba sweep: %zu jobs%s -> %s (device: %s%s)\n", mine.size(),
                   shard.count > 1 ? (" (shard " + std::to_string(shard.index) + "/" + std::to_string(shard.count) +
                                      " of " + std::to_string(jobs.size()) + ")").c_str()
                                   : "",
                   dir.string().c_str(), device.c_str(),
                   placement.concurrent > 1
                       ? (", " + std::to_string(placement.concurrent) + " jobs at a time, one per GPU").c_str()
                       : "");
    return true;
  }

  // Says which job directories under DIR/jobs are no job of this sweep: made for a dump whose
  // content has changed since (a job's id holds its dump's hash) or an earlier config. They are
  // left as they are and are not in sweep.csv, but a script globbing jobs/*/ would mix them in.
  void note_foreign_jobs() const {
    std::set<std::string> ids;
    for (const auto& j : jobs) ids.insert(j.id);
    std::vector<std::string> foreign;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir / "jobs", ec)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory(ec) && n.find('.') == std::string::npos && !ids.count(n)) foreign.push_back(n);
    }
    if (foreign.empty()) return;
    std::sort(foreign.begin(), foreign.end());
    std::fprintf(stderr,
                 "moba sweep: note: %zu director%s in %s %s no job of this sweep (e.g. %s: made for a dump whose "
                 "content has changed since, or another config); they are not in sweep.csv and are left as they "
                 "are: remove them if they are not needed\n",
                 foreign.size(), foreign.size() == 1 ? "y" : "ies", (dir / "jobs").string().c_str(),
                 foreign.size() == 1 ? "is" : "are", foreign[0].c_str());
  }

  // The jobs to run: done ones (with --resume) are counted and left out.
  std::vector<const Job*> todo() {
    std::vector<const Job*> out;
    for (size_t i = 0; i < mine.size(); ++i) {
      const Job& j = mine[i];
      if (resume && job_done(dir.string(), j.id, j.hash)) {
        ++n_done;
        ++n_skipped;
        if (!quiet) std::fprintf(stderr, "moba sweep: [%zu/%zu] %s done already\n", i + 1, mine.size(), j.id.c_str());
        continue;
      }
      clear_job(dir.string(), j);
      out.push_back(&j);
    }
    return out;
  }

  std::vector<std::string> child_args(const Job& j) const {
    std::vector<std::string> child = j.args;
    child.insert(child.end(), {"--out", job_dir(dir.string(), j), "--quiet"});
    return child;
  }

  // Records a finished job: marks it done (or failed) and rebuilds sweep.csv.
  void finished(const Job& j, int status, double secs, size_t left, const std::string& where) {
    spent += secs;
    ++n_run;
    const size_t k = static_cast<size_t>(j.index / shard.count) + 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(fs::path(job_dir(dir.string(), j)) / "summary.csv")) {
      mark_done(dir.string(), j);
      ++n_done;
      collect(dir.string());
      if (!quiet)
        std::fprintf(stderr, "moba sweep: [%zu/%zu] %s done%s in %s; ETA %s\n", k, mine.size(), j.id.c_str(),
                     where.c_str(), format_seconds(secs).c_str(),
                     format_seconds(spent / n_run * left / placement.concurrent).c_str());
    } else {
      failed.push_back(j.id);
      const std::string why = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                : "signal " + std::to_string(WTERMSIG(status));
      std::fprintf(stderr, "moba sweep: [%zu/%zu] %s FAILED%s (%s); see %s\n", k, mine.size(), j.id.c_str(),
                   where.c_str(), why.c_str(), job_log(dir.string(), j).c_str());
    }
    provenance("", "running");
  }

  int finish() {
    const CollectResult r = collect(dir.string());
    provenance(analysis::utc_now(), failed.empty() ? "complete" : "failed");
    if (!quiet)
      std::fprintf(stderr, "moba sweep: %d of %zu jobs done (%d run, %d skipped as done); %s: %zu rows from %d of %d jobs\n",
                   n_done, mine.size(), n_run, n_skipped, (dir / "sweep.csv").string().c_str(), r.n_rows, r.n_done,
                   r.n_jobs);
    if (shard.count > 1 && !quiet)
      std::fprintf(stderr, "moba sweep: shard %d/%d finished; when every shard has, run: moba sweep --collect %s\n",
                   shard.index, shard.count, dir.string().c_str());
    if (!failed.empty()) {
      std::fprintf(stderr, "moba sweep: %zu job(s) failed (logs in %s); fix the cause and run again with --resume\n",
                   failed.size(), (dir / "logs").string().c_str());
      return 1;
    }
    return 0;
  }

  int run_serial() {
    const std::vector<const Job*> list = todo();
    try {
      for (size_t i = 0; i < list.size(); ++i) {
        throw_if_interrupted();
        const Job& j = *list[i];
        if (!quiet)
          std::fprintf(stderr, "moba sweep: [%d/%zu] %s %s ...\n", j.index / shard.count + 1, mine.size(), j.id.c_str(),
                       j.summary.c_str());
        placement.job_device.emplace_back(j.id, device);
        placement.max_in_flight = 1;
        const auto t0 = std::chrono::steady_clock::now();
        const int status = run_child(child_args(j), job_log(dir.string(), j));
        finished(j, status, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 list.size() - i - 1, "");
      }
    } catch (const Interrupted&) {
      report_interrupted();
      throw;
    }
    return finish();
  }

  // After Ctrl-C: the provenance says so, and the user learns how to continue.
  void report_interrupted() {
    provenance(analysis::utc_now(), "interrupted");
    std::fprintf(stderr, "moba sweep: %d of %zu jobs are done and kept in %s; continue with:\n"
                         "  moba sweep %s --out %s --resume%s\n",
                 n_done, mine.size(), dir.string().c_str(), config_path.c_str(), dir.string().c_str(),
                 shard_flag.c_str());
  }

  // All visible GPUs on one machine: `placement.concurrent` workers, worker w runs its jobs
  // with CUDA_VISIBLE_DEVICES = gpus[w].visible. Jobs are taken in order; each finishes
  // into its own directory and sweep.csv is rebuilt in job order, so the results are those of
  // run_serial. Bookkeeping (finished(), provenance) runs under one lock.
  int run_parallel() {
    const std::vector<const Job*> list = todo();
    std::mutex m;
    size_t next = 0, n_finished = 0;
    int in_flight = 0;
    std::exception_ptr error;
    const auto worker = [&](int w) {
      const Gpu& gpu = placement.gpus[static_cast<size_t>(w)];
      const std::string where = " on gpu " + std::to_string(w) + " (CUDA_VISIBLE_DEVICES=" + gpu.visible + ")";
      for (;;) {
        const Job* j = nullptr;
        {
          std::lock_guard<std::mutex> lock(m);
          if (!error && pending_interrupt()) error = std::make_exception_ptr(Interrupted(pending_interrupt()));
          if (error || next >= list.size()) return;
          j = list[next++];
          placement.job_device.emplace_back(j->id, "gpu " + std::to_string(w) + " (CUDA_VISIBLE_DEVICES=" +
                                                       gpu.visible + ", " + gpu.name + ")");
          placement.max_in_flight = std::max(placement.max_in_flight, ++in_flight);
          if (!quiet)
            std::fprintf(stderr, "moba sweep: [%d/%zu] %s %s%s ...\n", j->index / shard.count + 1, mine.size(),
                         j->id.c_str(), j->summary.c_str(), where.c_str());
        }
        const auto t0 = std::chrono::steady_clock::now();
        try {
          const int status =
              run_child(child_args(*j), job_log(dir.string(), *j), {"CUDA_VISIBLE_DEVICES=" + gpu.visible});
          std::lock_guard<std::mutex> lock(m);
          --in_flight;
          finished(*j, status, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                   list.size() - ++n_finished, where);
        } catch (...) {
          std::lock_guard<std::mutex> lock(m);
          --in_flight;
          if (!error) error = std::current_exception();
          return;
        }
      }
    };
    std::vector<std::thread> workers;
    for (int w = 0; w < placement.concurrent; ++w) workers.emplace_back(worker, w);
    for (auto& t : workers) t.join();
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const Interrupted&) {
        report_interrupted();
        throw;
      }
    }
    return finish();
  }

#ifdef MOBA_HAVE_MPI
  int run_mpi_queue() {
    std::vector<const Job*> list;
    std::vector<std::chrono::steady_clock::time_point> started;
    MpiCoordinator c;
    c.setup = [&]() {
      if (!setup()) throw UsageError("--dry-run is not run under mpirun");
      list = todo();
      std::vector<MpiJob> out;
      for (const Job* j : list) out.push_back({child_args(*j), job_log(dir.string(), *j)});
      started.assign(list.size(), std::chrono::steady_clock::now());
      if (!quiet) std::fprintf(stderr, "moba sweep: MPI: rank 0 hands %zu jobs to the other ranks\n", list.size());
      return out;
    };
    size_t n_finished = 0;
    c.handed = [&](size_t i, int rank) {
      started[i] = std::chrono::steady_clock::now();
      if (!quiet)
        std::fprintf(stderr, "moba sweep: [%d/%zu] %s %s -> rank %d\n", list[i]->index + 1, mine.size(),
                     list[i]->id.c_str(), list[i]->summary.c_str(), rank);
    };
    c.finished = [&](size_t i, int status, int rank) {
      ++n_finished;
      finished(*list[i], status,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started[i]).count(),
               list.size() - n_finished, " on rank " + std::to_string(rank));
    };
    c.finish = [&]() { return finish(); };
    c.run = [&](const MpiJob& j) { return run_child(j.args, j.log); };
    return run_mpi(c, [](const std::exception_ptr& e) {
      try {
        std::rethrow_exception(e);
      } catch (const InputError&) {
        return 2;
      } catch (const UsageError&) {
        return 2;
      } catch (...) {
        return 1;
      }
    });
  }
#endif
};

int run_sweep(const std::vector<std::string>& argv) {
  const Args args(argv, {"out", "shard", "gpus"}, {"resume", "collect", "sha256", "quiet", "dry-run", "help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.flag("sha256")) {
    if (args.positional().empty()) throw UsageError("--sha256: give at least one FILE");
    for (const auto& f : args.positional()) std::printf("%s  %s\n", sha256_file(f).c_str(), f.c_str());
    return 0;
  }
  if (args.flag("collect")) {
    if (args.positional().size() != 1 || args.has("out") || args.has("shard") || args.flag("resume"))
      throw UsageError("--collect takes exactly one run directory: moba sweep --collect DIR");
    return run_collect(args.positional()[0]);
  }
  if (args.positional().size() != 1) throw UsageError("expected exactly one CONFIG.toml argument (see --help)");
  SweepRun run;
  run.argv = argv;
  run.config_path = args.positional()[0];
  run.dir = args.required("out");
  while (!run.dir.has_filename() && run.dir.has_relative_path()) run.dir = run.dir.parent_path();
  check_output_parent("--out", run.dir.string());
  run.resume = args.flag("resume");
  run.quiet = args.flag("quiet");
  run.dry_run = args.flag("dry-run");
  run.shard = parse_shard(args);
  run.gpus_flag = args.str("gpus", "");
#ifdef MOBA_HAVE_MPI
  if (mpi_world_size_from_env() > 1) {
    if (run.shard.count > 1) throw UsageError("--shard (or a Slurm array) and mpirun do not combine: use one or the other");
    if (args.has("gpus")) throw UsageError("--gpus and mpirun do not combine: each rank runs one job at a time");
    run.mpi = true;
    return run.run_mpi_queue();
  }
#endif
  if (!run.setup()) return 0;
  return run.placement.concurrent > 1 ? run.run_parallel() : run.run_serial();
}

const Command kSweep("sweep", "batch experiments: many analyze runs from a TOML config, resumable", run_sweep);

}  // namespace
}  // namespace moba::cli
