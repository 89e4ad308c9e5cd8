#pragma once
// The jobs of a sweep: every (dump x layer set x budget) is one `moba analyze` run, with
// arguments fully resolved from the config. Job ids are deterministic: the index in config
// order plus a short hash of the job's key (its analyze arguments and the dump's SHA-256).
#include <cstdint>
#include <string>
#include <vector>

#include "experiments/sweep/config.h"

namespace moba::sweep {

struct DumpFacts {
  std::string path;         // absolute
  std::string name;         // file name
  std::string sha256;
  uintmax_t size = 0;
  int64_t n_tokens = 0;     // of the first layer
  std::string info_json;    // model attributes and layers as a JSON object (provenance)
  std::string seed;         // a synthetic dump's generator seed (synth_seed), or ""
};

struct Job {
  int index = 0;
  std::string id;           // "0003-1a2b3c4d5e"
  std::string hash;         // full SHA-256 of the job key: the marker's content
  std::string dump;         // absolute path
  std::string dump_name;
  std::string dump_sha256;
  std::string budget_mode;  // top_k | sparsity | attended_keys | attended_fraction
  std::string budget_target;  // "" for top_k (each row's k), else the sparsity, count or fraction
  std::string summary;      // one line for the progress display
  std::vector<std::string> args;  // `analyze DUMP ...` without --out/--quiet
};

// Mean causal attended-key count over query positions t = 0 .. T-1 when every query
// attends its current block (causally) plus min(k - 1, c) routable blocks of B keys,
// c = floor(t / B) the number of routable blocks (docs/routing.md). Exact.
double attended_keys_mean(int64_t n_tokens, int64_t block_size, int64_t top_k);

// The k in [1, ceil(T / B)] whose attended_keys_mean is closest to `target` (the smaller k
// on a tie).
int64_t matched_top_k(int64_t n_tokens, int64_t block_size, double target);

// The matched budgets of one dump: (mode, target as written, target in keys) per entry of
// attended_keys and attended_fraction.
struct MatchedTarget {
  std::string mode, text;
  double keys = 0;
};
std::vector<MatchedTarget> matched_targets(const SweepConfig& c, int64_t n_tokens);

// Reads each dump's header (layers, attributes) and hashes it. Throws InputError naming the
// config file and key when a dump cannot be read or lacks a configured layer.
std::vector<DumpFacts> inspect_dumps(const SweepConfig& c);

// Jobs in a fixed order (dump, layer set, budget). A job whose every (B, k) has k >= n_blocks
// (MoBA = full attention, nothing to route: analyze would refuse it) is left out, with a
// line saying so in *notes.
std::vector<Job> expand_jobs(const SweepConfig& c, const std::vector<DumpFacts>& dumps,
                             std::vector<std::string>* notes = nullptr);


}  // namespace moba::sweep
