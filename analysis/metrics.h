#pragma once
// Per-query routing metrics and their aggregation (DESIGN.md §4).
//
// A selection row is gate_topk's layout: top_k block indices, ascending, the current block
// c = floor(t / B) included, -1 padded. Block masses are dense_pass's m_t(b) (rows sum to 1).
//   coverage      R_t = sum_{b in S_t} m_t(b)             (attention-mass recall)
//   kl            -ln R_t = KL(P restricted to S_t and renormalised || P), exactly
//   block recall  |S_t ∩ O_t| / |O_t| over ROUTED blocks (current block excluded), O_t the
//                 oracle's routed picks; defined only when top_k >= 2 and t has a choice
//   token recall  share of the top-n keys of P_t (dense_pass top_index) inside S_t's blocks
//   output error  |o_moba - o_full| / |o_full|, and cosine(o_moba, o_full)
//   sparsity      token: 1 - attended keys / (t + 1) (causal-token denominator);
//                 block density: |S_t| / (c + 1) (share of the causally available blocks)
// A query has a choice when #routable > top_k - 1, i.e. c > top_k - 1 (DESIGN.md §4); the
// means of summary.csv are over those queries.
#include <cstdint>
#include <vector>

namespace moba::analysis {

inline bool has_choice(int64_t t, int64_t block_size, int top_k) { return t / block_size > top_k - 1; }

// Number of valid (non-negative) entries at the front of a selection row.
int selection_count(const int32_t* sel, int top_k);
double coverage(const float* mass, const int32_t* sel, int top_k);
// NaN when the oracle has no routed pick (top_k == 1 or no routable block).
double block_recall(const int32_t* sel, const int32_t* oracle_sel, int top_k, int64_t current_block);
// top_index [n] key positions, -1 padded; NaN when none is valid.
double token_recall(const int32_t* top_index, int n, const int32_t* sel, int top_k, int64_t block_size);
// Keys j <= t inside the selected blocks.
int64_t attended_keys(const int32_t* sel, int top_k, int64_t block_size, int64_t t, int64_t n_tokens);
// rel = |o - ref| / |ref| (absolute when |ref| = 0); cosine = 1 when both are zero.
void output_error(const float* o, const float* ref, int64_t head_dim, double* rel, double* cosine);

// Summary statistics over values[i] for i in [begin, end) where mask[i] and the value is
// finite (NaN marks "not defined here"). Quantiles interpolate linearly between order
// statistics (numpy's default). Everything is NaN when no value qualifies.
struct Stats {
  int64_t n = 0;
  double mean = 0, p5 = 0, p50 = 0, p95 = 0;
};
Stats summarize(const std::vector<float>& values, const std::vector<uint8_t>& mask, int64_t begin, int64_t end);
// The same n and mean (summed in index order, as summarize), without quantiles (NaN).
Stats summarize_mean(const std::vector<float>& values, const std::vector<uint8_t>& mask, int64_t begin, int64_t end);
double quantile_sorted(const std::vector<double>& sorted, double q);

// Position buckets: bucket_width > 0 gives fixed-width buckets [i*w, (i+1)*w); otherwise
// n_buckets equal buckets [floor(i*T/n), floor((i+1)*T/n)). Returns the n+1 edges.
std::vector<int64_t> bucket_edges(int64_t n_tokens, int n_buckets, int64_t bucket_width);

}  // namespace moba::analysis
