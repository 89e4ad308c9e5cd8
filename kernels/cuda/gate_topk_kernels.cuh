#pragma once
// Internal interface between the gate_topk entry (gate_topk.cu) and its two kernel families:
// gate_topk_scalar.cu (any input, fp32 FMA scores, one query per thread) and gate_topk_mma.cu
// (bf16 q under per-head GQA, tensor-core scores, warp-cooperative selection). Both produce
// exactly gate_topk.h's selection; they differ in speed and in the inputs they accept.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels::cuda_detail {

constexpr int kGateMaxTopK = 129;     // per-query list of top_k - 1 <= 128 entries
constexpr int kGateMmaQueries = 128;  // queries per CTA of the tensor-core kernel

// Scalar kernel arguments (any q dtype, per-head or shared GQA).
struct GateScalarArgs {
  DevTensor q;                   // [n_q_heads, n_tokens, head_dim]
  const float* kbar;             // [n_kv_heads, n_blocks, head_dim]
  int64_t n_tokens, head_dim, block_size, n_blocks, n_q_heads, group;
  int top_k;
  bool recent, shared;
  int32_t* selected;             // [n_q_heads, n_tokens, top_k]
  float* selected_scores;        // same, optional
};

// Tensor-core kernel arguments (bf16 q, per-head GQA; q rows 4-byte aligned, kbar rows 16-byte).
struct GateMmaArgs {
  const uint16_t* q;             // bf16 [n_q_heads, n_tokens, head_dim]
  int64_t q_sh, q_st;
  const float* kbar;             // [n_kv_heads, n_blocks, head_dim], 16-byte aligned rows
  int64_t n_tokens, head_dim, block_size, n_blocks, group;
  int top_k, m;                  // m = top_k - 1 picks
  bool recent;
  int32_t* selected;
  float* selected_scores;
};

// Launch the scalar kernel: grid (ceil(n_tokens / 128), n_routers), one thread per query;
// head_dim <= 128. Returns nullptr or the failed CUDA call.
const char* launch_gate_topk_scalar(const GateScalarArgs& a, int64_t n_routers, cudaStream_t stream);
// Launch the tensor-core kernel: grid (ceil(n_tokens / 128), n_q_heads); head_dim <= 128.
// `register_lists`: per-thread register lists when top_k - 1 <= 16 (else warp lists for every
// top_k). Returns nullptr or the failed CUDA call ("grid too large" checked by the caller).
const char* launch_gate_topk_mma(const GateMmaArgs& a, int64_t n_q_heads, bool register_lists, cudaStream_t stream);

}  // namespace moba::kernels::cuda_detail
