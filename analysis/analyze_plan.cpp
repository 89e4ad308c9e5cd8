// Options, configurations and the per-group plan (analysis/analyze_plan.h).
#include "analysis/analyze_plan.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "core/errors.h"
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

std::vector<BlockConfig> resolve_block_configs(const AnalyzeOptions& opt, int64_t n_tokens) {
  validate_options(opt);
  std::vector<BlockConfig> out;
  auto add = [&](int64_t B, int k) {
    for (const auto& c : out)
      if (c.block_size == B && c.top_k == k) return;
    out.push_back({B, k, n_tokens > 0 ? 1.0 - static_cast<double>(k) * B / n_tokens : 0.0});
  };
  for (const int64_t B : opt.block_sizes) {
    for (const int k : opt.top_ks) add(B, k);
    for (const double s : opt.sparsities) {
      const double k = std::round((1.0 - s) * static_cast<double>(n_tokens) / static_cast<double>(B));
      add(B, static_cast<int>(std::max(1.0, std::min(k, 1e9))));
    }
  }
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

}  // namespace moba::analysis
