// Backend-neutral part of gate_topk (kernels/gate_topk.h): validation.
#include "kernels/gate_topk.h"

namespace moba::kernels {

const char* gate_topk_can_run(const GateTopkParams& p) {
  if (!p.q.has_values() && p.q.n_tokens > 0) return "gate_topk: q.data is null";
  if (p.q.n_heads < 1 || p.q.n_tokens < 0 || p.q.head_dim < 1) return "gate_topk: bad q shape";
  if (p.q.stride_dim != 1) return "gate_topk: q rows must be contiguous (stride_dim == 1)";
  if (p.n_kv_heads < 1 || p.q.n_heads % p.n_kv_heads != 0)
    return "gate_topk: n_q_heads must be a multiple of n_kv_heads";
  if (p.block_size < 1) return "gate_topk: block_size must be >= 1";
  if (p.top_k < 1) return "gate_topk: top_k must be >= 1";
  if (p.kbar == nullptr && p.q.n_tokens > 0) return "gate_topk: kbar is null";
  if (p.selected == nullptr) return "gate_topk: selected output is null";
  if (p.query_tile < 0) return "gate_topk: query_tile must be >= 0";
  return nullptr;
}

}  // namespace moba::kernels
