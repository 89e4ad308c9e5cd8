// The block-score routers (quest, sink-window, minference-bs; docs/routing.md) against
// brute-force double-precision versions written here: random inputs, a ragged last block,
// k = 1, k >= n_blocks, both tie rules, per-head and shared GQA; and analyze's selections
// equal route_group's.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "analysis/analyze.h"
#include "analysis/router.h"
#include "test_analysis_util.h"

using namespace moba;
using namespace moba::analysis;

namespace {

using analysis_test::int_tensor;

// Reference selection of one query from double scores of its routable blocks [0, c):
// current block + top-(k-1) by score, ties to the larger (recent) or smaller (older) index.
std::vector<int32_t> brute_select(const std::vector<double>& sc, int64_t c, int k, kernels::TieRule tie) {
  const std::vector<int32_t> order = analysis_test::ref_order(sc, tie);
  return analysis_test::ref_row({order.begin(), order.begin() + std::min<int64_t>(k - 1, c)}, c, k);
}

// Per-block channel min / max and mean (double) of k [1, T, d].
struct RefBlocks {
  std::vector<std::vector<double>> mn, mx, mean;
};
RefBlocks ref_blocks(const Tensor3& k, int64_t B) {
  const int64_t T = k.n_tokens, d = k.head_dim, nb = (T + B - 1) / B;
  RefBlocks r;
  for (int64_t b = 0; b < nb; ++b) {
    std::vector<double> mn(d, 1e300), mx(d, -1e300), mean(d, 0.0);
    const int64_t lo = b * B, hi = std::min(T, lo + B);
    for (int64_t j = lo; j < hi; ++j)
      for (int64_t c = 0; c < d; ++c) {
        const double x = k.view().row(0, j)[c];
        mn[c] = std::min(mn[c], x);
        mx[c] = std::max(mx[c], x);
        mean[c] += x / static_cast<double>(hi - lo);
      }
    r.mn.push_back(mn);
    r.mx.push_back(mx);
    r.mean.push_back(mean);
  }
  return r;
}

// Double scores of query t of head h (or of every head summed when `shared`).
std::vector<double> ref_scores(RouterKind router, const Tensor3& q, const RefBlocks& rb, int64_t B, int64_t h,
                               bool shared, int64_t t) {
  const int64_t c = t / B, d = q.head_dim, T = q.n_tokens;
  std::vector<double> s(static_cast<size_t>(c), 0.0);
  const int64_t h_lo = shared ? 0 : h, h_hi = shared ? q.n_heads : h + 1;
  for (int64_t hh = h_lo; hh < h_hi; ++hh) {
    std::vector<double> qv(d, 0.0);
    if (router == RouterKind::minference_bs) {
      const int64_t lo = c * B, hi = std::min(T, lo + B);
      for (int64_t u = lo; u < hi; ++u)
        for (int64_t ch = 0; ch < d; ++ch) qv[ch] += q.view().row(hh, u)[ch] / static_cast<double>(hi - lo);
    } else {
      for (int64_t ch = 0; ch < d; ++ch) qv[ch] = q.view().row(hh, t)[ch];
    }
    for (int64_t b = 0; b < c; ++b)
      for (int64_t ch = 0; ch < d; ++ch)
        s[b] += router == RouterKind::quest ? std::max(qv[ch] * rb.mn[b][ch], qv[ch] * rb.mx[b][ch])
                                            : qv[ch] * rb.mean[b][ch];
  }
  return s;
}

// StreamingLLM at budget k by its definition: k = 1 the current block only; k - 1 >= c every
// routable block; else sink block 0 plus the k - 2 most recent routable blocks.
std::vector<int32_t> ref_sink_window(int64_t c, int k) {
  std::vector<int32_t> sel;
  if (k - 1 >= c) {
    for (int64_t b = 0; b < c; ++b) sel.push_back(static_cast<int32_t>(b));
  } else if (k >= 2) {
    sel.push_back(0);
    for (int64_t b = c - (k - 2); b < c; ++b) sel.push_back(static_cast<int32_t>(b));
  }
  sel.push_back(static_cast<int32_t>(c));
  sel.resize(static_cast<size_t>(k), -1);
  return sel;
}

std::vector<int32_t> route(RouterKind router, const Tensor3& q, const Tensor3& k, int64_t B, int K,
                           kernels::TieRule tie, kernels::GqaMode gqa) {
  RoutingOptions opt;
  opt.tie = tie;
  opt.gqa = gqa;
  opt.pool_fp32 = true;
  return analysis_test::route_rows(router, q, k, B, K, opt);
}

// Every selected routable block ranks at least as high as every unselected routable block by
// the double scores, within `eps` (fp32 accumulation vs double), and the row is well formed.
void check_near_optimal(const std::vector<int32_t>& sel, const std::vector<double>& sc, int64_t c, int K,
                        double eps) {
  const int64_t n_valid = std::min<int64_t>(K - 1, c) + 1;
  for (int64_t j = 0; j < K; ++j) CHECK((j < n_valid) == (sel[j] >= 0));
  CHECK(sel[n_valid - 1] == c);
  for (int64_t j = 1; j < n_valid; ++j) CHECK(sel[j - 1] < sel[j]);
  std::vector<bool> in(static_cast<size_t>(c), false);
  for (int64_t j = 0; j + 1 < n_valid; ++j) in[sel[j]] = true;
  double worst_in = 1e300, best_out = -1e300;
  for (int64_t b = 0; b < c; ++b) (in[b] ? worst_in : best_out) = in[b] ? std::min(worst_in, sc[b]) : std::max(best_out, sc[b]);
  if (n_valid > 1 && n_valid - 1 < c) CHECK(worst_in >= best_out - eps);
}

}  // namespace

TEST_CASE("quest, sink-window, minference-bs: exact against a double brute force on integer inputs",
          "[analysis][router][routers]") {
  const int64_t T = 45, d = 8, G = 2;  // B = 8: 6 blocks, the last of 5 tokens
  const Tensor3 q = int_tensor(G, T, d, 11);
  const Tensor3 k_int = int_tensor(1, T, d, 12);
  // minference-bs: keys and queries constant within each block so the means are exact too.
  Tensor3 qb = q, kb = k_int;
  for (const int64_t B : {8, 5, 1}) {
    for (int64_t h = 0; h < G; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t ch = 0; ch < d; ++ch)
          qb.data[(h * T + t) * d + ch] = q.data[(h * T + (t / B) * B) * d + ch];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t ch = 0; ch < d; ++ch) kb.data[t * d + ch] = k_int.data[((t / B) * B) * d + ch];
    const int64_t nb = (T + B - 1) / B;
    for (const int K : {1, 2, 3, 4, static_cast<int>(nb), static_cast<int>(nb) + 3})
      for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older})
        for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared})
          for (const RouterKind router : {RouterKind::quest, RouterKind::sink_window, RouterKind::minference_bs}) {
            const Tensor3& qq = router == RouterKind::minference_bs ? qb : q;
            const Tensor3& kk = router == RouterKind::minference_bs ? kb : k_int;
            const RefBlocks rb = ref_blocks(kk, B);
            const std::vector<int32_t> sel = route(router, qq, kk, B, K, tie, gqa);
            int64_t mismatches = 0;
            for (int64_t h = 0; h < G; ++h)
              for (int64_t t = 0; t < T; ++t) {
                const int64_t c = t / B;
                const bool shared = gqa == kernels::GqaMode::shared;
                const std::vector<int32_t> want =
                    router == RouterKind::sink_window
                        ? ref_sink_window(c, K)
                        : brute_select(ref_scores(router, qq, rb, B, h, shared, t), c, K, tie);
                mismatches += std::equal(want.begin(), want.end(), sel.begin() + (h * T + t) * K) ? 0 : 1;
              }
            INFO(router_name(router) << " B=" << B << " k=" << K << " tie " << tie_name(tie) << " gqa "
                                     << gqa_name(gqa));
            CHECK(mismatches == 0);
          }
  }
}

TEST_CASE("quest and minference-bs on random inputs: the selection is the double top-(k-1) up to rounding",
          "[analysis][router][routers]") {
  const int64_t T = 203, d = 16, G = 2, B = 16;  // 13 blocks, the last of 11 tokens
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 21, 1.5f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 22, 1.5f);
  const RefBlocks rb = ref_blocks(k, B);
  for (const RouterKind router : {RouterKind::quest, RouterKind::minference_bs})
    for (const int K : {1, 3, 6, 13, 20})
      for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older}) {
        INFO(router_name(router) << " k=" << K << " tie " << tie_name(tie));
        const std::vector<int32_t> sel = route(router, q, k, B, K, tie, kernels::GqaMode::per_head);
        for (int64_t h = 0; h < G; ++h)
          for (int64_t t = 0; t < T; ++t) {
            const int64_t c = t / B;
            const std::vector<double> sc = ref_scores(router, q, rb, B, h, false, t);
            const int32_t* row = sel.data() + (h * T + t) * K;
            check_near_optimal(std::vector<int32_t>(row, row + K), sc, c, K, 1e-4);
            if (router == RouterKind::minference_bs && t % B != 0)  // one choice per query block
              CHECK(std::equal(row, row + K, sel.data() + (h * T + t - 1) * K));
          }
      }
}

TEST_CASE("block-score routers: the ties are the selector's (equal scores everywhere)", "[analysis][router][routers]") {
  const int64_t T = 50, d = 4, B = 8;
  Tensor3 q(1, T, d), k(1, T, d);
  std::fill(q.data.begin(), q.data.end(), 1.0f);
  std::fill(k.data.begin(), k.data.end(), 0.5f);  // every block's min = max = mean
  for (const RouterKind router : {RouterKind::quest, RouterKind::minference_bs})
    for (const auto tie : {kernels::TieRule::recent, kernels::TieRule::older}) {
      const std::vector<int32_t> sel = route(router, q, k, B, 3, tie, kernels::GqaMode::per_head);
      const int32_t* last = sel.data() + (T - 1) * 3;  // c = 6
      const std::vector<int32_t> want = tie == kernels::TieRule::recent ? std::vector<int32_t>{4, 5, 6}
                                                                        : std::vector<int32_t>{0, 1, 6};
      CHECK(std::vector<int32_t>(last, last + 3) == want);
    }
}

TEST_CASE("analyze and route_group select the same blocks for the block-score routers", "[analysis][router][routers]") {
  const int64_t T = 150, d = 16, G = 2;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 41, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 42, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 43);
  for (const auto gqa : {kernels::GqaMode::per_head, kernels::GqaMode::shared}) {
    AnalyzeOptions opt;
    opt.block_sizes = {16, 7};
    opt.top_ks = {1, 3};
    opt.query_chunk = 64;
    opt.routing.gqa = gqa;
    opt.routers = {RouterKind::minference_bs, RouterKind::moba, RouterKind::oracle, RouterKind::quest,
                   RouterKind::sink_window};
    const GroupResult r = analysis_test::analyze_all(q, k, v, opt);
    for (const RouterKind router : {RouterKind::quest, RouterKind::sink_window, RouterKind::minference_bs})
      for (const int64_t B : {16, 7})
        for (const int K : {1, 3}) {
          std::vector<int32_t> ref(static_cast<size_t>(G * T * K));
          route_group(q.view(), k.view(), v.view(), DType::f32, router, opt.routing, B, K, Device::cpu, ref.data(),
                      nullptr, nullptr);
          for (int64_t h = 0; h < G; ++h) {
            INFO(router_name(router) << " gqa " << gqa_name(gqa) << " B=" << B << " k=" << K << " head " << h);
            const auto& a = analysis_test::find_arrays(r, h, router, B, K);
            CHECK(std::equal(a.selected.begin(), a.selected.end(), ref.begin() + h * T * K));
          }
        }
    // The SNR probe skips them: their rows' SNR columns are NaN, moba's are not.
    for (const SummaryRow& row : r.rows) {
      if (row.key.top_k != 3 || row.key.block_size != 16) continue;
      const double snr = row.get(SummaryColumn::snr_emp);
      if (router_is_gate(row.key.router))
        CHECK(std::isfinite(snr));
      else
        CHECK(std::isnan(snr));
    }
  }
}
