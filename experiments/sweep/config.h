#pragma once
// A sweep's configuration (docs/sweep.md): a TOML file whose keys map one to one onto
// `moba analyze` options, with lists where a sweep varies something. parse_config checks
// every key and value (InputError "FILE: KEY: problem", exit 2) and fills every default;
// resolved_toml writes the result back out (DIR/config.resolved.toml).
#include <cstdint>
#include <string>
#include <vector>

namespace moba::sweep {

struct SweepConfig {
  std::string path;                       // the config file as given
  std::vector<std::string> dump_patterns; // `dumps` as written
  std::vector<std::string> dumps;         // absolute paths, globs expanded, in pattern order, no repeats
  std::vector<std::vector<int>> layer_sets;  // one job per set; an empty set = all layers
  std::vector<int> heads;                 // empty = all
  std::vector<int64_t> block_sizes;
  std::vector<std::string> routers{"moba", "oracle"};
  std::string device = "cpu";
  // [budget]: at least one of the four.
  std::vector<int64_t> top_k;
  std::vector<double> sparsity;
  std::vector<double> attended_keys;      // matched: per B the k whose mean attended keys ~ N
  std::vector<double> attended_fraction;  // the same with N = f * (T + 1) / 2 (f of full causal)
  // [analysis]
  std::string tie = "recent";
  std::string gqa = "per-head";
  std::string pool_precision = "dump";
  int kconv = 3;
  std::string kconv_weights;              // absolute path, or "" (uniform)
  std::string kconv_apply = "routing";
  std::string precision = "exact";     // analyze --precision (CUDA numerics)
  int64_t top_n = 10;
  int64_t buckets = 16;
  int64_t bucket_width = 0;               // 0: use `buckets`
  int64_t trailing = 0;                   // 0: analyze's default (n_tokens / 16)
};

// Throws InputError naming the file and the key (unknown keys, bad types or values, dumps
// that do not exist or globs that match nothing).
SweepConfig parse_config(const std::string& path);

// Every key with its value, defaults filled, dumps as absolute paths: stable text, so two
// runs of one config (or two shards) write byte-identical files.
std::string resolved_toml(const SweepConfig& c);

}  // namespace moba::sweep
