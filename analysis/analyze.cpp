// `moba analyze` as a library (analysis/analyze.h).
#define EIGEN_DONT_PARALLELIZE
#include "analysis/analyze.h"

#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "analysis/metrics.h"
#include "core/errors.h"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"

namespace moba::analysis {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kSubtile = 64;     // queries per parallel work item within a chunk
constexpr int kDenseTopMin = 16;     // dense-pass top list length: max(top_n, this)

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowsMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

// A router with gate scores: its keys and, per block size, pooled keys and gate params.
struct GateRouter {
  RouterKind kind;
  TensorView keys;                         // [1, T, d] routing keys (dump or conv)
  std::vector<std::vector<float>> kbar;    // per block size: [1, n_blocks, d]
  std::vector<kernels::GateTopkParams> select_params, snr_params;  // per block size
};

// Prefix sums of the routing keys at block boundaries, for the SNR model's noise statistics:
// S1(c) = sum_{j < cB} k_j, M(c) = sum_{j < cB} k_j k_j^T (double), advanced block by block.
struct PrefixState {
  int64_t blocks_done = 0;
  Eigen::VectorXd s1;
  Eigen::MatrixXd m;
};
struct Snapshot {
  Eigen::VectorXd s1;
  Eigen::MatrixXd m;
};

void advance_prefix(PrefixState& st, const TensorView& keys, int64_t B, int64_t to_block) {
  const int64_t d = keys.head_dim;
  while (st.blocks_done < to_block) {
    const int64_t j0 = st.blocks_done * B;
    const ConstRowsMap kb(keys.row(0, j0), B, d, Eigen::OuterStride<>(keys.stride_token));
    const Eigen::MatrixXd kd = kb.cast<double>();
    st.s1 += kd.colwise().sum().transpose();
    st.m.noalias() += kd.transpose() * kd;
    ++st.blocks_done;
  }
}

// Per-item accumulators of one (block size, query subtile) work item.
struct ItemAcc {
  std::vector<SnrStats> snr;            // per gate router
  std::vector<int64_t> signal_hits;     // per (config of this B, gate router)
  std::vector<int64_t> planted_hits;    // per (config of this B, router)
};

double nan_if_empty(int64_t n, double v) { return n > 0 ? v : kNaN; }

}  // namespace

void validate_options(const AnalyzeOptions& opt) {
  if (opt.block_sizes.empty()) throw UsageError("--block-sizes: at least one block size is needed");
  if (opt.block_sizes.size() > static_cast<size_t>(kernels::kDensePassMaxBlockSizes))
    throw UsageError("--block-sizes: at most " + std::to_string(kernels::kDensePassMaxBlockSizes) +
                     " block sizes per run (one dense pass serves them all)");
  std::set<int64_t> seen;
  for (const int64_t b : opt.block_sizes) {
    if (b < 1) throw UsageError("--block-sizes: block sizes must be >= 1");
    if (!seen.insert(b).second) throw UsageError("--block-sizes: " + std::to_string(b) + " given twice");
  }
  if (opt.top_ks.empty() == opt.sparsities.empty())
    throw UsageError("give exactly one of --top-k and --sparsity");
  for (const int k : opt.top_ks)
    if (k < 1) throw UsageError("--top-k: values must be >= 1");
  for (const double s : opt.sparsities)
    if (!(s >= 0 && s < 1)) throw UsageError("--sparsity: values must lie in [0, 1)");
  if (opt.routers.empty()) throw UsageError("--routers: at least one router is needed");
  if (opt.top_n < 1) throw UsageError("--top-n must be >= 1");
  if (opt.query_chunk < 1) throw UsageError("query chunk must be >= 1");
}

std::vector<BlockConfig> resolve_block_configs(const AnalyzeOptions& opt, int64_t n_tokens) {
  validate_options(opt);
  std::vector<BlockConfig> out;
  auto add = [&](int64_t B, int k) {
    for (const auto& c : out)
      if (c.block_size == B && c.top_k == k) return;
    out.push_back({B, k, n_tokens > 0 ? 1.0 - static_cast<double>(k) * B / n_tokens : 0.0});
  };
  for (const int64_t B : opt.block_sizes) {
    for (const int k : opt.top_ks) add(B, k);
    for (const double s : opt.sparsities) {
      const double k = std::round((1.0 - s) * static_cast<double>(n_tokens) / static_cast<double>(B));
      add(B, static_cast<int>(std::max(1.0, std::min(k, 1e9))));
    }
  }
  return out;
}

int64_t analyze_chunks_per_head(const AnalyzeOptions& opt, int64_t n_tokens) {
  return (n_tokens + opt.query_chunk - 1) / opt.query_chunk;
}

GroupResult analyze_group(const GroupInput& in, const AnalyzeOptions& opt, Progress* progress, H5Output* h5) {
  const int64_t T = in.q.n_tokens, d = in.q.head_dim;
  const std::vector<BlockConfig> cfgs = resolve_block_configs(opt, T);
  const int nB = static_cast<int>(opt.block_sizes.size());
  const int nR = static_cast<int>(opt.routers.size());
  const int nC = static_cast<int>(cfgs.size());
  const auto& ro = opt.routing;
  GroupResult result;
  if (T == 0) return result;

  std::vector<int64_t> n_blocks(nB);
  for (int ib = 0; ib < nB; ++ib) n_blocks[ib] = kernels::block_count(T, opt.block_sizes[ib]);
  std::vector<int> cfg_block(nC);  // configuration -> block size index
  std::vector<std::vector<int>> block_cfgs(nB);
  for (int ic = 0; ic < nC; ++ic) {
    cfg_block[ic] = static_cast<int>(std::find(opt.block_sizes.begin(), opt.block_sizes.end(), cfgs[ic].block_size) -
                                      opt.block_sizes.begin());
    block_cfgs[cfg_block[ic]].push_back(ic);
  }

  // Gate routers (moba, moba-kconv) and which one each router uses (-1: oracle).
  Tensor3 conv;
  std::vector<GateRouter> gates;
  std::vector<int> router_gate(nR, -1);
  for (int ir = 0; ir < nR; ++ir) {
    const RouterKind kind = opt.routers[ir];
    if (kind == RouterKind::oracle) continue;
    if (kind == RouterKind::moba_kconv && conv.data.empty()) conv = kconv_keys(in.k, ro, opt.device);
    GateRouter g;
    g.kind = kind;
    g.keys = kind == RouterKind::moba_kconv ? conv.view() : in.k;
    for (int ib = 0; ib < nB; ++ib) {
      g.kbar.push_back(pooled_keys(g.keys, opt.block_sizes[ib], in.dtype, ro, opt.device));
      kernels::GateTopkParams gp;
      gp.q = in.q;
      gp.kbar = g.kbar.back().data();
      gp.n_kv_heads = 1;
      gp.block_size = opt.block_sizes[ib];
      gp.top_k = 1;
      gp.tie = ro.tie;
      gp.gqa = ro.gqa;
      g.select_params.push_back(gp);
      gp.gqa = kernels::GqaMode::per_head;  // SNR is a per-head quantity (DESIGN.md §5)
      g.snr_params.push_back(gp);
    }
    router_gate[ir] = static_cast<int>(gates.size());
    gates.push_back(std::move(g));
  }
  const int nG = static_cast<int>(gates.size());
  const bool shared = ro.gqa == kernels::GqaMode::shared;
  const int n_top = std::max(opt.top_n, kDenseTopMin);
  const int64_t C = std::min(opt.query_chunk, T);

  // Under `shared` the oracle, like the routers, makes one choice per KV group: from the
  // group's summed block masses (as route_group does, analysis/router.h). Precomputed per
  // configuration [T, top_k] with a dense pass over the whole group (block masses only);
  // in.q holds every head of the group then.
  std::vector<std::vector<int32_t>> shared_oracle(shared ? nC : 0);
  if (shared) {
    const int64_t G = in.q.n_heads;
    for (int ic = 0; ic < nC; ++ic) shared_oracle[ic].assign(static_cast<size_t>(T * cfgs[ic].top_k), -1);
    std::vector<std::vector<float>> gmass(nB);  // per block size [G, C, n_blocks]
    for (int ib = 0; ib < nB; ++ib) gmass[ib].resize(static_cast<size_t>(G * C * n_blocks[ib]));
    std::vector<float> glse(static_cast<size_t>(G * C));
    std::vector<float> summed;
    for (int64_t t0 = 0; t0 < T; t0 += C) {
      const int64_t nq = std::min(C, T - t0);
      kernels::DensePassParams dp;
      dp.q = in.q;
      dp.k = in.k;
      dp.query_begin = t0;
      dp.query_count = nq;
      dp.lse = glse.data();
      dp.n_block_sizes = nB;
      for (int ib = 0; ib < nB; ++ib) {
        dp.block_sizes[ib] = opt.block_sizes[ib];
        dp.block_mass[ib] = gmass[ib].data();
      }
      run_dense_pass(dp, opt.device);
      for (int ib = 0; ib < nB; ++ib) {
        const int64_t B = opt.block_sizes[ib], nb = n_blocks[ib];
        summed.assign(static_cast<size_t>(nb), 0.0f);
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t t = t0 + i, c = t / B;
          std::fill(summed.begin(), summed.end(), 0.0f);
          for (int64_t hh = 0; hh < G; ++hh)  // head order, fp32: bit-identical to route_group
            for (int64_t b = 0; b < c; ++b) summed[b] += gmass[ib][(hh * nq + i) * nb + b];
          for (const int ic : block_cfgs[ib])
            kernels::select_blocks_row(summed.data(), c, cfgs[ic].top_k, ro.tie,
                                       shared_oracle[ic].data() + t * cfgs[ic].top_k);
        }
      }
    }
  }

  for (const int64_t head : in.heads) {
    const int64_t hl = head - in.q_head_first;
    const TensorView qh = in.q.heads(hl, 1);
    const int32_t* planted = in.planted && !in.planted->empty() ? in.planted->data() + head * T : nullptr;

    // Per (configuration, router) arrays.
    std::vector<PositionArrays> arr(static_cast<size_t>(nC * nR));
    for (int ic = 0; ic < nC; ++ic)
      for (int ir = 0; ir < nR; ++ir) {
        PositionArrays& a = arr[ic * nR + ir];
        a.key = {in.layer, head, cfgs[ic].block_size, cfgs[ic].top_k, opt.routers[ir]};
        a.selected.assign(static_cast<size_t>(T * cfgs[ic].top_k), -1);
        for (auto* v : {&a.coverage, &a.kl, &a.block_recall, &a.token_recall, &a.output_rel_err, &a.output_cosine,
                        &a.sparsity_token, &a.block_density})
          v->assign(static_cast<size_t>(T), kNaNf);
        a.choice.assign(static_cast<size_t>(T), 0);
      }
    std::vector<float> o_full(static_cast<size_t>(T * d));
    // Per configuration: the oracle's coverage R*_t, whether or not `oracle` is a listed router.
    std::vector<std::vector<float>> oracle_cov(static_cast<size_t>(nC), std::vector<float>(static_cast<size_t>(T), kNaNf));
    std::vector<SnrStats> snr(static_cast<size_t>(nG * nB));
    std::vector<int64_t> signal_hits(static_cast<size_t>(nC * std::max(nG, 1)), 0);
    std::vector<int64_t> planted_hits(static_cast<size_t>(nC * nR), 0);
    std::vector<PrefixState> prefix(static_cast<size_t>(nG * nB));
    for (auto& p : prefix) {
      p.s1 = Eigen::VectorXd::Zero(d);
      p.m = Eigen::MatrixXd::Zero(d, d);
    }

    // Chunk buffers.
    std::vector<float> chunk_lse(static_cast<size_t>(C));
    std::vector<std::vector<float>> mass(nB);
    for (int ib = 0; ib < nB; ++ib) mass[ib].resize(static_cast<size_t>(C * n_blocks[ib]));
    std::vector<int32_t> top_index(static_cast<size_t>(C * n_top));

    for (int64_t t0 = 0; t0 < T; t0 += C) {
      const int64_t nq = std::min(C, T - t0);
      kernels::DensePassParams dp;
      dp.q = qh;
      dp.k = in.k;
      dp.v = in.v;
      dp.query_begin = t0;
      dp.query_count = nq;
      dp.lse = chunk_lse.data();
      dp.out = o_full.data() + t0 * d;
      dp.n_block_sizes = nB;
      for (int ib = 0; ib < nB; ++ib) {
        dp.block_sizes[ib] = opt.block_sizes[ib];
        dp.block_mass[ib] = mass[ib].data();
      }
      dp.top_n = n_top;
      dp.top_index = top_index.data();
      run_dense_pass(dp, opt.device);

      // Prefix snapshots S1(c), M(c) for every current block c of the chunk (c >= 2 only).
      std::vector<std::vector<Snapshot>> snaps(static_cast<size_t>(nG * nB));
      std::vector<int64_t> snap_first(nB);
      for (int ib = 0; ib < nB; ++ib) {
        const int64_t B = opt.block_sizes[ib];
        const int64_t c_lo = std::max<int64_t>(2, t0 / B), c_hi = (t0 + nq - 1) / B;
        snap_first[ib] = c_lo;
        for (int g = 0; g < nG; ++g) {
          auto& list = snaps[g * nB + ib];
          for (int64_t c = c_lo; c <= c_hi; ++c) {
            advance_prefix(prefix[g * nB + ib], gates[g].keys, B, c);
            list.push_back({prefix[g * nB + ib].s1, prefix[g * nB + ib].m});
          }
        }
      }

      const int64_t n_sub = (nq + kSubtile - 1) / kSubtile;
      const int64_t n_items = nB * n_sub;
      std::vector<ItemAcc> acc(static_cast<size_t>(n_items));
#pragma omp parallel
      {
        std::vector<float> scores, snr_scores;
        std::vector<int32_t> oracle_sel;
        Eigen::VectorXf key_scores;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < n_items; ++item) {
          const int ib = static_cast<int>(item % nB);
          const int64_t ts = t0 + (item / nB) * kSubtile, nts = std::min(kSubtile, t0 + nq - ts);
          const int64_t B = opt.block_sizes[ib], nb = n_blocks[ib];
          const std::vector<int>& my_cfgs = block_cfgs[ib];
          const int ncb = static_cast<int>(my_cfgs.size());
          ItemAcc& a = acc[item];
          a.snr.assign(static_cast<size_t>(nG), SnrStats());
          a.signal_hits.assign(static_cast<size_t>(ncb * std::max(nG, 1)), 0);
          a.planted_hits.assign(static_cast<size_t>(ncb * nR), 0);
          scores.resize(static_cast<size_t>(nG * nts * nb));
          snr_scores.resize(shared ? static_cast<size_t>(nG * nts * nb) : 0);
          for (int g = 0; g < nG; ++g) {
            kernels::gate_scores_tile_cpu(gates[g].select_params[ib], hl, ts, nts, scores.data() + g * nts * nb);
            if (shared)
              kernels::gate_scores_tile_cpu(gates[g].snr_params[ib], hl, ts, nts, snr_scores.data() + g * nts * nb);
          }
          int max_k = 1;
          for (const int ic : my_cfgs) max_k = std::max(max_k, cfgs[ic].top_k);
          oracle_sel.resize(static_cast<size_t>(max_k));

          for (int64_t i = 0; i < nts; ++i) {
            const int64_t t = ts + i, c = t / B, r = t - t0;  // r: row within the chunk
            const float* mrow = mass[ib].data() + r * nb;
            const int32_t* top = top_index.data() + r * n_top;

            for (int jc = 0; jc < ncb; ++jc) {
              const int ic = my_cfgs[jc];
              const int K = cfgs[ic].top_k;
              if (shared)
                std::copy_n(shared_oracle[ic].data() + t * K, K, oracle_sel.data());
              else
                kernels::select_blocks_row(mrow, c, K, ro.tie, oracle_sel.data());
              oracle_cov[ic][t] = static_cast<float>(coverage(mrow, oracle_sel.data(), K));
              const bool choice = has_choice(t, B, K);
              for (int ir = 0; ir < nR; ++ir) {
                PositionArrays& pa = arr[ic * nR + ir];
                int32_t* sel = pa.selected.data() + t * K;
                if (router_gate[ir] < 0)
                  std::copy(oracle_sel.begin(), oracle_sel.begin() + K, sel);
                else
                  kernels::select_blocks_row(scores.data() + (router_gate[ir] * nts + i) * nb, c, K, ro.tie, sel);
                const double cov = coverage(mrow, sel, K);
                pa.coverage[t] = static_cast<float>(cov);
                pa.kl[t] = static_cast<float>(-std::log(std::max(cov, 1e-300)));
                pa.block_recall[t] = choice ? static_cast<float>(block_recall(sel, oracle_sel.data(), K, c)) : kNaNf;
                pa.token_recall[t] = static_cast<float>(token_recall(top, opt.top_n, sel, K, B));
                pa.sparsity_token[t] =
                    static_cast<float>(1.0 - static_cast<double>(attended_keys(sel, K, B, t, T)) / (t + 1));
                pa.block_density[t] = static_cast<float>(static_cast<double>(selection_count(sel, K)) / (c + 1));
                pa.choice[t] = choice ? 1 : 0;
                if (planted && choice && planted[t] >= 0 && planted[t] / B < c) {
                  const auto pb = static_cast<int32_t>(planted[t] / B);
                  a.planted_hits[jc * nR + ir] += std::binary_search(sel, sel + selection_count(sel, K), pb) ? 1 : 0;
                }
              }
            }

            if (c < 2 || nG == 0) continue;
            // The highest-probability routable key j* (dense top list, else a direct argmax).
            const int64_t n_routable_keys = c * B;
            int64_t j_star = -1;
            for (int n = 0; n < n_top && top[n] >= 0; ++n)
              if (top[n] < n_routable_keys) {
                j_star = top[n];
                break;
              }
            const Eigen::Map<const Eigen::VectorXf> qv(qh.row(0, t), d);
            if (j_star < 0) {
              const ConstRowsMap kr(in.k.row(0, 0), n_routable_keys, d, Eigen::OuterStride<>(in.k.stride_token));
              key_scores.noalias() = kr * qv;
              float best = -std::numeric_limits<float>::infinity();
              for (int64_t j = 0; j < n_routable_keys; ++j)
                if (key_scores[j] >= best) {
                  best = key_scores[j];
                  j_star = j;
                }
            }
            const int64_t b_star = j_star / B;
            const Eigen::VectorXd qd = qv.cast<double>();
            for (int g = 0; g < nG; ++g) {
              const TensorView& keys = gates[g].keys;
              SnrQuerySums sums;
              for (int64_t j = b_star * B; j < (b_star + 1) * B; ++j) {
                const double s = Eigen::Map<const Eigen::VectorXf>(keys.row(0, j), d).cast<double>().dot(qd);
                sums.sum_signal += s;
                sums.sumsq_signal += s * s;
                if (j == j_star) sums.s_top = s;
              }
              const Snapshot& sn = snaps[g * nB + ib][c - snap_first[ib]];
              sums.sum_routable = sn.s1.dot(qd);
              sums.sumsq_routable = qd.dot(sn.m * qd);
              const float* srow = (shared ? snr_scores : scores).data() + (g * nts + i) * nb;
              const int rank = snr_add_query(a.snr[g], srow, c, b_star, ro.tie, sums, B);
              for (int jc = 0; jc < ncb; ++jc) {
                const int K = cfgs[my_cfgs[jc]].top_k;
                if (has_choice(t, B, K) && rank <= K - 1) ++a.signal_hits[jc * nG + g];
              }
            }
          }
        }
      }
      // Merge in item order: deterministic whatever the thread count.
      for (int64_t item = 0; item < n_items; ++item) {
        const int ib = static_cast<int>(item % nB);
        const ItemAcc& a = acc[item];
        for (int g = 0; g < nG; ++g) snr[g * nB + ib].merge(a.snr[g]);
        for (size_t jc = 0; jc < block_cfgs[ib].size(); ++jc) {
          const int ic = block_cfgs[ib][jc];
          for (int g = 0; g < nG; ++g) signal_hits[ic * nG + g] += a.signal_hits[jc * nG + g];
          for (int ir = 0; ir < nR; ++ir) planted_hits[ic * nR + ir] += a.planted_hits[jc * nR + ir];
        }
      }
      if (progress) progress->advance();
    }

    // MoBA outputs on each router's selection, against o_full.
    std::vector<float> o_moba(static_cast<size_t>(T * d));
    for (int ic = 0; ic < nC; ++ic)
      for (int ir = 0; ir < nR; ++ir) {
        PositionArrays& pa = arr[ic * nR + ir];
        kernels::MobaAttentionParams ap;
        ap.q = qh;
        ap.k = opt.routers[ir] == RouterKind::moba_kconv && ro.kconv_both ? conv.view() : in.k;
        ap.v = in.v;
        ap.selected = pa.selected.data();
        ap.top_k = cfgs[ic].top_k;
        ap.block_size = cfgs[ic].block_size;
        ap.out = o_moba.data();
        run_moba_attention(ap, opt.device);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
          double rel, cosine;
          output_error(o_moba.data() + t * d, o_full.data() + t * d, d, &rel, &cosine);
          pa.output_rel_err[t] = static_cast<float>(rel);
          pa.output_cosine[t] = static_cast<float>(cosine);
        }
      }

    // Summaries.
    const std::vector<int64_t> edges = bucket_edges(T, opt.n_buckets, opt.bucket_width);
    const int64_t trailing = opt.trailing > 0 ? std::min(opt.trailing, T) : (T + 15) / 16;
    const std::vector<uint8_t> all(static_cast<size_t>(T), 1);
    const double snr_synth_factor = in.synth ? synth_delta_mu_eff(*in.synth) : kNaN;
    for (int ic = 0; ic < nC; ++ic) {
      const BlockConfig& cf = cfgs[ic];
      const int ib = cfg_block[ic];
      const int64_t B = cf.block_size;
      const int K = cf.top_k;
      // Queries by number of routable blocks, for the retrieval predictions.
      std::vector<int64_t> signal_counts(static_cast<size_t>(n_blocks[ib] + 1), 0), planted_counts = signal_counts;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t c = t / B;
        if (c >= 2 && has_choice(t, B, K)) ++signal_counts[c];
        if (planted && has_choice(t, B, K) && planted[t] >= 0 && planted[t] / B < c) ++planted_counts[c];
      }
      int64_t n_signal = 0, n_planted = 0;
      for (const int64_t x : signal_counts) n_signal += x;
      for (const int64_t x : planted_counts) n_planted += x;
      const double snr_synth = in.synth ? snr_synth_factor * std::sqrt(static_cast<double>(d) / (2.0 * B)) : kNaN;

      for (int ir = 0; ir < nR; ++ir) {
        const PositionArrays& pa = arr[ic * nR + ir];
        const int g = router_gate[ir];
        SummaryRow row;
        row.key = pa.key;
        row.scope = Scope::head;
        using Col = SummaryColumn;
        auto put = [&](Col c, double v) { row.set(c, v); };
        const Stats cov = summarize(pa.coverage, pa.choice, 0, T);
        const Stats ocov = summarize(oracle_cov[ic], pa.choice, 0, T);
        const Stats kl = summarize(pa.kl, pa.choice, 0, T);
        const Stats rec = summarize(pa.block_recall, pa.choice, 0, T);
        const Stats tok = summarize(pa.token_recall, pa.choice, 0, T);
        const Stats err = summarize(pa.output_rel_err, pa.choice, 0, T);
        const Stats cosv = summarize(pa.output_cosine, pa.choice, 0, T);
        const Stats sp = summarize(pa.sparsity_token, pa.choice, 0, T);
        const Stats dens = summarize(pa.block_density, pa.choice, 0, T);
        const Stats cov_all = summarize(pa.coverage, all, 0, T);
        const int64_t tr0 = T - trailing;
        const Stats cov_tr = summarize(pa.coverage, pa.choice, tr0, T);
        put(Col::kv_head, static_cast<double>(in.kv_head));
        put(Col::n_tokens, static_cast<double>(T));
        put(Col::n_blocks, static_cast<double>(n_blocks[ib]));
        put(Col::sparsity_nominal, cf.nominal_sparsity);
        put(Col::n_queries, static_cast<double>(T));
        put(Col::n_choice, static_cast<double>(cov.n));
        put(Col::sparsity_mean, sp.mean);
        put(Col::sparsity_p50, sp.p50);
        put(Col::block_density_mean, dens.mean);
        put(Col::coverage_mean, cov.mean);
        put(Col::coverage_p5, cov.p5);
        put(Col::coverage_p50, cov.p50);
        put(Col::oracle_coverage_mean, ocov.mean);
        put(Col::kl_mean, kl.mean);
        put(Col::kl_p50, kl.p50);
        put(Col::kl_p95, kl.p95);
        put(Col::block_recall_mean, rec.mean);
        put(Col::block_recall_p5, rec.p5);
        put(Col::block_recall_p50, rec.p50);
        put(Col::token_recall_mean, tok.mean);
        put(Col::token_recall_p5, tok.p5);
        put(Col::token_recall_p50, tok.p50);
        put(Col::output_rel_err_mean, err.mean);
        put(Col::output_rel_err_p50, err.p50);
        put(Col::output_rel_err_p95, err.p95);
        put(Col::output_cosine_mean, cosv.mean);
        put(Col::output_cosine_p5, cosv.p5);
        put(Col::n_choice_trail, static_cast<double>(cov_tr.n));
        put(Col::coverage_trail_mean, cov_tr.mean);
        put(Col::kl_trail_mean, summarize(pa.kl, pa.choice, tr0, T).mean);
        put(Col::block_recall_trail_mean, summarize(pa.block_recall, pa.choice, tr0, T).mean);
        put(Col::token_recall_trail_mean, summarize(pa.token_recall, pa.choice, tr0, T).mean);
        put(Col::output_rel_err_trail_mean, summarize(pa.output_rel_err, pa.choice, tr0, T).mean);
        put(Col::coverage_all_mean, cov_all.mean);
        SnrSummary s{};
        const bool have_snr = g >= 0;
        if (have_snr) s = summarize_snr(snr[g * nB + ib], B, d);
        for (const auto& info : summary_columns())
          if (info.agg == SummaryAgg::pooled_snr) put(info.column, have_snr ? snr_column_value(s, info.column) : kNaN);
        put(Col::signal_queries, static_cast<double>(n_signal));
        put(Col::signal_recall,
            have_snr ? nan_if_empty(n_signal, static_cast<double>(signal_hits[ic * nG + g]) / std::max<int64_t>(n_signal, 1))
                     : kNaN);
        put(Col::signal_recall_pred, have_snr ? mean_retrieval_probability(s.snr_emp, signal_counts, K) : kNaN);
        put(Col::snr_synth, snr_synth);
        put(Col::planted_queries, static_cast<double>(n_planted));
        put(Col::planted_recall, nan_if_empty(n_planted, static_cast<double>(planted_hits[ic * nR + ir]) / std::max<int64_t>(n_planted, 1)));
        const double pred_snr = in.synth ? snr_synth : s.snr_emp;
        put(Col::planted_recall_pred,
            n_planted > 0 && (have_snr || in.synth) && opt.routers[ir] != RouterKind::oracle
                ? mean_retrieval_probability(pred_snr, planted_counts, K)
                : kNaN);
        for (size_t e = 0; e + 1 < edges.size(); ++e) {
          BucketRow br;
          br.key = pa.key;
          br.t_begin = edges[e];
          br.t_end = edges[e + 1];
          const Stats bc = summarize(pa.coverage, pa.choice, br.t_begin, br.t_end);
          br.n_choice = bc.n;
          br.coverage = bc.mean;
          br.kl = summarize(pa.kl, pa.choice, br.t_begin, br.t_end).mean;
          br.block_recall = summarize(pa.block_recall, pa.choice, br.t_begin, br.t_end).mean;
          br.token_recall = summarize(pa.token_recall, pa.choice, br.t_begin, br.t_end).mean;
          br.output_rel_err = summarize(pa.output_rel_err, pa.choice, br.t_begin, br.t_end).mean;
          result.buckets.push_back(br);
        }

        if (h5) write_configuration(*h5, pa, row, T);
        result.rows.push_back(std::move(row));
      }
    }
    for (int g = 0; g < nG; ++g)
      for (int ib = 0; ib < nB; ++ib) {
        result.snr.push_back({{in.layer, head, opt.block_sizes[ib], 0, gates[g].kind}, snr[g * nB + ib]});
        if (h5) write_snr_hist(*h5, result.snr.back());
      }
    if (opt.keep_arrays)
      for (auto& a : arr) result.arrays.push_back(std::move(a));
  }
  return result;
}

DumpAnalysis analyze_dump(DumpReader& reader, const std::vector<int>& layers_in, const std::vector<int64_t>& heads_in,
                          const AnalyzeOptions& opt, bool quiet, H5Output* h5,
                          const std::function<void(const DumpAnalysis&, int layer)>& layer_done) {
  validate_options(opt);
  const DumpInfo& info = reader.info();
  std::vector<int> layers = layers_in;
  if (layers.empty())
    for (const LayerInfo& l : info.layers) layers.push_back(l.index);
  for (size_t i = 0; i < layers.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (layers[i] == layers[j]) throw UsageError("--layers: layer " + std::to_string(layers[i]) + " given twice");
  for (size_t i = 0; i < heads_in.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (heads_in[i] == heads_in[j]) throw UsageError("--heads: head " + std::to_string(heads_in[i]) + " given twice");
  for (const int L : layers) {
    bool found = false;
    for (const LayerInfo& l : info.layers) found = found || l.index == L;
    if (!found) throw UsageError("--layers: the dump " + info.path + " has no layer " + std::to_string(L));
  }
  DumpAnalysis out;
  SynthParams synth;
  if (info.attributes.count("synth_version") && !info.layers.empty()) {
    SynthParams shape;
    const LayerInfo& l0 = info.layers.front();
    shape.n_tokens = l0.n_tokens;
    shape.n_layers = static_cast<int>(info.layers.size());
    shape.n_q_heads = l0.n_q_heads;
    shape.n_kv_heads = l0.n_kv_heads;
    shape.head_dim = l0.head_dim;
    shape.dtype = l0.dtype;
    out.synth = synth_params_from_attributes(info.attributes, shape, &synth);
  }

  int64_t total = 0;
  for (const int L : layers) {
    const LayerInfo& l = info.layer(L);
    const int64_t n_heads = heads_in.empty() ? l.n_q_heads : static_cast<int64_t>(heads_in.size());
    total += n_heads * analyze_chunks_per_head(opt, l.n_tokens);
  }
  Progress progress("analyze " + info.path, total, quiet);

  for (const int L : layers) {
    const LayerInfo& l = info.layer(L);
    std::vector<int64_t> heads = heads_in;
    if (heads.empty())
      for (int64_t h = 0; h < l.n_q_heads; ++h) heads.push_back(h);
    for (const int64_t h : heads)
      if (h < 0 || h >= l.n_q_heads)
        throw UsageError("--heads: layer " + std::to_string(L) + " has query heads 0.." + std::to_string(l.n_q_heads - 1) +
                         ", not " + std::to_string(h));
    out.head_dim = l.head_dim;
    const int64_t group = l.n_q_heads / l.n_kv_heads;
    const std::vector<int32_t> planted = l.has_planted ? reader.read_planted(L) : std::vector<int32_t>();
    for (int64_t g = 0; g < l.n_kv_heads; ++g) {
      GroupInput in;
      for (const int64_t h : heads)
        if (h / group == g) in.heads.push_back(h);
      if (in.heads.empty()) continue;
      std::sort(in.heads.begin(), in.heads.end());
      // Only the query heads needed: all of the group under `shared`, else the analysed span.
      const bool shared = opt.routing.gqa == kernels::GqaMode::shared;
      const int64_t q_first = shared ? g * group : in.heads.front();
      const int64_t q_count = shared ? group : in.heads.back() - in.heads.front() + 1;
      const Tensor3 q = reader.read(L, TensorKind::q, q_first, q_count);
      const Tensor3 k = reader.read(L, TensorKind::k, g, 1);
      const Tensor3 v = reader.read(L, TensorKind::v, g, 1);
      in.layer = L;
      in.kv_head = g;
      in.q = q.view();
      in.q_head_first = q_first;
      in.k = k.view();
      in.v = v.view();
      in.dtype = l.dtype;
      in.planted = planted.empty() ? nullptr : &planted;
      in.synth = out.synth ? &synth : nullptr;
      GroupResult r = analyze_group(in, opt, &progress, h5);
      for (auto& x : r.rows) out.head_rows.push_back(std::move(x));
      for (auto& x : r.buckets) out.buckets.push_back(std::move(x));
      for (auto& x : r.snr) out.snr.push_back(std::move(x));
    }
    std::stable_sort(out.head_rows.begin(), out.head_rows.end(), [](const SummaryRow& a, const SummaryRow& b) {
      return std::tie(a.key.layer, a.key.head) < std::tie(b.key.layer, b.key.head);
    });
    // Layer and overall rows from every finished layer.
    out.layer_rows = aggregate_rows(out.head_rows, out.snr, out.head_dim, true);
    out.overall_rows = aggregate_rows(out.head_rows, out.snr, out.head_dim, false);
    if (layer_done) layer_done(out, L);
  }
  progress.finish();
  return out;
}

}  // namespace moba::analysis
