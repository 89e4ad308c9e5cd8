#pragma once
// The rows one analysed (head, configuration, router) contributes: its summary row (the
// columns of analysis/summary.h) and its position-bucket rows, from its per-position arrays.
#include <cstdint>
#include <vector>

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

struct HeadRowInput {
  const PositionArrays* arrays = nullptr;        // the router's, [n_tokens]
  const std::vector<float>* oracle_coverage = nullptr;  // R*_t of the configuration [n_tokens]
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

// Appends the bucket means of `arrays` (queries with a choice) for each bucket of `edges`.
void add_bucket_rows(const PositionArrays& arrays, const std::vector<int64_t>& edges, std::vector<BucketRow>* out);

}  // namespace moba::analysis
