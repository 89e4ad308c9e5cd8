// CUDA gate_topk entry (kernels/gate_topk.h): validates the params and picks one of the two
// kernel families (gate_topk_kernels.cuh). No [n_tokens, n_blocks] score matrix exists
// anywhere: both fuse the scores into a running top-k.
#include "kernels/gate_topk.h"

#include <cstdint>

#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/gate_topk_kernels.cuh"
#include "kernels/cuda/tuning.h"

namespace moba::kernels {
using namespace cuda_detail;

const char* gate_topk_cuda(const GateTopkParams& p, void* stream) {
  if (const char* e = gate_topk_can_run(p)) return e;
  const uint16_t* q16 = p.q.raw16;
  if (q16 && p.q.dtype == DType::f32) return "gate_topk_cuda: raw 16-bit q needs dtype f16 or bf16";
  if (p.q.head_dim > 128) return "gate_topk_cuda: head_dim > 128 not supported";
  if (p.top_k > kGateMaxTopK) return "gate_topk_cuda: top_k > 129 not supported";
  if (p.q.n_tokens == 0) return nullptr;
  GateScalarArgs a;
  a.q = DevTensor{p.q.data, q16, q16 ? kind_of(p.q.dtype) : kF32, p.q.stride_head, p.q.stride_token};
  a.kbar = p.kbar;
  a.n_tokens = p.q.n_tokens;
  a.head_dim = p.q.head_dim;
  a.block_size = p.block_size;
  a.n_blocks = block_count(p.q.n_tokens, p.block_size);
  a.n_q_heads = p.q.n_heads;
  a.group = p.q.n_heads / p.n_kv_heads;
  a.top_k = p.top_k;
  a.recent = p.tie == TieRule::recent;
  a.shared = p.gqa == GqaMode::shared;
  a.selected = p.selected;
  a.selected_scores = p.selected_scores;
  if (a.n_blocks > 0x7fffffff) return "gate_topk_cuda: too many blocks";
  const int64_t n_routers = a.shared ? p.n_kv_heads : p.q.n_heads;
  const auto s = static_cast<cudaStream_t>(stream);
  // The tensor-core kernel for bf16 q16 per head under Precision::fast (its kbar hi + lo
  // leaves ~2^-16 |kbar|), unless the tuning asks for the scalar one; Precision::exact selects
  // on fp32 scores (the scalar kernel: fp32 FMA, as the CPU).
  const CudaTuning& tuning = cuda_tuning();
  const bool use_mma = p.precision == Precision::fast && q16 && p.q.dtype == DType::bf16 && !a.shared &&
                  p.q.head_dim % 4 == 0 &&
                  p.q.stride_token % 2 == 0 && p.q.stride_head % 2 == 0 &&
                  reinterpret_cast<uintptr_t>(q16) % 4 == 0 && reinterpret_cast<uintptr_t>(p.kbar) % 16 == 0 &&
                  tuning.gate != CudaTuning::GatePath::scalar;
  if (use_mma) {
    GateMmaArgs b;
    b.q = q16;
    b.q_sh = p.q.stride_head;
    b.q_st = p.q.stride_token;
    b.kbar = p.kbar;
    b.n_tokens = a.n_tokens;
    b.head_dim = a.head_dim;
    b.block_size = a.block_size;
    b.n_blocks = a.n_blocks;
    b.group = a.group;
    b.top_k = a.top_k;
    b.m = a.top_k - 1;
    b.recent = a.recent;
    b.selected = a.selected;
    b.selected_scores = a.selected_scores;
    if ((a.n_tokens + kGateMmaQueries - 1) / kGateMmaQueries > 0x7fffffff || p.q.n_heads > 65535) return "gate_topk_cuda: grid too large";
    const bool register_lists = tuning.gate != CudaTuning::GatePath::warp_list;
    return launch_gate_topk_mma(b, p.q.n_heads, register_lists, s);
  }
  return launch_gate_topk_scalar(a, n_routers, s);
}

}  // namespace moba::kernels

