#pragma once
// analyze's SNR probe (DESIGN.md §5): for a query t with c = floor(t / B) >= 2, the signal key
// j* (its highest-probability routable key), the signal block b* = floor(j* / B), and the
// sums over the signal block's keys and over the routable prefix [0, c B) that
// snr_add_query (analysis/snr.h) turns into SNR statistics. Doubles throughout.
#include <cstdint>
#include <vector>

#include <Eigen/Dense>

#include "analysis/snr.h"
#include "core/tensor.h"

namespace moba::analysis {

// S1(c) = sum_{j < cB} k_j and M(c) = sum_{j < cB} k_j k_j^T of the routing keys.
struct PrefixSnapshot {
  Eigen::VectorXd s1;
  Eigen::MatrixXd m;
};

// The prefix sums of one routing key set at one block size, advanced block by block as the
// query chunks move forward (never backwards).
class KeyPrefix {
 public:
  explicit KeyPrefix(int64_t head_dim);
  // Appends the snapshots for c = c_lo .. c_hi (ascending, c_lo >= the last call's c_hi) to `out`.
  void snapshots(const TensorView& keys, int64_t block_size, int64_t c_lo, int64_t c_hi,
                 std::vector<PrefixSnapshot>* out);

 private:
  void advance(const TensorView& keys, int64_t block_size, int64_t to_block);
  int64_t blocks_done_ = 0;
  PrefixSnapshot sum_;
};

// j*: the first entry of the dense pass's top list `top` [n_top] (-1 padded) below
// n_routable_keys, else the argmax over j < n_routable_keys of q . k_j (fp32, the later key
// on ties). `q` [head_dim]; `k` [1, T, head_dim]; `scratch` is reused between calls.
int64_t find_signal_key(const int32_t* top, int n_top, int64_t n_routable_keys, const float* q, const TensorView& k,
                        Eigen::VectorXf* scratch);

// The sums of one query `q` (double) for the routing keys `keys`: scores over the B keys of
// the signal block b* = j_star / B (s_top at j_star) and over the routable prefix `prefix`.
SnrQuerySums snr_query_sums(const TensorView& keys, int64_t block_size, int64_t j_star, const Eigen::VectorXd& q,
                            const PrefixSnapshot& prefix);

}  // namespace moba::analysis
