// analyze's SNR probe (analysis/snr_probe.h).
#define EIGEN_DONT_PARALLELIZE
#include "analysis/snr_probe.h"

#include <limits>

namespace moba::analysis {

namespace {
// The row-major float views of kernels/cpu (to be shared through kernels/cpu/cpu_common.h).
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowsMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
}  // namespace

KeyPrefix::KeyPrefix(int64_t head_dim) {
  sum_.s1 = Eigen::VectorXd::Zero(head_dim);
  sum_.m = Eigen::MatrixXd::Zero(head_dim, head_dim);
}

void KeyPrefix::advance(const TensorView& keys, int64_t B, int64_t to_block) {
  const int64_t d = keys.head_dim;
  while (blocks_done_ < to_block) {
    const int64_t j0 = blocks_done_ * B;
    const ConstRowsMap kb(keys.row(0, j0), B, d, Eigen::OuterStride<>(keys.stride_token));
    const Eigen::MatrixXd kd = kb.cast<double>();
    sum_.s1 += kd.colwise().sum().transpose();
    sum_.m.noalias() += kd.transpose() * kd;
    ++blocks_done_;
  }
}

void KeyPrefix::snapshots(const TensorView& keys, int64_t block_size, int64_t c_lo, int64_t c_hi,
                          std::vector<PrefixSnapshot>* out) {
  for (int64_t c = c_lo; c <= c_hi; ++c) {
    advance(keys, block_size, c);
    out->push_back(sum_);
  }
}

int64_t find_signal_key(const int32_t* top, int n_top, int64_t n_routable_keys, const float* q, const TensorView& k,
                        Eigen::VectorXf* scratch) {
  for (int n = 0; n < n_top && top[n] >= 0; ++n)
    if (top[n] < n_routable_keys) return top[n];
  const int64_t d = k.head_dim;
  const Eigen::Map<const Eigen::VectorXf> qv(q, d);
  const ConstRowsMap kr(k.row(0, 0), n_routable_keys, d, Eigen::OuterStride<>(k.stride_token));
  scratch->noalias() = kr * qv;
  int64_t j_star = -1;
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n_routable_keys; ++j)
    if ((*scratch)[j] >= best) {
      best = (*scratch)[j];
      j_star = j;
    }
  return j_star;
}

SnrQuerySums snr_query_sums(const TensorView& keys, int64_t B, int64_t j_star, const Eigen::VectorXd& q,
                            const PrefixSnapshot& prefix) {
  const int64_t d = keys.head_dim, b_star = j_star / B;
  SnrQuerySums sums;
  for (int64_t j = b_star * B; j < (b_star + 1) * B; ++j) {
    const double s = Eigen::Map<const Eigen::VectorXf>(keys.row(0, j), d).cast<double>().dot(q);
    sums.sum_signal += s;
    sums.sumsq_signal += s * s;
    if (j == j_star) sums.s_top = s;
  }
  sums.sum_routable = prefix.s1.dot(q);
  sums.sumsq_routable = q.dot(prefix.m * q);
  return sums;
}

}  // namespace moba::analysis
