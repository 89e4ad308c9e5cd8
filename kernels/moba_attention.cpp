// Backend-neutral part of MoBA attention (kernels/moba_attention.h): validation, the window.
#include "kernels/moba_attention.h"

#include <cmath>

namespace moba::kernels {
namespace {

const char* check_view(const Operand& v, const char* what_null, const char* what_contig) {
  if (!v.has_values() && v.n_tokens > 0) return what_null;
  if (v.stride_dim != 1) return what_contig;
  return nullptr;
}

}  // namespace

const char* moba_attention_can_run(const MobaAttentionParams& p) {
  if (const char* e = check_view(p.q, "moba_attention: q.data is null", "moba_attention: q rows must be contiguous")) return e;
  if (const char* e = check_view(p.k, "moba_attention: k.data is null", "moba_attention: k rows must be contiguous")) return e;
  if (const char* e = check_view(p.v, "moba_attention: v.data is null", "moba_attention: v rows must be contiguous")) return e;
  if (p.q.n_heads < 1 || p.k.n_heads < 1 || p.q.head_dim < 1 || p.q.n_tokens < 0)
    return "moba_attention: bad q/k shape";
  if (p.q.n_heads % p.k.n_heads != 0) return "moba_attention: n_q_heads must be a multiple of n_kv_heads";
  if (p.v.n_heads != p.k.n_heads) return "moba_attention: k and v disagree on n_kv_heads";
  if (p.k.n_tokens != p.q.n_tokens || p.v.n_tokens != p.q.n_tokens)
    return "moba_attention: q, k, v disagree on n_tokens";
  if (p.k.head_dim != p.q.head_dim || p.v.head_dim != p.q.head_dim)
    return "moba_attention: q, k, v disagree on head_dim";
  if (p.block_size < 1) return "moba_attention: block_size must be >= 1";
  if (p.top_k < 1) return "moba_attention: top_k must be >= 1";
  if (p.q_begin < 0 || p.q_begin > p.q.n_tokens)
    return "moba_attention: q_begin must be in [0, n_tokens]";
  if (p.q_count < -1) return "moba_attention: q_count must be >= 0, or -1 for the rows up to n_tokens";
  if (p.q_count > p.q.n_tokens - p.q_begin) return "moba_attention: q_begin + q_count exceeds n_tokens";
  if (p.selected == nullptr && moba_attention_rows(p) > 0) return "moba_attention: selected is null";
  if (p.out == nullptr && moba_attention_rows(p) > 0) return "moba_attention: out is null";
  if (!(p.softmax_scale >= 0.0f) || std::isinf(p.softmax_scale)) return "moba_attention: bad softmax_scale";
  return nullptr;
}

int64_t moba_attention_rows(const MobaAttentionParams& p) {
  return p.q_count < 0 ? p.q.n_tokens - p.q_begin : p.q_count;
}

}  // namespace moba::kernels
