#pragma once
// The rows one analysed (head, configuration, router) contributes: its summary row (the
// columns of analysis/summary.h) and its position-bucket rows, from its per-position arrays.
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "analysis/metrics.h"
#include "analysis/report.h"
#include "analysis/results_schema.h"
#include "analysis/snr.h"
#include "analysis/summary.h"

namespace moba::analysis {

// Queries of one configuration by number of routable blocks c, for the retrieval
// predictions: signal queries (c >= 2, with a choice) and planted queries (a planted key in a
// routable block, with a choice).
struct RetrievalCounts {
  std::vector<int64_t> signal, planted;  // [n_blocks + 1]
  int64_t n_signal = 0, n_planted = 0;
};
// `planted` [n_tokens] planted key per query (-1 none), or null.
RetrievalCounts retrieval_counts(int64_t n_tokens, int64_t block_size, int top_k, int64_t n_blocks,
                                 const int32_t* planted);

// What the rows of one (head, configuration, router) need from its per-position arrays: per
// metric the statistics over the queries with a choice (summarize), the means over the
// trailing window's queries with a choice and over each position bucket's; the mean coverage
// over every query and the oracle coverage R*_t over the queries with a choice. The host
// computes it from the arrays (config_stats); the GPU analysis reduces it on the device.
struct ConfigStats {
  std::array<Stats, kPositionMetricCount> choice{}, trailing{};  // trailing: n and mean only
  std::vector<std::array<Stats, kPositionMetricCount>> buckets;  // per bucket: n and mean only
  double coverage_all_mean = 0, oracle_coverage_mean = 0;
  // Mean realised budget |S_t| (valid entries of the selection rows) over the queries with a
  // choice, set by the measuring path (config_stats does not: the selection comes by attention
  // windows); NaN when not computed (the GPU analysis: fixed-budget routers only, where it is k).
  double selected_mean = std::numeric_limits<double>::quiet_NaN();
};
// `oracle_coverage` [n_tokens]; `edges` the bucket edges (bucket_edges); `trailing` in tokens.
ConfigStats config_stats(const PositionArrays& arrays, const std::vector<float>& oracle_coverage,
                         const std::vector<int64_t>& edges, int64_t trailing);

// Everything one analysed head hands to the summary stage, whichever device measured it
// (indices of analysis/analyze_plan.h: ci configuration, bi block size, ri router, gi gate
// router of analysis/router.h GateRouters).
struct HeadMeasures {
  int64_t head = 0;                      // global query head
  std::vector<ConfigStats> stats;        // [ci * n_routers + ri]
  std::vector<SnrStats> snr;             // [gi * n_block_sizes + bi]
  std::vector<int64_t> signal_hits;      // [ci * max(n_gates, 1) + gi]
  std::vector<int64_t> planted_hits;     // [ci * n_routers + ri]
  std::vector<PositionArrays> arrays;    // [ci * n_routers + ri] when kept, else empty
};

struct HeadRowInput {
  ConfigKey key;
  const ConfigStats* stats = nullptr;
  int64_t n_tokens = 0;
  const RetrievalCounts* counts = nullptr;
  int64_t kv_head = 0, n_blocks = 0, head_dim = 0;
  double nominal_sparsity = 0;
  int64_t trailing = 0;                          // trailing window in tokens, resolved
  const SnrStats* snr = nullptr;                 // the gate router's SNR sums at this B; null: no gate scores
  int64_t signal_hits = 0, planted_hits = 0;
  double snr_synth = 0;                          // the synth dump's SNR at this B, NaN without one
  bool synth = false;                            // the dump carries synth parameters
};
SummaryRow head_summary_row(const HeadRowInput& in);

// Appends the bucket rows of `stats` (means over queries with a choice) for each bucket of `edges`.
void add_bucket_rows(const ConfigKey& key, const ConfigStats& stats, const std::vector<int64_t>& edges,
                     std::vector<BucketRow>* out);

}  // namespace moba::analysis
