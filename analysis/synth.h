#pragma once
// The synthetic simulator (DESIGN.md §6): schema-v1 Q/K/V drawn from FlashMoBA's statistical
// model of routing (research/moba-references.md §3), with the planted truth recorded.
//
// Model, per layer, for every position t and query head h (KV head g = h / (n_q_heads /
// n_kv_heads), so the q heads of a GQA group see that group's keys):
//   keys    k_j ~ N(0, I/d)                       (so |k_j|^2 ~ chi2_d / d, mean 1)
//   values  v_j ~ N(0, I/d)
//   query   q_t = a_t z_t + sum_{j in R_t} c_j k_j / |k_j|^2,   z_t ~ N(0, I/d) independent,
// where R_t holds the keys the query is related to, each with one role and coefficient c_j:
//   planted key p          c = delta_mu     (at most one; p <= t - min_distance)
//   its m - 1 cluster mates c = mu_cluster  (distinct keys of p's aligned 16-token group)
//   the sink (key 0)       c = sink
//   the local window       c = window_bias  (keys t - window + 1 .. t not already in a role)
// and a_t^2 = 1 - d/(d-2) * sum_j c_j^2.
// Because E[1/|k|^2] = d/(d-2) for k ~ N(0, I/d) and the terms are independent and
// zero-mean, this gives exactly, over the draw of keys and z:
//   E[q.k_p] = delta_mu,  E[q.k_mate] = mu_cluster,  E[q.k_0] = sink,  E[q.k_window] = window_bias,
//   E[q.k_j] = 0 and Var(q.k_j) = E|q|^2 / d = 1/d for every other key (sigma^2 = 1/d),
// so Delta_mu_eff = delta_mu + (m - 1) mu_cluster and SNR(B) = Delta_mu_eff sqrt(d / 2B).
// Dividing by |k_j|^2 removes the key's own norm fluctuation from its mean score, which keeps
// the planted key the highest-scoring routable key (the signal of DESIGN §5) for the defaults.
// The planted key and its mates share one aligned 16-token group, so they lie in one block for
// every block size that is a multiple of 16, and in a routable block (§3) for every
// block_size <= min_distance. Queries with t < min_distance (+16 with a sink), or not drawn
// by planted_fraction, get no plant: planted = -1 and delta_mu, mu_cluster do not apply.
// The sink and the window bias are departures from the SNR model (they raise noise blocks);
// leave them at 0 for theory checks.
//
// Determinism: every row draws from its own SplitMix64 stream keyed by (seed, layer, tensor,
// head, token), normals by Box-Muller, so the output depends on the seed alone, not on the
// thread count or the standard library. Changing delta_mu, mu_cluster, sink or the window
// keeps the keys, values, z and plant positions: sweeps over them are paired.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moba::analysis {

struct SynthParams {
  int64_t n_tokens = 4096;
  int n_layers = 1;
  int64_t n_q_heads = 4;
  int64_t n_kv_heads = 2;
  int64_t head_dim = 64;
  uint64_t seed = 0;
  double delta_mu = 0.8;          // mean gap of the planted key's score over noise
  int cluster_size = 4;           // m: the planted key and its m - 1 mates, 1 <= m <= 16
  double mu_cluster = 0.15;       // mean score of each mate
  double sink = 0.0;              // mean score of key 0 for every query (0: off)
  double window_bias = 0.0;       // mean score of each of the `window` most recent keys (0: off)
  int64_t window = 64;            // width of the local window, key t included
  int64_t min_distance = 256;     // planted key p <= t - min_distance; >= 16
  double planted_fraction = 1.0;  // probability that an eligible query gets a plant
  DType dtype = DType::f32;       // stored element type; tensors are rounded to it
};

// The reason the parameters cannot be generated, or "" when they can. Checks shapes
// (n_q_heads a multiple of n_kv_heads, head_dim >= 8, n_tokens < 2^31), ranges, and the
// norm budget d/(d-2) * (delta_mu^2 + (m-1) mu_cluster^2 + sink^2 + window * window_bias^2) < 1
// that keeps E|q|^2 = 1.
std::string synth_can_run(const SynthParams& p);

// One layer of the dump: q [n_q_heads, n_tokens, head_dim], k and v [n_kv_heads, ...],
// planted [n_q_heads, n_tokens] row-major: the planted key position of each query, or -1.
struct SynthLayer {
  Tensor3 q, k, v;
  std::vector<int32_t> planted;
};

// Each throws UsageError with synth_can_run's reason when the parameters are invalid.
// The parts can be drawn one at a time to bound memory (q needs this layer's keys).
Tensor3 synth_keys(const SynthParams& p, int layer);
Tensor3 synth_values(const SynthParams& p, int layer);
// `keys` must be synth_keys(p, layer). planted is resized to n_q_heads * n_tokens.
Tensor3 synth_queries(const SynthParams& p, int layer, const Tensor3& keys,
                      std::vector<int32_t>* planted);
SynthLayer synth_layer(const SynthParams& p, int layer);

// The plant of query (layer, q_head, t) as synth_queries draws it: the planted key position
// (-1 when none) and its m - 1 cluster mates, ascending, in the planted key's aligned 16-token
// group. Drawn from its own stream, so it does not depend on delta_mu, mu_cluster, the sink
// or the window.
struct SynthPlant {
  int64_t planted = -1;
  int n_mates = 0;
  int64_t mates[15] = {};
};
SynthPlant synth_plant(const SynthParams& p, int layer, int64_t q_head, int64_t t);

// Delta_mu_eff = delta_mu + (m - 1) mu_cluster (mu_noise = 0 by construction).
double synth_delta_mu_eff(const SynthParams& p);
// The model's SNR for block size B: Delta_mu_eff * sqrt(head_dim / (2 B)).
double synth_snr_theory(const SynthParams& p, int64_t block_size);

// Root attributes recording the parameters (synth_version, synth_seed, synth_delta_mu,
// synth_cluster_size, synth_mu_cluster, synth_sink, synth_window_bias, synth_window,
// synth_min_distance, synth_planted_fraction, synth_delta_mu_eff). The seed is a number, so
// it is exact only below 2^53 (the CLI keeps it there).
std::map<std::string, double> synth_attributes(const SynthParams& p);
// A one-line description for the dump's `source` attribute.
std::string synth_source(const SynthParams& p);
// Reads the synth_* attributes back (as DumpInfo::attributes holds them, text) over `shape`,
// which supplies what the datasets already record (tokens, heads, head_dim, dtype, layers).
// Returns false when the attributes are absent or malformed; `why`, when given, then names the
// first attribute at fault and the problem.
bool synth_params_from_attributes(const std::map<std::string, std::string>& attributes,
                                  const SynthParams& shape, SynthParams* out, std::string* why = nullptr);

}  // namespace moba::analysis
