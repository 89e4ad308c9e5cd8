#pragma once
// Routers (DESIGN.md §3): `moba` (mean-pooled keys, gate scores, top-k), `moba-kconv` (the
// same on keys passed through the causal depthwise conv, kernels/kconv.h) and `oracle`
// (current block + the top-(k-1) routable blocks by exact block attention mass m_t(b) of
// full causal attention: same budget, same eligibility, same selector and tie rule).
//
// Block-score routers (docs/routing.md, one score row per query, the same selector):
// `quest` (Quest's upper bound sum_c max(q_c kmin_c, q_c kmax_c) over each key block's
// channel-wise min/max), `sink-window` (StreamingLLM: sink block 0 + the most recent routable
// blocks, score row b with block 0 at +inf) and `minference-bs` (MInference block-sparse: the
// mean query of the current query block against the pooled keys, one choice per query block),
// `nsa-shared` (NSA selection: per query head the softmax of its scaled gate scores over the
// routable blocks, summed over the KV group's heads, top-k; every head of the group gets the
// same row) and `moba-threshold` (the gate scores' softmax over the routable blocks; variable
// budget, below).
//
// Variable-budget routers (docs/routing.md): `moba-threshold` and `oracle-topp` (block masses
// of the dense pass) keep the current block plus the fewest routable blocks, in the selector's
// order, whose mass reaches RoutingOptions::tau, at most k - 1 of them (k is the cap).
//
// Every router writes gate_topk's `selected` layout: per (head, t) top_k block indices,
// ascending, current block included, -1 padded.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/backend.h"
#include "analysis/config_key.h"
#include "core/tensor.h"
#include "kernels/dense_pass.h"
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
  // --precision exact|fast: how the CUDA kernels compute (kernels/operand.h, DESIGN.md §8);
  // the CPU reference is the same either way.
  kernels::Precision precision = kernels::Precision::exact;
  // --tau: the mass moba-threshold and oracle-topp must reach, in (0, 1] (docs/routing.md).
  double tau = 0.9;
};

// The numerics of the kernels' params for operands that hold the dump's values: params'
// precision = opt.precision, and q, k, v (k only when `k_from_dump`: conv keys are fp32
// values) typed as `dump_dtype` under exact (lossless: the values came from the dump, so the
// CUDA ops read them in the dump's own precision), f32 under fast (rounded to bf16 there).
// Call after the views are set.
void apply_precision(kernels::GateTopkParams& p, DType dump_dtype, const RoutingOptions& opt);
void apply_precision(kernels::MobaAttentionParams& p, DType dump_dtype, const RoutingOptions& opt,
                     bool k_from_dump = true);
void apply_precision(kernels::DensePassParams& p, DType dump_dtype, const RoutingOptions& opt);

// Reads kconv weights [W, head_dim]: either a .npy (magic \x93NUMPY, little-endian float32,
// C order, shape (W, head_dim)) or a text file of W lines with head_dim numbers each
// (whitespace or commas; '#' starts a comment). Every value must be finite. Throws
// InputError naming the file and the problem (FileNotFoundError when it cannot be opened).
std::vector<float> load_kconv_weights(const std::string& path, int width, int64_t head_dim);

// The kconv of one KV head's keys `k` [1, n_tokens, head_dim] (fp32), the keys moba-kconv
// scores (and, with kconv_both, attends).
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
// queries (block masses summed over the group under `shared`). On Device::cuda every router
// routes on the device (moba, moba-kconv: gate_topk; the others: analysis/gpu/route_gpu.h,
// unless route_gpu_unsupported says why not: then the rows and selections are the host's).
void route_group(const TensorView& q, const TensorView& k, const TensorView& v, DType dump_dtype,
                 RouterKind router, const RoutingOptions& opt, int64_t block_size, int top_k,
                 Device device, int32_t* selected, float* out, float* lse, int64_t query_chunk = 256);

// Dense-pass parameters for the block masses of queries [query_begin, query_begin +
// query_count) of q at every block size of `block_sizes` (block_mass[i]: [q heads,
// query_count, n_blocks(B_i)]) and lse [q heads, query_count]. Callers that also need o_full
// or the top-n keys set v / out / top_n / top_index on the result.
kernels::DensePassParams block_mass_pass(const TensorView& q, const TensorView& k, int64_t query_begin,
                                         int64_t query_count, float* lse, const std::vector<int64_t>& block_sizes,
                                         const std::vector<float*>& block_mass);

// The GQA `shared` oracle: for each query t = query_begin + i of a chunk, the current block
// plus the top-(k-1) routable blocks by the block masses summed over the group's heads, in
// head order in fp32 (`block_mass` [n_heads, query_count, n_blocks] of one block size), with
// kernels::select_blocks_row's tie rule. Each target receives [query_count, top_k] rows.
// route_group (oracle, shared) and analyze both select through this function.
struct OracleTarget {
  int top_k = 0;
  int32_t* selected = nullptr;  // [query_count, top_k]
};
void select_oracle_shared(const float* block_mass, int64_t n_heads, int64_t query_count, int64_t n_blocks,
                          int64_t query_begin, int64_t block_size, kernels::TieRule tie,
                          const std::vector<OracleTarget>& targets);

// The keys of one block-score router (quest, sink-window, minference-bs) of one KV head at
// block size B: quest's per-block channel-wise min and max (exact key values), minference-bs'
// pooled keys (pooled_keys: the mean rounded per --pool-precision); sink-window needs none.
struct BlockScoreKeys {
  RouterKind kind = RouterKind::quest;
  int64_t block_size = 0;
  std::vector<float> kmin, kmax;  // quest: [n_blocks, d]
  std::vector<float> kbar;        // minference-bs, moba-threshold, nsa-shared: [n_blocks, d] (moba's pooled keys)
};
BlockScoreKeys block_score_keys(RouterKind kind, const TensorView& k, int64_t block_size, DType dump_dtype,
                                const RoutingOptions& opt, Device device);

// The score row of query t (current block c = t / B) of query head `q_head` of q [G, T, d]
// (one KV group's heads, or the analysed heads): row[b] for b < c (entries from c on are not
// written). fp32, multiply then add, in channel order:
//   quest:          sum_ch max(q_ch * kmin_b,ch, q_ch * kmax_b,ch)
//   minference-bs:  sum_ch qbar_ch * kbar_b,ch, qbar = mean of q over the query block c
//                   ([cB, min((c+1)B, T)), summed in double, rounded once to fp32)
//   sink-window:    b, with block 0 at +inf (so the selector keeps the sink first, then the
//                   most recent routable blocks; head independent)
//   moba-threshold: the gate score s(t, b) = sum_ch q_ch * kbar_b,ch (bit-identical to moba's);
//                   select with select_threshold_host
//   nsa-shared:     sum over EVERY head g of q (the KV group, whatever `shared`) of
//                   p_g(b) = softmax_{b' < c}(s_g(t, b') / sqrt(d)) in double, summed in head
//                   order in double, rounded once to fp32
// Under `shared` (GQA) the row is the sum of every head of q's rows, in head order, in fp32
// (q must then hold exactly the group's heads); `tmp` [>= c] is scratch.
void block_score_row(const BlockScoreKeys& keys, const TensorView& q, int64_t q_head, bool shared, int64_t t,
                     float* row, float* tmp);

// The variable-budget selector. Candidates are the routable blocks b < c ranked by `rank`
// (kernels::ranks_before: the selector's order and tie rule); starting from `mass_current`
// (the current block's own mass), the best candidates are added one by one, each adding
// mass[b] (double, in rank order), until the sum reaches tau or min(top_k - 1, c) blocks are
// in. Writes select_blocks_row's layout and returns the number of valid entries (the realised
// budget, current block included).
int select_mass_row(const float* rank, const double* mass, double mass_current, int64_t c, int top_k, double tau,
                    kernels::TieRule tie, int32_t* selected);
// moba-threshold: `scores` the gate-score row [>= c] (block_score_row); mass = softmax over
// the routable blocks of scores / sqrt(head_dim) (double), current block 0.
int select_threshold_host(const float* scores, int64_t c, int top_k, double tau, int64_t head_dim,
                          kernels::TieRule tie, int32_t* selected);
// oracle-topp of one head: `block_mass` the dense pass's row m_t(b) [>= c + 1]; ranks and
// adds m_t(b), starting from the current block's m_t(c).
int select_topp_host(const float* block_mass, int64_t c, int top_k, double tau, kernels::TieRule tie,
                     int32_t* selected);
// oracle-topp under `shared`: as select_oracle_shared, ranked by the group's fp32 summed
// masses, mass = the summed masses / n_heads (double; the current block's too).
void select_topp_shared(const float* block_mass, int64_t n_heads, int64_t query_count, int64_t n_blocks,
                        int64_t query_begin, int64_t block_size, kernels::TieRule tie, double tau,
                        const std::vector<OracleTarget>& targets);

// Routers with gate scores (moba, moba-kconv) of one KV group, set up once for every block
// size: routing keys, pooled keys and the gate parameters of the group's queries.
struct GateRouter {
  RouterKind kind = RouterKind::moba;
  TensorView keys;                         // [1, T, d] routing keys (the dump's, or GateRouters::conv)
  std::vector<std::vector<float>> kbar;    // per block size: [1, n_blocks, d]
  // Per block size: top_k = 1 placeholders (the caller selects); select_params use the
  // routing GQA mode, snr_params per_head (SNR is a per-head quantity, DESIGN.md §5).
  std::vector<kernels::GateTopkParams> select_params, snr_params;
};
// Which routers of a list have gate scores (router_is_gate: moba, moba-kconv), numbered in
// list order: the index gi of GateRouters::gates, SNR sums and signal hits.
struct GateIndex {
  std::vector<RouterKind> kinds;  // [gi]
  std::vector<int> of_router;     // [ri]: gi, or -1 for routers without gate scores
};
GateIndex gate_index(const std::vector<RouterKind>& routers);

struct GateRouters {
  Tensor3 conv;                  // kconv keys when a router needs them
  std::vector<GateRouter> gates;
  std::vector<int> gate_of_router;  // per router of the list: index into gates, -1 for the others
  // Per router of the list: per block size the block-score keys (quest, sink-window,
  // minference-bs); empty for the other routers.
  std::vector<std::vector<BlockScoreKeys>> score_keys;
};
// Fills `out` (its views point into out->conv and the kbar buffers: keep *out in place).
void setup_gate_routers(const TensorView& q, const TensorView& k, DType dump_dtype,
                        const std::vector<RouterKind>& routers, const RoutingOptions& opt,
                        const std::vector<int64_t>& block_sizes, Device device, GateRouters* out);

// Host analysis steps: analyze scores and selects blocks per query tile on the CPU whatever
// its device (it needs every router's scores beside the exact masses of the same queries);
// only the dense pass and MoBA attention run on the chosen device (analysis/backend.h).
// Gate scores [n, n_blocks] of queries [t_begin, t_begin + n) of head q_head (kernels/gate_topk.h).
void gate_scores_tile_host(const kernels::GateTopkParams& p, int64_t q_head, int64_t t_begin, int64_t n,
                           float* scores);
// One query's selection from its block scores (kernels/gate_topk.h select_blocks_row).
int select_blocks_host(const float* scores, int64_t current_block, int top_k, kernels::TieRule tie,
                       int32_t* selected);

}  // namespace moba::analysis
