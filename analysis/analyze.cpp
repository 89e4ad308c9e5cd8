// analyze_group (analysis/analyze.h) as a driver of named stages.
//
// Index names: ci = configuration, bi = block size, ri = router, gi = gate router (plan and
// routers of analysis/analyze_plan.h and analysis/router.h).
#define EIGEN_DONT_PARALLELIZE
#include "analysis/analyze.h"

#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "analysis/gpu/analyze_gpu.h"
#include "analysis/head_summary.h"
#include "analysis/metrics.h"
#include "analysis/snr_probe.h"
#include "analysis/stage_profile.h"
#include "core/background.h"
#include "core/errors.h"
#include "kernels/backend.h"
#include "kernels/dense_pass.h"

namespace moba::analysis {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kSubtile = 64;  // queries per parallel work item within a chunk

// What stays fixed while one KV group is analysed.
struct GroupContext {
  const GroupInput& in;
  const AnalyzeOptions& opt;
  const AnalyzePlan& plan;
  const GateRouters& routers;
  // Under `shared`: per configuration the group's oracle selection [T, top_k] at [ci], and
  // oracle-topp's at [n_configs + ci] (empty unless oracle-topp is listed).
  const std::vector<std::vector<int32_t>>& shared_oracle;
  bool shared = false;
  int n_routers = 0, n_gates = 0;
  int snr_index(int gi, int bi) const { return gi * plan.n_block_sizes() + bi; }
};

// Everything one analysed head accumulates over its chunks.
struct HeadState {
  int64_t head = 0;        // global query head
  int64_t local = 0;       // its index in in.q
  TensorView q;            // [1, T, d]
  const int32_t* planted = nullptr;             // [T] planted key per query, or null
  std::vector<PositionArrays> arrays;           // [ci * n_routers + ri]; .selected only where kept
  int64_t w0 = 0;                               // the attention window's first query
  std::vector<std::vector<int32_t>> sel;        // [slot]: the window's selections [window, k]
  std::vector<double> sel_sum;                  // [slot]: |S_t| summed over the queries with a choice
  std::vector<int64_t> sel_n;                   // [slot]: those queries
  std::vector<float> o_full;                    // [T, d]
  std::vector<std::vector<float>> oracle_cov;   // [ci][T]: R*_t, whether or not the oracle is listed
  std::vector<SnrStats> snr;                    // [snr_index(gi, bi)]
  std::vector<int64_t> signal_hits;             // [ci * max(n_gates, 1) + gi]
  std::vector<int64_t> planted_hits;            // [ci * n_routers + ri]
  std::vector<KeyPrefix> prefix;                // [snr_index(gi, bi)]
};

// The dense pass's outputs for one query chunk [t0, t0 + nq), and the SNR prefix snapshots
// for its current blocks.
struct ChunkData {
  int64_t t0 = 0, nq = 0;
  std::vector<float> lse;                        // [chunk]
  std::vector<std::vector<float>> mass;          // [bi]: [chunk, n_blocks]
  std::vector<int32_t> top_index;                // [chunk, n_top]
  std::vector<std::vector<PrefixSnapshot>> snaps;  // [snr_index(gi, bi)]: c = snap_first[bi] ..
  std::vector<int64_t> snap_first;               // [bi]
};

// Per-item accumulators of one (block size, query subtile) work item.
struct ItemAcc {
  std::vector<SnrStats> snr;            // [gi]
  std::vector<int64_t> signal_hits;     // [jc * n_gates + gi], jc: configuration of this block size
  std::vector<int64_t> planted_hits;    // [jc * n_routers + ri]
};

// Per-thread scratch of the item loop.
struct ItemScratch {
  std::vector<float> scores, snr_scores;  // [gi, n, n_blocks]
  std::vector<int32_t> oracle_sel;
  std::vector<float> block_rows, block_tmp;  // [ri, n_blocks]: block-score routers' rows of one query
  Eigen::VectorXf key_scores;
};

// Stage 1 (GQA `shared` only): like the gate routers, the oracle makes one choice per KV
// group, from the group's summed block masses (select_oracle_shared, as route_group does;
// oracle-topp by select_topp_shared when listed: [n_configs + ci]).
// One dense pass over every head of the group (in.q holds them all then).
std::vector<std::vector<int32_t>> shared_oracle_pass(const GroupInput& in, const AnalyzeOptions& opt,
                                                     const AnalyzePlan& plan) {
  const int n_cfg = plan.n_configs();
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(2 * n_cfg));
  const bool topp = std::find(opt.routers.begin(), opt.routers.end(), RouterKind::oracle_topp) != opt.routers.end();
  const int64_t T = plan.n_tokens, C = plan.chunk, G = in.q.n_heads;
  for (int ci = 0; ci < n_cfg; ++ci) {
    out[ci].assign(static_cast<size_t>(T * plan.configs[ci].top_k), -1);
    if (topp) out[n_cfg + ci].assign(static_cast<size_t>(T * plan.configs[ci].top_k), -1);
  }
  std::vector<std::vector<float>> mass(plan.block_sizes.size());  // [bi]: [G, C, n_blocks]
  std::vector<float*> mass_ptr;
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    mass[bi].resize(static_cast<size_t>(G * C * plan.n_blocks[bi]));
    mass_ptr.push_back(mass[bi].data());
  }
  std::vector<float> lse(static_cast<size_t>(G * C));
  for (int64_t t0 = 0; t0 < T; t0 += C) {
    const int64_t nq = std::min(C, T - t0);
    kernels::DensePassParams dp = block_mass_pass(in.q, in.k, t0, nq, lse.data(), plan.block_sizes, mass_ptr);
    apply_precision(dp, in.dtype, opt.routing);
    run_dense_pass(dp, opt.device);
    for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
      std::vector<OracleTarget> targets;
      for (const int ci : plan.configs_of_block[bi])
        targets.push_back({plan.configs[ci].top_k, out[ci].data() + t0 * plan.configs[ci].top_k});
      select_oracle_shared(mass[bi].data(), G, nq, plan.n_blocks[bi], t0, plan.block_sizes[bi], opt.routing.tie,
                           targets);
      if (!topp) continue;
      for (size_t j = 0; j < targets.size(); ++j) {
        const int ci = plan.configs_of_block[bi][j];
        targets[j].selected = out[n_cfg + ci].data() + t0 * plan.configs[ci].top_k;
      }
      select_topp_shared(mass[bi].data(), G, nq, plan.n_blocks[bi], t0, plan.block_sizes[bi], opt.routing.tie,
                         opt.routing.tau, targets);
    }
  }
  return out;
}

// Stage 2: the head's arrays and accumulators, all NaN / zero; the selections of a window of
// `window` queries, and of the whole sequence where `keep_selection` keeps them.
HeadState init_head(const GroupContext& g, int64_t head, int64_t window,
                    const std::function<bool(const ConfigKey&)>& keep_selection) {
  const int64_t T = g.plan.n_tokens, d = g.in.q.head_dim;
  HeadState h;
  h.head = head;
  h.local = head - g.in.q_head_first;
  h.q = g.in.q.heads(h.local, 1);
  h.planted = g.in.planted && !g.in.planted->empty() ? g.in.planted->data() + head * T : nullptr;
  for (const BlockConfig& cfg : g.plan.configs)
    for (const RouterKind router : g.opt.routers) {
      PositionArrays a;
      a.key = {g.in.layer, head, cfg.block_size, cfg.top_k, router};
      if (keep_selection(a.key)) a.selected.assign(static_cast<size_t>(T * cfg.top_k), -1);
      h.sel.emplace_back(static_cast<size_t>(window * cfg.top_k), -1);
      for (const auto& m : position_metrics()) a.metric(m.metric).assign(static_cast<size_t>(T), kNaNf);
      a.choice.assign(static_cast<size_t>(T), 0);
      h.arrays.push_back(std::move(a));
    }
  const int n_cfg = g.plan.n_configs(), n_snr = g.n_gates * g.plan.n_block_sizes();
  h.sel_sum.assign(h.arrays.size(), 0.0);
  h.sel_n.assign(h.arrays.size(), 0);
  h.o_full.resize(static_cast<size_t>(T * d));
  h.oracle_cov.assign(static_cast<size_t>(n_cfg), std::vector<float>(static_cast<size_t>(T), kNaNf));
  h.snr.resize(static_cast<size_t>(n_snr));
  h.signal_hits.assign(static_cast<size_t>(n_cfg * std::max(g.n_gates, 1)), 0);
  h.planted_hits.assign(static_cast<size_t>(n_cfg * g.n_routers), 0);
  h.prefix.assign(static_cast<size_t>(n_snr), KeyPrefix(d));
  return h;
}

// Stage 3a: the dense pass of one chunk (lse, o_full, block masses, top-n keys) and the SNR
// prefix snapshots S1(c), M(c) for every current block c >= 2 of the chunk.
void dense_pass_chunk(const GroupContext& g, HeadState& h, ChunkData& ch) {
  const AnalyzePlan& plan = g.plan;
  const int64_t d = g.in.q.head_dim;
  std::vector<float*> mass_ptr;
  for (auto& m : ch.mass) mass_ptr.push_back(m.data());
  kernels::DensePassParams dp = block_mass_pass(h.q, g.in.k, ch.t0, ch.nq, ch.lse.data(), plan.block_sizes, mass_ptr);
  dp.v = g.in.v;
  dp.out = h.o_full.data() + ch.t0 * d;
  dp.top_n = plan.n_top;
  dp.top_index = ch.top_index.data();
  apply_precision(dp, g.in.dtype, g.opt.routing);
  run_dense_pass(dp, g.opt.device);

  ch.snaps.assign(static_cast<size_t>(g.n_gates * plan.n_block_sizes()), {});
  ch.snap_first.assign(static_cast<size_t>(plan.n_block_sizes()), 0);
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    const int64_t B = plan.block_sizes[bi];
    const int64_t c_lo = std::max<int64_t>(2, ch.t0 / B), c_hi = (ch.t0 + ch.nq - 1) / B;
    ch.snap_first[bi] = c_lo;
    for (int gi = 0; gi < g.n_gates; ++gi)
      h.prefix[g.snr_index(gi, bi)].snapshots(g.routers.gates[gi].keys, B, c_lo, c_hi, &ch.snaps[g.snr_index(gi, bi)]);
  }
}

// Stage 3b, per query t and configuration ci: the oracle's and every router's selection and
// the eight per-position metrics. `scores` [gi, n, n_blocks] are the item's gate scores, row i.
void route_query(const GroupContext& g, HeadState& h, const ChunkData& ch, int bi, int64_t t, int64_t i, int64_t n,
                 const std::vector<float>& scores, ItemScratch& s, ItemAcc& acc) {
  const AnalyzePlan& plan = g.plan;
  const int64_t T = plan.n_tokens, B = plan.block_sizes[bi], nb = plan.n_blocks[bi], c = t / B, r = t - ch.t0;
  const float* mrow = ch.mass[bi].data() + r * nb;
  const int32_t* top = ch.top_index.data() + r * plan.n_top;
  const kernels::TieRule tie = g.opt.routing.tie;
  const std::vector<int>& cfgs = plan.configs_of_block[bi];
  // Block-score routers (quest, sink-window, minference-bs, moba-threshold, nsa-shared): one
  // row per query, every k.
  s.block_rows.resize(static_cast<size_t>(g.n_routers * nb));
  s.block_tmp.resize(static_cast<size_t>(nb));
  for (int ri = 0; ri < g.n_routers; ++ri)
    if (!g.routers.score_keys[ri].empty())
      block_score_row(g.routers.score_keys[ri][bi], g.in.q, h.local, g.shared, t, s.block_rows.data() + ri * nb,
                      s.block_tmp.data());
  for (size_t jc = 0; jc < cfgs.size(); ++jc) {
    const int ci = cfgs[jc];
    const int K = plan.configs[ci].top_k;
    if (g.shared)
      std::copy_n(g.shared_oracle[ci].data() + t * K, K, s.oracle_sel.data());
    else
      select_blocks_host(mrow, c, K, tie, s.oracle_sel.data());
    h.oracle_cov[ci][t] = static_cast<float>(coverage(mrow, s.oracle_sel.data(), K));
    const bool choice = has_choice(t, B, K);
    for (int ri = 0; ri < g.n_routers; ++ri) {
      PositionArrays& pa = h.arrays[ci * g.n_routers + ri];
      int32_t* sel = h.sel[ci * g.n_routers + ri].data() + (t - h.w0) * K;
      const int gi = g.routers.gate_of_router[ri];
      const RouterKind kind = g.opt.routers[ri];
      if (kind == RouterKind::moba_threshold)
        select_threshold_host(s.block_rows.data() + ri * nb, c, K, g.opt.routing.tau, g.in.q.head_dim, tie, sel);
      else if (!g.routers.score_keys[ri].empty())
        select_blocks_host(s.block_rows.data() + ri * nb, c, K, tie, sel);
      else if (kind == RouterKind::oracle_topp && g.shared)
        std::copy_n(g.shared_oracle[g.plan.n_configs() + ci].data() + t * K, K, sel);
      else if (kind == RouterKind::oracle_topp)
        select_topp_host(mrow, c, K, g.opt.routing.tau, tie, sel);
      else if (gi < 0)
        std::copy(s.oracle_sel.begin(), s.oracle_sel.begin() + K, sel);
      else
        select_blocks_host(scores.data() + (gi * n + i) * nb, c, K, tie, sel);
      const double cov = coverage(mrow, sel, K);
      pa.coverage[t] = static_cast<float>(cov);
      pa.kl[t] = static_cast<float>(-std::log(std::max(cov, 1e-300)));
      pa.block_recall[t] = choice ? static_cast<float>(block_recall(sel, s.oracle_sel.data(), K, c)) : kNaNf;
      pa.token_recall[t] = static_cast<float>(token_recall(top, g.opt.top_n, sel, K, B));
      pa.sparsity_token[t] = static_cast<float>(1.0 - static_cast<double>(attended_keys(sel, K, B, t, T)) / (t + 1));
      pa.block_density[t] = static_cast<float>(static_cast<double>(selection_count(sel, K)) / (c + 1));
      pa.choice[t] = choice ? 1 : 0;
      if (h.planted && choice && h.planted[t] >= 0 && h.planted[t] / B < c) {
        const auto pb = static_cast<int32_t>(h.planted[t] / B);
        acc.planted_hits[jc * g.n_routers + ri] += std::binary_search(sel, sel + selection_count(sel, K), pb) ? 1 : 0;
      }
    }
  }
}

// Stage 3c, per query t with c >= 2: the SNR probe for every gate router (snr_probe.h).
void probe_query(const GroupContext& g, const HeadState& h, const ChunkData& ch, int bi, int64_t t, int64_t i,
                 int64_t n, ItemScratch& s, ItemAcc& acc) {
  const AnalyzePlan& plan = g.plan;
  const int64_t B = plan.block_sizes[bi], nb = plan.n_blocks[bi], c = t / B, d = g.in.q.head_dim;
  const int32_t* top = ch.top_index.data() + (t - ch.t0) * plan.n_top;
  const int64_t j_star = find_signal_key(top, plan.n_top, c * B, h.q.row(0, t), g.in.k, &s.key_scores);
  const int64_t b_star = j_star / B;
  const Eigen::VectorXd qd = Eigen::Map<const Eigen::VectorXf>(h.q.row(0, t), d).cast<double>();
  const std::vector<int>& cfgs = plan.configs_of_block[bi];
  for (int gi = 0; gi < g.n_gates; ++gi) {
    const PrefixSnapshot& prefix = ch.snaps[g.snr_index(gi, bi)][c - ch.snap_first[bi]];
    const SnrQuerySums sums = snr_query_sums(g.routers.gates[gi].keys, B, j_star, qd, prefix);
    const float* srow = (g.shared ? s.snr_scores : s.scores).data() + (gi * n + i) * nb;
    const int rank = snr_add_query(acc.snr[gi], srow, c, b_star, g.opt.routing.tie, sums, B);
    for (size_t jc = 0; jc < cfgs.size(); ++jc) {
      const int K = plan.configs[cfgs[jc]].top_k;
      if (has_choice(t, B, K) && rank <= K - 1) ++acc.signal_hits[jc * g.n_gates + gi];
    }
  }
}

// Stage 3: one work item = one block size x one subtile of queries [ts, ts + n).
void measure_item(const GroupContext& g, HeadState& h, const ChunkData& ch, int bi, int64_t ts, int64_t n,
                  ItemScratch& s, ItemAcc& acc) {
  const AnalyzePlan& plan = g.plan;
  const int64_t B = plan.block_sizes[bi], nb = plan.n_blocks[bi];
  const std::vector<int>& cfgs = plan.configs_of_block[bi];
  const int n_cfg = static_cast<int>(cfgs.size());
  acc.snr.assign(static_cast<size_t>(g.n_gates), SnrStats());
  acc.signal_hits.assign(static_cast<size_t>(n_cfg * std::max(g.n_gates, 1)), 0);
  acc.planted_hits.assign(static_cast<size_t>(n_cfg * g.n_routers), 0);
  s.scores.resize(static_cast<size_t>(g.n_gates * n * nb));
  s.snr_scores.resize(g.shared ? static_cast<size_t>(g.n_gates * n * nb) : 0);
  for (int gi = 0; gi < g.n_gates; ++gi) {
    const GateRouter& gate = g.routers.gates[gi];
    gate_scores_tile_host(gate.select_params[bi], h.local, ts, n, s.scores.data() + gi * n * nb);
    if (g.shared) gate_scores_tile_host(gate.snr_params[bi], h.local, ts, n, s.snr_scores.data() + gi * n * nb);
  }
  int max_k = 1;
  for (const int ci : cfgs) max_k = std::max(max_k, plan.configs[ci].top_k);
  s.oracle_sel.resize(static_cast<size_t>(max_k));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = ts + i;
    route_query(g, h, ch, bi, t, i, n, s.scores, s, acc);
    if (t / B >= 2 && g.n_gates > 0) probe_query(g, h, ch, bi, t, i, n, s, acc);
  }
}

// Stage 3 driver for one chunk: items in parallel, merged in item order (deterministic
// whatever the thread count).
void measure_chunk(const GroupContext& g, HeadState& h, const ChunkData& ch) {
  const int n_bs = g.plan.n_block_sizes();
  const int64_t n_sub = (ch.nq + kSubtile - 1) / kSubtile;
  const int64_t n_items = n_bs * n_sub;
  std::vector<ItemAcc> acc(static_cast<size_t>(n_items));
#pragma omp parallel
  {
    ItemScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t ts = ch.t0 + (item / n_bs) * kSubtile;
      measure_item(g, h, ch, static_cast<int>(item % n_bs), ts, std::min(kSubtile, ch.t0 + ch.nq - ts), scratch,
                   acc[item]);
    }
  }
  for (int64_t item = 0; item < n_items; ++item) {
    const int bi = static_cast<int>(item % n_bs);
    const ItemAcc& a = acc[item];
    for (int gi = 0; gi < g.n_gates; ++gi) h.snr[g.snr_index(gi, bi)].merge(a.snr[gi]);
    const std::vector<int>& cfgs = g.plan.configs_of_block[bi];
    for (size_t jc = 0; jc < cfgs.size(); ++jc) {
      const int ci = cfgs[jc];
      for (int gi = 0; gi < g.n_gates; ++gi) h.signal_hits[ci * g.n_gates + gi] += a.signal_hits[jc * g.n_gates + gi];
      for (int ri = 0; ri < g.n_routers; ++ri)
        h.planted_hits[ci * g.n_routers + ri] += a.planted_hits[jc * g.n_routers + ri];
    }
  }
}

// Stage 4 for the window [h.w0, h.w0 + wn): MoBA attention on each router's selection, its
// error against o_full; then the window's selections go to the kept arrays and |S_t| sums.
void output_errors(const GroupContext& g, HeadState& h, int64_t wn) {
  const int64_t d = g.in.q.head_dim, w0 = h.w0;
  std::vector<float> o_moba(static_cast<size_t>(wn * d));
  for (int ci = 0; ci < g.plan.n_configs(); ++ci)
    for (int ri = 0; ri < g.n_routers; ++ri) {
      const int slot = ci * g.n_routers + ri;
      PositionArrays& pa = h.arrays[slot];
      const int K = g.plan.configs[ci].top_k;
      const int32_t* sel = h.sel[slot].data();
      kernels::MobaAttentionParams ap;
      ap.q = h.q;
      ap.k = g.opt.routers[ri] == RouterKind::moba_kconv && g.opt.routing.kconv_both ? g.routers.conv.view() : g.in.k;
      ap.v = g.in.v;
      ap.selected = sel;
      ap.q_begin = w0;
      ap.q_count = wn;
      ap.top_k = K;
      ap.block_size = g.plan.configs[ci].block_size;
      ap.out = o_moba.data();
      apply_precision(ap, g.in.dtype, g.opt.routing,
                      !(g.opt.routers[ri] == RouterKind::moba_kconv && g.opt.routing.kconv_both));
      run_moba_attention(ap, g.opt.device);
#pragma omp parallel for schedule(static)
      for (int64_t t = w0; t < w0 + wn; ++t) {
        double rel, cosine;
        output_error(o_moba.data() + (t - w0) * d, h.o_full.data() + t * d, d, &rel, &cosine);
        pa.output_rel_err[t] = static_cast<float>(rel);
        pa.output_cosine[t] = static_cast<float>(cosine);
      }
      if (!pa.selected.empty()) std::copy_n(sel, wn * K, pa.selected.data() + w0 * K);
      for (int64_t t = w0; t < w0 + wn; ++t)  // in t order: config_stats' sum, bit for bit
        if (pa.choice[t]) {
          h.sel_sum[slot] += selection_count(sel + (t - w0) * K, K);
          ++h.sel_n[slot];
        }
    }
}

// Stage 5 (either device) of one measured head, in two parts: the rows (returned), then
// summary_commit's buckets, analysis.h5 tables and SNR sums. `gates` numbers the gate routers
// as analysis/router.h GateRouters does.
std::vector<SummaryRow> summary_rows(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan,
                                     const GateIndex& gates, const HeadMeasures& m) {
  const int64_t T = plan.n_tokens, d = in.q.head_dim;
  const int n_routers = static_cast<int>(opt.routers.size()), n_gates = static_cast<int>(gates.kinds.size());
  const std::vector<int64_t> edges = bucket_edges(T, opt.n_buckets, opt.bucket_width);
  const double snr_synth_factor = in.synth ? synth_delta_mu_eff(*in.synth) : kNaN;
  const int32_t* planted = in.planted && !in.planted->empty() ? in.planted->data() + m.head * T : nullptr;
  // The rows first, in parallel over (configuration, router) (the retrieval predictions cost
  // up to tens of ms each), then buckets and analysis.h5 in slot order.
  const int n_slots = plan.n_configs() * n_routers;
  StageTimer timer(opt.profile);
  std::vector<SummaryRow> rows(static_cast<size_t>(n_slots));
#pragma omp parallel for schedule(dynamic, 1)
  for (int slot = 0; slot < n_slots; ++slot) {
    const int ci = slot / n_routers, ri = slot % n_routers, gi = gates.of_router[ri];
    const BlockConfig& cfg = plan.configs[ci];
    const int bi = plan.block_of_config[ci];
    const RetrievalCounts counts = retrieval_counts(T, cfg.block_size, cfg.top_k, plan.n_blocks[bi], planted);
    HeadRowInput row_in;
    row_in.n_tokens = T;
    row_in.counts = &counts;
    row_in.kv_head = in.kv_head;
    row_in.n_blocks = plan.n_blocks[bi];
    row_in.head_dim = d;
    row_in.nominal_sparsity = cfg.nominal_sparsity;
    row_in.snr_synth = in.synth ? snr_synth_factor * std::sqrt(static_cast<double>(d) / (2.0 * cfg.block_size)) : kNaN;
    row_in.synth = in.synth != nullptr;
    row_in.key = {in.layer, m.head, cfg.block_size, cfg.top_k, opt.routers[ri]};
    row_in.stats = &m.stats[slot];
    row_in.snr = gi >= 0 ? &m.snr[gi * plan.n_block_sizes() + bi] : nullptr;
    row_in.signal_hits = gi >= 0 ? m.signal_hits[ci * n_gates + gi] : 0;
    row_in.planted_hits = m.planted_hits[slot];
    rows[static_cast<size_t>(slot)] = head_summary_row(row_in);
  }
  timer.lap("host: summary rows (SNR model)", "head " + std::to_string(m.head));
  return rows;
}

void summary_commit(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan, const GateIndex& gates,
                    HeadMeasures& m, std::vector<SummaryRow>& rows, GroupResult& result, H5Output* h5) {
  const int64_t T = plan.n_tokens;
  const int n_gates = static_cast<int>(gates.kinds.size());
  const std::vector<int64_t> edges = bucket_edges(T, opt.n_buckets, opt.bucket_width);
  const int n_slots = static_cast<int>(rows.size());
  StageTimer timer(opt.profile);
  const size_t first_bucket = result.buckets.size(), first_snr = result.snr.size();
  // The head's kept configurations in batches of at least kKeptBatchBytes (the whole head's at
  // B4's size): their chunks (one a metric array up to 64K tokens) are compressed side by side,
  // not a configuration's few at a time (every head kept, 16 heads x 8K tokens on an H100:
  // 1.08 -> 0.68 s), while a batch's compressed chunks, held until written, stay bounded.
  constexpr int64_t kKeptBatchBytes = int64_t{64} << 20;
  std::vector<H5Output::Item> kept;
  int64_t kept_bytes = 0;
  const auto write_kept = [&] {
    if (!kept.empty()) h5->write_batch(kept);
    kept.clear();
    kept_bytes = 0;
  };
  for (int slot = 0; slot < n_slots; ++slot) {
    const SummaryRow& row = rows[static_cast<size_t>(slot)];
    add_bucket_rows(row.key, m.stats[slot], edges, &result.buckets);
    // Arrays and selections as opt.keep says (when the measurement kept them at all).
    if (h5 && !m.arrays.empty()) {
      const size_t first = kept.size();
      kept_array_items(m.arrays[slot], T, opt.keep.keeps_arrays(row.key), opt.keep.keeps_selection(row.key), &kept);
      for (size_t i = first; i < kept.size(); ++i) kept_bytes += 4 * kept[i].elements();  // float32 or int32
      if (kept_bytes >= kKeptBatchBytes) write_kept();
    }
  }
  write_kept();
  for (int gi = 0; gi < n_gates; ++gi)
    for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
      const ConfigKey key{in.layer, m.head, plan.block_sizes[bi], 0, gates.kinds[gi]};
      result.snr.push_back({key, m.snr[gi * plan.n_block_sizes() + bi]});
    }
  // The head's summary rows, bucket curves and SNR histograms: a few tables, whatever is kept.
  if (h5 && n_slots > 0)
    write_head_tables(*h5, rows, opt.routers, result.buckets.data() + first_bucket,
                      (result.buckets.size() - first_bucket) / static_cast<size_t>(n_slots),
                      result.snr.data() + first_snr, result.snr.size() - first_snr);
  for (SummaryRow& row : rows) result.rows.push_back(std::move(row));
  if (opt.keep_arrays)
    for (auto& a : m.arrays) result.arrays.push_back(std::move(a));
  timer.lap("host: buckets + analysis.h5 writes", "head " + std::to_string(m.head));
}

void summarize_head(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan, const GateIndex& gates,
                    HeadMeasures& m, GroupResult& result, H5Output* h5) {
  std::vector<SummaryRow> rows = summary_rows(in, opt, plan, gates, m);
  summary_commit(in, opt, plan, gates, m, rows, result, h5);
}

// The host measurement of one head as HeadMeasures. With `keep_arrays`, the arrays are moved
// out: every one with opt.keep_arrays, else (for analysis.h5) those opt.keep keeps, the
// selection only where kept; the others carry their key only and are freed here (as the GPU
// path's download_arrays never copies them back).
HeadMeasures host_measures(const GroupContext& g, HeadState& h, bool keep_arrays) {
  const int64_t T = g.plan.n_tokens;
  const std::vector<int64_t> edges = bucket_edges(T, g.opt.n_buckets, g.opt.bucket_width);
  HeadMeasures m;
  m.head = h.head;
  for (int ci = 0; ci < g.plan.n_configs(); ++ci)
    for (int ri = 0; ri < g.n_routers; ++ri) {
      const int slot = ci * g.n_routers + ri;
      m.stats.push_back(config_stats(h.arrays[slot], h.oracle_cov[ci], edges, g.plan.trailing));
      // The selection came by windows (kept or not): its mean |S_t| from output_errors' sums.
      m.stats.back().selected_mean = h.sel_n[slot] > 0 ? h.sel_sum[slot] / static_cast<double>(h.sel_n[slot]) : kNaN;
    }
  m.snr = std::move(h.snr);
  m.signal_hits = std::move(h.signal_hits);
  m.planted_hits = std::move(h.planted_hits);
  if (keep_arrays && !g.opt.keep_arrays)  // (selections exist only where kept: init_head)
    for (PositionArrays& a : h.arrays)
      if (!g.opt.keep.keeps_arrays(a.key)) {
        PositionArrays key_only;
        key_only.key = a.key;
        a = std::move(key_only);
      }
  if (keep_arrays) m.arrays = std::move(h.arrays);
  return m;
}

// Workers of analyze_group_on_gpus for a group of n_heads analysed heads.
int gpu_workers(const AnalyzeOptions& opt, int n_heads) {
  const int n_dev = std::max(1, kernels::cuda_device_count());
  return std::max(1, std::min(opt.gpus > 0 ? opt.gpus : n_dev, n_heads));
}

// The GPU-resident analysis of one group (analysis/gpu/analyze_gpu.h) on opt.gpus workers
// (0: one per visible GPU): contiguous parts of the heads, part w on device w % n_devices,
// each worker on its own thread; the measures are summarised in head order afterwards, so
// the results do not depend on the number of workers.
void analyze_group_on_gpus(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan,
                           Progress* progress, H5Output* h5, SummaryQueue& queue, GroupResult& result) {
  const bool keep = opt.keep_arrays || h5;
  // Queued jobs outlive this call: they hold the plan and gate numbering themselves.
  const auto shared_plan = std::make_shared<const AnalyzePlan>(plan);
  const auto gates = std::make_shared<const GateIndex>(gate_index(opt.routers));
  auto summarize = [&in, &opt, h5, &result, shared_plan, gates](HeadMeasures& m) {
    summarize_head(in, opt, *shared_plan, *gates, m, result, h5);
  };
  const int n_dev = std::max(1, kernels::cuda_device_count());
  const int n_heads = static_cast<int>(in.heads.size());
  const int n_workers = gpu_workers(opt, n_heads);
  if (n_workers == 1) {
    analyze_group_gpu(in, opt, plan, keep, progress,
                      [&](std::future<HeadMeasures> f) {
                        // The rows on the queue's first thread (once a kept head's arrays are
                        // back: analyze_group_gpu may return before), the writes on its second.
                        auto pending = std::make_shared<std::future<HeadMeasures>>(std::move(f));
                        queue.push([&in, &opt, h5, &result, shared_plan, gates, pending]() -> SummaryQueue::Commit {
                          auto held = std::make_shared<HeadMeasures>(pending->get());
                          auto rows = std::make_shared<std::vector<SummaryRow>>(
                              summary_rows(in, opt, *shared_plan, *gates, *held));
                          return [&in, &opt, h5, &result, shared_plan, gates, held, rows] {
                            summary_commit(in, opt, *shared_plan, *gates, *held, *rows, result, h5);
                          };
                        });
                      },
                      0);
    return;
  }
  std::vector<std::vector<std::future<HeadMeasures>>> parts(static_cast<size_t>(n_workers));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n_workers));
  std::vector<std::thread> threads;
  for (int w = 0; w < n_workers; ++w) {
    GroupInput part = in;
    part.gpu_inputs.reset();  // uploaded for one worker (gpu_one_worker): each worker uploads its own
    part.heads.assign(in.heads.begin() + n_heads * w / n_workers, in.heads.begin() + n_heads * (w + 1) / n_workers);
    threads.emplace_back([&, w, part]() {
      try {
        analyze_group_gpu(part, opt, plan, keep, nullptr,
                          [&](std::future<HeadMeasures> f) { parts[w].push_back(std::move(f)); }, w % n_dev);
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  if (progress) progress->advance(n_heads * ((plan.n_tokens + plan.chunk - 1) / plan.chunk));
  for (auto& part : parts)
    for (std::future<HeadMeasures>& f : part) {
      HeadMeasures m = f.get();  // a kept head's: once its arrays are back
      summarize(m);
    }
}

}  // namespace

std::string analyze_device_split(const AnalyzeOptions& opt, int64_t n_tokens, int64_t head_dim) {
  if (opt.device == Device::cpu) return "";
  const std::string why = gpu_analysis_unsupported(opt, make_plan(opt, n_tokens), head_dim);
  if (why.empty()) {
    const int n_dev = std::max(1, kernels::cuda_device_count()), workers = opt.gpus > 0 ? opt.gpus : n_dev;
    std::string s = std::string("every stage on ") + device_name(opt.device) + " (GPU-resident analysis)";
    if (workers > 1)
      s += ", each KV group's heads split over " + std::to_string(workers) + " workers on " + std::to_string(n_dev) +
           " GPU" + (n_dev > 1 ? "s" : "");
    return s;
  }
  return "routing, metrics and SNR on the CPU (" + why + "); dense pass and MoBA attention on " +
         device_name(opt.device);
}

SummaryQueue::SummaryQueue() : compute_thread_([this] { run_compute(); }), commit_thread_([this] { run_commit(); }) {}

SummaryQueue::~SummaryQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
  if (compute_thread_.joinable()) compute_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    compute_done_ = true;
  }
  ready_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
}

void SummaryQueue::push(std::function<Commit()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    jobs_.push_back({std::move(job), next_seq_++, false});
  }
  ready_.notify_all();
}

std::shared_future<void> SummaryQueue::mark() {
  auto done = std::make_shared<std::promise<void>>();
  std::shared_future<void> f = done->get_future().share();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({[done]() -> Commit { return [done] { done->set_value(); }; }, next_seq_++, true});
  }
  ready_.notify_all();
  return f;
}

void SummaryQueue::wait(const std::shared_future<void>& marker) {
  marker.wait();
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) std::rethrow_exception(error_);
}

void SummaryQueue::drain() { wait(mark()); }

void SummaryQueue::fail(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!error_ || seq < failed_seq_) error_ = std::current_exception(), failed_seq_ = seq;
}

template <typename J>
bool SummaryQueue::take(std::deque<J>& from, const bool& done, J* out) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ready_.wait(lock, [&] { return done || !from.empty(); });
    if (from.empty()) return false;
    *out = std::move(from.front());
    from.pop_front();
    if (!dropped(out->seq, out->marker)) return true;
  }
}

void SummaryQueue::run_compute() {
  lower_thread_priority();  // and its OpenMP team: the summaries run beside the device's feeders
  if (stage_trace_on()) stage_trace_name_thread("summary queue: rows (OpenMP team)");
  Job job;
  while (take(jobs_, closed_, &job)) {
    Commit commit;
    try {
      commit = job.compute();
    } catch (...) {
      fail(job.seq);
      if (!job.marker) continue;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      commits_.push_back({std::move(commit), job.seq, job.marker});
    }
    ready_.notify_all();
  }
}

void SummaryQueue::run_commit() {
  lower_thread_priority();  // and its OpenMP team (analysis.h5's compression)
  if (stage_trace_on()) stage_trace_name_thread("summary queue: buckets + analysis.h5 writes");
  CommitJob c;
  while (take(commits_, compute_done_, &c)) {
    try {
      if (c.run) c.run();
    } catch (...) {
      fail(c.seq);
    }
  }
}

bool gpu_one_worker(const AnalyzeOptions& opt, int64_t n_tokens, int64_t head_dim, size_t n_heads) {
  if (opt.device != Device::cuda || n_heads == 0) return false;
  const AnalyzePlan plan = make_plan(opt, n_tokens);
  return plan.n_tokens > 0 && gpu_analysis_unsupported(opt, plan, head_dim).empty() &&
         gpu_workers(opt, static_cast<int>(n_heads)) == 1;
}

void analyze_group_queued(const GroupInput& in, const AnalyzeOptions& opt, Progress* progress, H5Output* h5,
                          SummaryQueue& queue, GroupResult& result) {
  const AnalyzePlan plan = make_plan(opt, in.q.n_tokens);
  if (plan.n_tokens == 0) return;
  if (opt.keep.budget_bytes > 0 && !opt.keep.admission.decided)
    throw std::logic_error("analyze: the keep rule's budget is not decided (apply_keep_budget, once per run)");
  if (opt.device == Device::cuda && gpu_analysis_unsupported(opt, plan, in.q.head_dim).empty()) {
    analyze_group_on_gpus(in, opt, plan, progress, h5, queue, result);
    return;
  }
  GateRouters routers;
  setup_gate_routers(in.q, in.k, in.dtype, opt.routers, opt.routing, plan.block_sizes, opt.device, &routers);
  const bool shared = opt.routing.gqa == kernels::GqaMode::shared;
  const std::vector<std::vector<int32_t>> shared_oracle =
      shared ? shared_oracle_pass(in, opt, plan) : std::vector<std::vector<int32_t>>();
  const GroupContext g{in, opt, plan, routers, shared_oracle, shared, static_cast<int>(opt.routers.size()),
                       static_cast<int>(routers.gates.size())};

  const bool keep_arrays = opt.keep_arrays || h5;
  const auto keep_selection = [&](const ConfigKey& key) { return keep_arrays && keeps_whole_selection(opt, key); };
  const int64_t window = attention_window(opt, plan, plan.chunk);
  for (const int64_t head : in.heads) {
    HeadState h = init_head(g, head, window, keep_selection);
    ChunkData ch;
    ch.lse.resize(static_cast<size_t>(plan.chunk));
    for (int bi = 0; bi < plan.n_block_sizes(); ++bi)
      ch.mass.emplace_back(static_cast<size_t>(plan.chunk * plan.n_blocks[bi]));
    ch.top_index.resize(static_cast<size_t>(plan.chunk * plan.n_top));
    for (h.w0 = 0; h.w0 < plan.n_tokens; h.w0 += window) {
      const int64_t wn = std::min(window, plan.n_tokens - h.w0);
      for (std::vector<int32_t>& sel : h.sel) std::fill(sel.begin(), sel.end(), -1);
      for (ch.t0 = h.w0; ch.t0 < h.w0 + wn; ch.t0 += plan.chunk) {
        ch.nq = std::min(plan.chunk, h.w0 + wn - ch.t0);
        dense_pass_chunk(g, h, ch);
        measure_chunk(g, h, ch);
        if (progress) progress->advance();
      }
      output_errors(g, h, wn);
    }
    HeadMeasures m = host_measures(g, h, keep_arrays);
    summarize_head(in, opt, plan, gate_index(opt.routers), m, result, h5);
  }
}

GroupResult analyze_group(const GroupInput& in, const AnalyzeOptions& opt, Progress* progress, H5Output* h5) {
  GroupResult result;
  SummaryQueue queue;
  analyze_group_queued(in, opt, progress, h5, queue, result);
  queue.drain();
  return result;
}

}  // namespace moba::analysis
