#pragma once
// Routers (DESIGN.md §3): `moba` (mean-pooled keys, gate scores, top-k), `moba-kconv` (the
// same on keys passed through the causal depthwise conv, kernels/kconv.h) and `oracle`
// (current block + the top-(k-1) routable blocks by exact block attention mass m_t(b) of
// full causal attention: same budget, same eligibility, same selector and tie rule).
//
// Every router writes gate_topk's `selected` layout: per (head, t) top_k block indices,
// ascending, current block included, -1 padded.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/backend.h"
#include "analysis/config_key.h"
#include "core/tensor.h"
#include "kernels/gate_topk.h"

namespace moba::analysis {

struct RoutingOptions {
  kernels::TieRule tie = kernels::TieRule::recent;
  kernels::GqaMode gqa = kernels::GqaMode::per_head;
  bool pool_fp32 = false;            // --pool-precision fp32 (default dump: mean rounded to the dump dtype)
  int kconv_width = 3;               // W in {3, 5}
  std::vector<float> kconv_weights;  // [W, head_dim]; empty = uniform 1/W
  std::string kconv_weights_source;  // file name, or "uniform"
  bool kconv_both = false;           // --kconv-apply both: the conv keys are attended too
};

// Reads kconv weights [W, head_dim]: either a .npy (magic \x93NUMPY, little-endian float32,
// C order, shape (W, head_dim)) or a text file of W lines with head_dim numbers each
// (whitespace or commas; '#' starts a comment). Every value must be finite. Throws
// InputError naming the file and the problem (FileNotFoundError when it cannot be opened).
std::vector<float> load_kconv_weights(const std::string& path, int width, int64_t head_dim);

// The keys a router scores for one KV head: the dump's keys, or their kconv (fp32).
// `k` is [1, n_tokens, head_dim]; `conv_out` receives the conv keys when the router needs them.
Tensor3 kconv_keys(const TensorView& k, const RoutingOptions& opt, Device device);

// Mean-pooled keys [1, n_blocks, head_dim] of `k` [1, n_tokens, head_dim] at block size B,
// rounded to `dump_dtype` unless pool_fp32 (DESIGN.md §3).
std::vector<float> pooled_keys(const TensorView& k, int64_t block_size, DType dump_dtype,
                               const RoutingOptions& opt, Device device);

// Routes the query heads of ONE KV group: q [group_heads, n_tokens, head_dim] (all heads of
// the group, in order), k and v [1, n_tokens, head_dim]. Writes selected [group_heads,
// n_tokens, top_k] and, when out is not null, the MoBA attention output [group_heads,
// n_tokens, head_dim] and lse [group_heads, n_tokens] (natural log, 1/sqrt(d) scale
// included) on the router's selection; under `moba-kconv` with kconv_both the attention
// reads the conv keys. The oracle streams the dense pass in chunks of `query_chunk`
// queries (block masses summed over the group under `shared`).
void route_group(const TensorView& q, const TensorView& k, const TensorView& v, DType dump_dtype,
                 RouterKind router, const RoutingOptions& opt, int64_t block_size, int top_k,
                 Device device, int32_t* selected, float* out, float* lse, int64_t query_chunk = 256);

}  // namespace moba::analysis
