// Options, configurations and the per-group plan (analysis/analyze_plan.h).
#include "analysis/analyze_plan.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "core/errors.h"
#include "core/json_writer.h"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"

namespace moba::analysis {

namespace {
constexpr int kDenseTopMin = 16;  // dense-pass top list length: max(top_n, this)
}  // namespace

void validate_options(const AnalyzeOptions& opt) {
  if (opt.block_sizes.empty()) throw UsageError("--block-sizes: at least one block size is needed");
  if (opt.block_sizes.size() > static_cast<size_t>(kernels::kDensePassMaxBlockSizes))
    throw UsageError("--block-sizes: at most " + std::to_string(kernels::kDensePassMaxBlockSizes) +
                     " block sizes per run (one dense pass serves them all)");
  std::set<int64_t> seen;
  for (const int64_t b : opt.block_sizes) {
    if (b < 1) throw UsageError("--block-sizes: block sizes must be >= 1");
    if (!seen.insert(b).second) throw UsageError("--block-sizes: " + std::to_string(b) + " given twice");
  }
  if (opt.top_ks.empty() == opt.sparsities.empty())
    throw UsageError("give exactly one of --top-k and --sparsity");
  for (const int k : opt.top_ks)
    if (k < 1) throw UsageError("--top-k: values must be >= 1");
  for (const double s : opt.sparsities)
    if (!(s >= 0 && s < 1)) throw UsageError("--sparsity: values must lie in [0, 1)");
  if (opt.routers.empty()) throw UsageError("--routers: at least one router is needed");
  if (opt.top_n < 1) throw UsageError("--top-n must be >= 1");
  if (opt.query_chunk < 1) throw UsageError("query chunk must be >= 1");
}

namespace {

struct Request {
  int64_t block_size;
  int top_k;
  std::string text;  // "--top-k 4", "--sparsity 0.75"
};

// Every requested (B, k) pair in request order: per B, the --top-k values, then the k of
// each --sparsity value (k = max(1, round((1 - s) T / B))).
std::vector<Request> requests(const AnalyzeOptions& opt, int64_t n_tokens) {
  std::vector<Request> out;
  for (const int64_t B : opt.block_sizes) {
    for (const int k : opt.top_ks) out.push_back({B, k, "--top-k " + std::to_string(k)});
    for (const double s : opt.sparsities) {
      const double k = std::round((1.0 - s) * static_cast<double>(n_tokens) / static_cast<double>(B));
      out.push_back({B, static_cast<int>(std::max(1.0, std::min(k, 1e9))), "--sparsity " + format_g(s, 6)});
    }
  }
  return out;
}

bool full_attention(int64_t n_tokens, int64_t B, int k) { return k >= kernels::block_count(n_tokens, B); }

}  // namespace

std::vector<BlockConfig> resolve_block_configs(const AnalyzeOptions& opt, int64_t n_tokens) {
  validate_options(opt);
  std::vector<BlockConfig> out;
  for (const Request& r : requests(opt, n_tokens)) {
    const int64_t B = r.block_size;
    const int k = r.top_k;
    if (opt.skip_full_attention && full_attention(n_tokens, B, k)) continue;
    const bool seen = std::any_of(out.begin(), out.end(),
                                  [&](const BlockConfig& c) { return c.block_size == B && c.top_k == k; });
    if (!seen) out.push_back({B, k, n_tokens > 0 ? 1.0 - static_cast<double>(k) * B / n_tokens : 0.0});
  }
  return out;
}

std::vector<ConfigNote> describe_configs(const AnalyzeOptions& opt, int64_t n_tokens) {
  validate_options(opt);
  std::vector<ConfigNote> notes;
  std::vector<Request> done;
  const std::string T = std::to_string(n_tokens);
  for (const Request& r : requests(opt, n_tokens)) {
    const std::string B = std::to_string(r.block_size), k = std::to_string(r.top_k);
    const int64_t n_blocks = kernels::block_count(n_tokens, r.block_size);
    const auto earlier = std::find_if(done.begin(), done.end(), [&](const Request& d) {
      return d.block_size == r.block_size && d.top_k == r.top_k;
    });
    if (earlier != done.end()) {
      notes.push_back({ConfigNote::Kind::duplicate, r.block_size, r.top_k, r.text,
                       "B=" + B + ": " + r.text + " gives k=" + k + ", as " + earlier->text +
                           " does: analysed once"});
    } else if (full_attention(n_tokens, r.block_size, r.top_k)) {
      notes.push_back({ConfigNote::Kind::full_attention, r.block_size, r.top_k, r.text,
                       "B=" + B + " k=" + k + " (" + r.text + "): k >= n_blocks = " + std::to_string(n_blocks) +
                           " at T=" + T + ", so every query attends every earlier key (MoBA = full " +
                           "attention) and nothing is routed" +
                           (n_blocks > 1 ? "; k <= " + std::to_string(n_blocks - 1) + " routes at this B"
                                         : "; B >= T: use block sizes below " + T)});
    } else if (r.top_k == 1 && r.text.rfind("--sparsity", 0) == 0) {
      notes.push_back({ConfigNote::Kind::current_block_only, r.block_size, r.top_k, r.text,
                       "B=" + B + ": " + r.text + " collapses to k=1 (round((1 - s) T / B) <= 1): only " +
                           "the current block is attended, no routing at all"});
    }
    done.push_back(r);
  }
  return notes;
}

std::vector<std::pair<int64_t, int>> requested_configs(const AnalyzeOptions& opt, int64_t n_tokens) {
  std::vector<std::pair<int64_t, int>> out;
  for (const Request& r : requests(opt, n_tokens)) out.emplace_back(r.block_size, r.top_k);
  return out;
}

int64_t analyze_chunks_per_head(const AnalyzeOptions& opt, int64_t n_tokens) {
  return (n_tokens + opt.query_chunk - 1) / opt.query_chunk;
}

AnalyzePlan make_plan(const AnalyzeOptions& opt, int64_t n_tokens) {
  AnalyzePlan p;
  p.configs = resolve_block_configs(opt, n_tokens);
  p.n_tokens = n_tokens;
  p.chunk = std::min(opt.query_chunk, n_tokens);
  p.n_top = std::max(opt.top_n, kDenseTopMin);
  p.trailing = opt.trailing > 0 ? std::min(opt.trailing, n_tokens) : (n_tokens + 15) / 16;
  p.block_sizes = opt.block_sizes;
  for (const int64_t B : p.block_sizes) p.n_blocks.push_back(kernels::block_count(n_tokens, B));
  p.configs_of_block.resize(p.block_sizes.size());
  for (int ci = 0; ci < p.n_configs(); ++ci) {
    const auto it = std::find(p.block_sizes.begin(), p.block_sizes.end(), p.configs[ci].block_size);
    const int bi = static_cast<int>(it - p.block_sizes.begin());
    p.block_of_config.push_back(bi);
    p.configs_of_block[bi].push_back(ci);
  }
  return p;
}

bool keeps_whole_selection(const AnalyzeOptions& opt, const ConfigKey& key) {
  return opt.keep_arrays || opt.keep.keeps_selection(key);
}

int64_t attention_window(const AnalyzeOptions& opt, const AnalyzePlan& plan, int64_t chunk, bool banded) {
  int64_t sum_k = 0;  // entries per query over every (configuration, router)
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    int64_t k_sum = 0, k_max = 0;
    for (const int ci : plan.configs_of_block[bi]) {
      k_sum += plan.configs[ci].top_k;
      k_max = std::max<int64_t>(k_max, plan.configs[ci].top_k);
    }
    sum_k += (banded ? k_max : k_sum) * static_cast<int64_t>(opt.routers.size());
  }
  const int64_t budget = opt.attn_window_bytes > 0 ? opt.attn_window_bytes : kAttnWindowBytes;
  const int64_t fit = budget / (std::max<int64_t>(sum_k, 1) * static_cast<int64_t>(sizeof(int32_t)));
  chunk = std::max<int64_t>(chunk, 1);
  return std::min(plan.n_tokens, std::max(chunk, fit / chunk * chunk));
}

}  // namespace moba::analysis
