#pragma once
// analyze's options, the configurations (B x k) they resolve to, and the plan of one KV
// group's work: which configurations share a block size (one dense-pass mass array serves
// them), how queries are chunked. Indices used throughout analyze:
//   configuration  0 .. n_configs - 1, in resolve_block_configs order
//   block size     0 .. n_block_sizes - 1, in opt.block_sizes order
//   router         0 .. routers.size() - 1, in opt.routers order
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "analysis/position_keep.h"
#include "analysis/router.h"

namespace moba::analysis {

struct AnalyzeOptions {
  std::vector<int64_t> block_sizes;   // distinct, at most kernels::kDensePassMaxBlockSizes
  std::vector<int> top_ks;            // --top-k: every (B, k) pair ...
  std::vector<double> sparsities;     // ... or --sparsity: k per B (above). Exactly one is set.
  std::vector<RouterKind> routers{RouterKind::moba, RouterKind::oracle};
  RoutingOptions routing;
  int top_n = 10;                     // token recall's n
  int n_buckets = 16;                 // position buckets, or
  int64_t bucket_width = 0;           // fixed-width buckets when > 0
  int64_t trailing = 0;               // trailing window in tokens; 0 = ceil(T / 16)
  int64_t query_chunk = 256;          // queries per dense-pass chunk
  Device device = Device::cpu;
  // GPU workers of the GPU-resident analysis (--gpus): a group's heads are split into this
  // many contiguous parts, part w on visible device w % n_devices; 0 = one per visible GPU.
  // More workers than GPUs share devices (the same results: a simulated split).
  int gpus = 0;
  bool profile = false;               // --profile: time the GPU stages (synchronising each)
  // Bytes for one attention window's selections (attention_window); 0 = kAttnWindowBytes. An
  // A/B knob (hidden --attn-window-bytes): results do not depend on it.
  int64_t attn_window_bytes = 0;
  // Query parts per (block size, router) chain of the device's attention (analysis/gpu); 0 or
  // 1 = one. An A/B knob (hidden --attn-split): results do not depend on it.
  int attn_split = 0;
  bool keep_arrays = false;           // return per-position arrays (tests); the CLI writes them to HDF5
  // Which configurations write per-position arrays / selections into analysis.h5 (summary
  // attributes and bucket curves are written for all). Default: everything.
  PositionKeep keep;
  // Leave out configurations with top_k >= n_blocks: there every query attends every earlier
  // key (MoBA = full causal attention) and no metric measures routing. `moba analyze` sets
  // it (and says what it left out, see describe_configs); the library default keeps them.
  bool skip_full_attention = false;
  // Called once by analyze_dump, on its thread, when the run's device work is over: on cuda,
  // once the last layer's groups are measured (kept heads' arrays may still be coming back:
  // release_gpus waits for them) and before their last summaries and the tables. `moba
  // analyze` tears the CUDA context down there, beside what the run still writes.
  std::function<void()> device_work_done;
};

struct BlockConfig {
  int64_t block_size = 0;
  int top_k = 0;
  double nominal_sparsity = 0;  // 1 - top_k B / T
};
// Throws UsageError (no block sizes, too many, both/neither of top_ks and sparsities, ...).
std::vector<BlockConfig> resolve_block_configs(const AnalyzeOptions& opt, int64_t n_tokens);
// The checks of resolve_block_configs that do not need T.
void validate_options(const AnalyzeOptions& opt);

// What resolution does to each requested (B, budget) pair at n_tokens, for the user:
// `full_attention` (top_k >= n_blocks: nothing to route; left out under skip_full_attention),
// `duplicate` (a second --sparsity value that resolves to a k already requested: analysed
// once), `current_block_only` (a --sparsity value that collapses to k = 1: no routing at all,
// only the current block is attended). Requests that resolve plainly get no note.
struct ConfigNote {
  enum class Kind { full_attention, duplicate, current_block_only };
  Kind kind;
  int64_t block_size = 0;
  int top_k = 0;
  std::string request;  // "--top-k 100", "--sparsity 0.75"
  std::string text;     // one line: what happens and why
};
std::vector<ConfigNote> describe_configs(const AnalyzeOptions& opt, int64_t n_tokens);
// The requested (B, k) pairs (before duplicates merge and skipping), in request order.
std::vector<std::pair<int64_t, int>> requested_configs(const AnalyzeOptions& opt, int64_t n_tokens);
// Chunks per head, for progress totals.
int64_t analyze_chunks_per_head(const AnalyzeOptions& opt, int64_t n_tokens);

struct AnalyzePlan {
  int64_t n_tokens = 0;
  int64_t chunk = 0;                             // queries per dense-pass chunk: min(query_chunk, T)
  int n_top = 0;                                 // dense-pass top list length: max(top_n, 16)
  int64_t trailing = 0;                          // trailing window in tokens: min(opt.trailing, T), or ceil(T / 16)
  std::vector<BlockConfig> configs;              // [n_configs]
  std::vector<int64_t> block_sizes, n_blocks;    // [n_block_sizes]
  std::vector<int> block_of_config;              // [n_configs] -> block size index
  std::vector<std::vector<int>> configs_of_block;  // [n_block_sizes] -> configuration indices, ascending
  int n_configs() const { return static_cast<int>(configs.size()); }
  int n_block_sizes() const { return static_cast<int>(block_sizes.size()); }
};
// Validates `opt` (UsageError) and builds the plan for a layer of n_tokens tokens.
AnalyzePlan make_plan(const AnalyzeOptions& opt, int64_t n_tokens);

// The attention window: MoBA attention and the output error run once per window of queries,
// so a head holds one window's selections ([window, k] int32 per (configuration, router)), not
// every query's — at a fixed sparsity k grows with T (PERF.md B6: 26 GB at 128K tokens). The
// whole sequence when every selection fits in the budget together (opt.attn_window_bytes, else
// kAttnWindowBytes), else the most query chunks of `chunk` queries that do (at least one).
// `banded`: the device's selections, held as bands of nested budgets (a block size's k share
// one rank order), cost the largest k of each block size instead of the sum of its k.
constexpr int64_t kAttnWindowBytes = int64_t{2} << 30;
// Whether a measured head's selection of `key` is kept whole ([n_tokens, top_k]) for the caller:
// every one with opt.keep_arrays (tests), else those the keep rule writes to analysis.h5.
bool keeps_whole_selection(const AnalyzeOptions& opt, const ConfigKey& key);
int64_t attention_window(const AnalyzeOptions& opt, const AnalyzePlan& plan, int64_t chunk, bool banded = false);

}  // namespace moba::analysis
