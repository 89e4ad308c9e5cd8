#pragma once
// Routing SNR (DESIGN.md §5), measured on data and predicted by FlashMoBA's model.
//
// Per head and block size B, over queries t with >= 2 routable blocks (c = floor(t/B) >= 2):
//   j*      the highest-probability routable key: argmax_{j < c*B} q_t . k_j (ties: larger j)
//   b*      its block, the "signal" block
//   D_b     = s(t, b*) - s(t, b) for every other routable block b (gate scores, fp32)
//   SNR_emp = mean(D) / std(D) over all (t, b) pairs; p_fail_emp = P(D < 0), beside Phi(-SNR_emp)
//   rank    1 + #{routable b ranking before b* under the selector's order (score, tie rule)}:
//           the signal block is retrieved at top_k iff rank <= top_k - 1.
// Model parameters on the same queries, from unscaled token scores s_j = q_t . k_j over the
// routable keys (the router's keys: the conv keys for moba-kconv), noise = routable keys
// outside b*:
//   mu_noise_t, var_noise_t   mean and variance of the noise scores of query t
//   delta_mu      = mean_t (s_j* - mu_noise_t)
//   cluster_excess = mean_t sum_{j in b*, j != j*} (s_j - mu_noise_t)   [model: (m-1)(mu_c - mu_n)]
//   mu_cluster_rel = cluster_excess / (B - 1)   (mean excess of the other keys of b*)
//   delta_mu_eff  = delta_mu + cluster_excess;  sigma^2 = mean_t var_noise_t
//   snr_theory    = delta_mu_eff / (sigma sqrt(2B))
// and delta_mu_eff_d = B mean(D) (what the measured D implies for delta_mu_eff).
#include <cstdint>
#include <vector>

#include "kernels/gate_topk.h"

namespace moba::analysis {

constexpr int kSnrMaxRank = 64;  // rank histogram: ranks 1..64, then one bin for > 64

// Sums, so partial results (query tiles, heads, layers) merge exactly.
struct SnrStats {
  int64_t n_queries = 0;
  int64_t n_pairs = 0, n_negative = 0;
  double sum_d = 0, sum_d2 = 0;
  double sum_delta_mu = 0, sum_excess = 0, sum_var_noise = 0;
  std::vector<int64_t> rank_hist = std::vector<int64_t>(kSnrMaxRank + 1, 0);
  void merge(const SnrStats& o);
};

// What one query contributes beyond its gate scores: the token-score sums of the model.
struct SnrQuerySums {
  double s_top = 0;                  // s_j*
  double sum_signal = 0, sumsq_signal = 0;  // over the B keys of b*
  double sum_routable = 0, sumsq_routable = 0;  // over the c*B routable keys
};

// Adds query t's pairs and parameters (c >= 2 routable blocks; scores[0, c) its gate scores;
// signal_block < c). Returns the signal block's rank.
int snr_add_query(SnrStats& s, const float* scores, int64_t c, int64_t signal_block, kernels::TieRule tie,
                  const SnrQuerySums& sums, int64_t block_size);

struct SnrSummary {
  int64_t n_queries = 0, n_pairs = 0;
  double snr_emp, p_fail_emp, p_fail_theory;  // p_fail_theory = Phi(-snr_emp)
  double mean_d, std_d;
  double delta_mu, sigma, sigma2_d;           // sigma2_d = sigma^2 * head_dim (1 when sigma^2 = 1/d)
  double cluster_excess, mu_cluster_rel, delta_mu_eff, delta_mu_eff_d, snr_theory;
  double rank1_share;                          // P(rank == 1)
};
SnrSummary summarize_snr(const SnrStats& s, int64_t block_size, int64_t head_dim);

double normal_cdf(double x);
// P(the signal block ranks within the top (top_k - 1) of n_routable blocks) under the model:
// block scores Gaussian with equal variance, signal mean sqrt(2) SNR block-sd above the noise,
// noise blocks independent: E_z[ P(Binomial(n - 1, Phi(-(z + sqrt(2) SNR))) <= top_k - 2) ].
double retrieval_probability(double snr, int64_t n_routable, int top_k);
// retrieval_probability(snr, c, top_k) for every c in [0, max_routable] at once (one pass over
// c per integration point, from the top down; equal to the one-by-one values up to rounding).
std::vector<double> retrieval_probabilities(double snr, int64_t max_routable, int top_k);
// Mean of retrieval_probability over queries, given counts[c] = #queries with c routable blocks.
double mean_retrieval_probability(double snr, const std::vector<int64_t>& counts_by_routable, int top_k);

}  // namespace moba::analysis
