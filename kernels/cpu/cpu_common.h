#pragma once
// Shared by the CPU reference ops (kernels/cpu/*.cpp): Eigen aliases and the OpenMP threshold.
#include <Eigen/Dense>

#include <cstdint>

namespace moba::kernels::cpu {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// Rows of a strided [rows, cols] fp32 view (row stride = the view's stride_token).
using ConstRowsMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

// Below this much work (multiply-adds for the attention and gate ops, element operations for
// block_pool and kconv) a parallel region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;       // dense_pass, gate_topk, moba_attention
constexpr int64_t kMinParallelElementWork = int64_t{1} << 16;  // block_pool, kconv

}  // namespace moba::kernels::cpu
