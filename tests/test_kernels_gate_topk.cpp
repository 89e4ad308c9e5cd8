// Routing rules of DESIGN.md §3 (kernels/gate_topk.h): one test per rule, each boundary on
// both sides, plus an independent reference selector over random inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/dtype.h"
#include "kernels/block_pool.h"
#include "kernels/gate_topk.h"
#include "test_kernels_util.h"

using namespace moba;
using namespace moba::kernels;
using namespace moba::kernels_test;

namespace {

struct Route {
  int64_t T = 0;
  int top_k = 0;
  std::vector<int32_t> selected;   // [n_q_heads, T, top_k]
  std::vector<float> scores;       // [n_q_heads, T, top_k]
  const int32_t* row(int64_t h, int64_t t) const { return selected.data() + (h * T + t) * top_k; }
  std::vector<int32_t> vec(int64_t h, int64_t t) const { return {row(h, t), row(h, t) + top_k}; }
};

GateTopkParams params(const Tensor3& q, const std::vector<float>& kbar, int64_t n_kv, int64_t B,
                      int top_k, TieRule tie = TieRule::recent, GqaMode gqa = GqaMode::per_head) {
  GateTopkParams p;
  p.q = q.view();
  p.kbar = kbar.data();
  p.n_kv_heads = n_kv;
  p.block_size = B;
  p.top_k = top_k;
  p.tie = tie;
  p.gqa = gqa;
  return p;
}

Route run(GateTopkParams p) {
  Route r;
  r.T = p.q.n_tokens;
  r.top_k = p.top_k;
  r.selected.resize(static_cast<size_t>(p.q.n_heads * r.T * p.top_k));
  r.scores.resize(r.selected.size());
  poison(r.selected);
  poison(r.scores);
  p.selected = r.selected.data();
  p.selected_scores = r.scores.data();
  REQUIRE(gate_topk_can_run(p) == nullptr);
  gate_topk_cpu(p);
  REQUIRE(std::count(r.selected.begin(), r.selected.end(), -12345) == 0);  // fully written
  return r;
}

// One head, head_dim 1, q_t = 1: the gate score of block b is exactly block_scores[b].
Route route_scalar(const std::vector<float>& block_scores, int64_t T, int64_t B, int top_k,
                   TieRule tie = TieRule::recent) {
  REQUIRE(static_cast<int64_t>(block_scores.size()) == block_count(T, B));
  Tensor3 q(1, T, 1);
  std::fill(q.data.begin(), q.data.end(), 1.0f);
  return run(params(q, block_scores, 1, B, top_k, tie));
}

std::vector<int32_t> ids(std::initializer_list<int32_t> v) { return v; }

int count_valid(const Route& r, int64_t h, int64_t t) {
  int n = 0;
  for (int j = 0; j < r.top_k; ++j) n += r.row(h, t)[j] >= 0;
  return n;
}

}  // namespace

TEST_CASE("routing: block b becomes routable exactly at t = (b+1)B", "[kernels][routing]") {
  const int64_t B = GENERATE(1, 3, 4);
  const int64_t T = 6 * B;
  CAPTURE(B);
  std::vector<float> s(static_cast<size_t>(block_count(T, B)), 1.0f);
  const Route r = route_scalar(s, T, B, /*top_k=*/100);  // k large: every routable block is picked
  const int64_t nb = block_count(T, B);
  std::vector<float> tile(static_cast<size_t>(T * nb));
  Tensor3 q(1, T, 1);
  std::fill(q.data.begin(), q.data.end(), 1.0f);
  gate_scores_tile_cpu(params(q, s, 1, B, 100), 0, 0, T, tile.data());
  for (int64_t b = 0; b + 1 < nb; ++b) {
    CAPTURE(b);
    const int64_t before = (b + 1) * B - 1, at = (b + 1) * B;
    // t = (b+1)B - 1: b is the current block (forced), not routable; b+1 not visible.
    CHECK(r.row(0, before)[b] == b);
    CHECK(count_valid(r, 0, before) == b + 1);
    CHECK(std::isinf(tile[static_cast<size_t>(before * nb + b)]));
    // t = (b+1)B: b is routable and chosen; the current block is b+1.
    CHECK(r.row(0, at)[b] == b);
    CHECK(r.row(0, at)[b + 1] == b + 1);
    CHECK(count_valid(r, 0, at) == b + 2);
    CHECK(tile[static_cast<size_t>(at * nb + b)] == 1.0f);
  }
}

TEST_CASE("routing: a routable block with the best score is chosen at (b+1)B, not at (b+1)B-1",
          "[kernels][routing]") {
  // B = 4, k = 2: block 1 scores highest. At t = 7 block 1 is current; the one pick must be
  // block 0. At t = 8 block 1 is routable and wins.
  const Route r = route_scalar({0.0f, 10.0f, -5.0f, -5.0f}, 16, 4, 2);
  CHECK(r.vec(0, 7) == ids({0, 1}));
  CHECK(r.vec(0, 8) == ids({1, 2}));
  CHECK(r.vec(0, 3) == ids({0, -1}));  // t < B: nothing routable
  CHECK(r.vec(0, 4) == ids({0, 1}));
}

TEST_CASE("routing: the current block is always selected, even with the lowest score",
          "[kernels][routing]") {
  const Route r = route_scalar({5.0f, 4.0f, 3.0f, 2.0f, -1e30f}, 20, 4, 3);
  for (int64_t t = 16; t < 20; ++t) CHECK(r.vec(0, t) == ids({0, 1, 4}));
  // And its real score is reported beside it.
  CHECK(r.scores[static_cast<size_t>(19 * 3 + 2)] == -1e30f);
  CHECK(r.scores[static_cast<size_t>(19 * 3 + 0)] == 5.0f);
}

TEST_CASE("routing: top_k counts the current block", "[kernels][routing]") {
  // c = 5 with 5 routable blocks: k = 3 gives 2 picks + current, no padding.
  const Route r = route_scalar({1, 6, 2, 5, 3, 0}, 12, 2, 3);
  CHECK(r.vec(0, 10) == ids({1, 3, 5}));
  CHECK(count_valid(r, 0, 10) == 3);
  // c = 2 with 2 routable blocks: k = 3 takes both, exactly 3 entries.
  CHECK(r.vec(0, 4) == ids({0, 1, 2}));
  // c = 1: one routable, k = 3: two entries and one -1.
  CHECK(r.vec(0, 2) == ids({0, 1, -1}));
}

TEST_CASE("routing: k = 1 selects the current block only", "[kernels][routing]") {
  const Route r = route_scalar({9, 9, 9, 9}, 13, 4, 1);
  for (int64_t t = 0; t < 13; ++t) CHECK(r.vec(0, t) == ids({static_cast<int32_t>(t / 4)}));
}

TEST_CASE("routing: T <= k*B selects every block up to the current one, T = k*B + 1 does not",
          "[kernels][routing]") {
  const int64_t B = GENERATE(1, 4, 5);
  const int k = GENERATE(1, 2, 3);
  CAPTURE(B, k);
  for (int64_t T : {k * B - 1, k * B}) {
    if (T < 1) continue;
    std::vector<float> s(static_cast<size_t>(block_count(T, B)));
    std::iota(s.begin(), s.end(), -3.0f);
    const Route r = route_scalar(s, T, B, k);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t b = 0; b <= t / B; ++b) CHECK(r.row(0, t)[b] == b);  // dense
  }
  const int64_t T = k * B + 1;
  std::vector<float> s(static_cast<size_t>(block_count(T, B)), 1.0f);
  const Route r = route_scalar(s, T, B, k);
  // The last query (t = kB, current block k) has k routable blocks for k - 1 slots.
  CHECK(count_valid(r, 0, T - 1) == k);
  CHECK(r.row(0, T - 1)[k - 1] == k);
  for (int64_t t = 0; t + 1 < T; ++t) CHECK(count_valid(r, 0, t) == t / B + 1);
}

TEST_CASE("routing: exact ties go to the larger index (recent) or the smaller (older)",
          "[kernels][routing]") {
  // c = 5 at t = 10 (B = 2). Scores tie between blocks 1 and 3 for the single pick (k = 2).
  const std::vector<float> s = {0, 7, 2, 7, 1, 0};
  CHECK(route_scalar(s, 12, 2, 2, TieRule::recent).vec(0, 10) == ids({3, 5}));
  CHECK(route_scalar(s, 12, 2, 2, TieRule::older).vec(0, 10) == ids({1, 5}));
  // A tie at the edge of the chosen set (k = 3): block 1 is clearly in, blocks 0, 2, 3 tie
  // for the last slot.
  const std::vector<float> s2 = {5, 9, 5, 5, 1, 0};
  CHECK(route_scalar(s2, 12, 2, 3, TieRule::recent).vec(0, 10) == ids({1, 3, 5}));
  CHECK(route_scalar(s2, 12, 2, 3, TieRule::older).vec(0, 10) == ids({0, 1, 5}));
  // Without a tie both rules agree.
  const std::vector<float> s3 = {5, 9, 5.5f, 5, 1, 0};
  CHECK(route_scalar(s3, 12, 2, 3, TieRule::recent).vec(0, 10) == ids({1, 2, 5}));
  CHECK(route_scalar(s3, 12, 2, 3, TieRule::older).vec(0, 10) == ids({1, 2, 5}));
}

TEST_CASE("routing: exact ties in gate scores computed from q and pooled keys",
          "[kernels][routing]") {
  // Blocks 0 and 2 hold identical keys, so their pooled keys and scores are bit-equal.
  const int64_t B = 3, T = 12, D = 8;
  Tensor3 k = random_tensor(1, T, D, 9);
  for (int64_t t = 0; t < B; ++t)
    std::copy(k.row(0, t), k.row(0, t) + D, k.row(0, 2 * B + t));
  for (int64_t t = B; t < 2 * B; ++t)
    for (int64_t c = 0; c < D; ++c) k.row(0, t)[c] = -100.0f * k.row(0, 0)[c];  // block 1 loses
  const Tensor3 q_base = random_tensor(1, T, D, 10);
  Tensor3 q = q_base;
  std::copy(k.row(0, 0), k.row(0, 0) + D, q.row(0, T - 1));  // q aligned with block 0/2's keys
  std::vector<float> kbar(static_cast<size_t>(block_count(T, B) * D));
  BlockPoolParams pp;
  pp.k = k.view();
  pp.block_size = B;
  pp.mean = kbar.data();
  block_pool_cpu(pp);
  const Route rec = run(params(q, kbar, 1, B, 2, TieRule::recent));
  const Route old = run(params(q, kbar, 1, B, 2, TieRule::older));
  REQUIRE(rec.scores[static_cast<size_t>((T - 1) * 2)] == old.scores[static_cast<size_t>((T - 1) * 2)]);
  CHECK(rec.vec(0, T - 1) == ids({2, 3}));
  CHECK(old.vec(0, T - 1) == ids({0, 3}));
}

TEST_CASE("routing: GQA per-head routes each query head, shared routes on the group sum",
          "[kernels][routing]") {
  // 2 query heads on 1 KV head, head_dim 2, B = 2, T = 8; at t = 6, 7 the current block is 3.
  // head 0 reads channel x, head 1 channel y: per-head picks differ; the sum x + y picks b2.
  const int64_t T = 8, B = 2;
  Tensor3 q(2, T, 2);
  for (int64_t t = 0; t < T; ++t) {
    q.row(0, t)[0] = 1.0f;
    q.row(1, t)[1] = 1.0f;
  }
  const std::vector<float> kbar = {4, 0, /*b1*/ 0, 3, /*b2*/ 2.5f, 2.5f, /*b3*/ 0, 0};
  const Route per = run(params(q, kbar, 1, B, 2, TieRule::recent, GqaMode::per_head));
  const Route sh = run(params(q, kbar, 1, B, 2, TieRule::recent, GqaMode::shared));
  for (int64_t t : {6, 7}) {
    CHECK(per.vec(0, t) == ids({0, 3}));
    CHECK(per.vec(1, t) == ids({1, 3}));
    CHECK(sh.vec(0, t) == ids({2, 3}));
    CHECK(sh.vec(1, t) == ids({2, 3}));
  }
  CHECK(sh.scores[static_cast<size_t>(7 * 2)] == 5.0f);  // the group sum is reported
  CHECK(per.scores[static_cast<size_t>(7 * 2)] == 4.0f);
}

TEST_CASE("routing: pool precision dump vs fp32 changes a near-tie the way the rounding says",
          "[kernels][routing]") {
  // Block 0 keys 1, 1, 1 + 2^-7 (fp32 mean 1.0026; bf16 mean 1.0); block 1 keys 1, 1, 1
  // (mean 1 in both). q = 1, B = 3, k = 2: at t = 6 (c = 2) fp32 prefers block 0; rounded to
  // bf16 the two tie and `recent` takes block 1.
  const int64_t T = 9, B = 3;
  Tensor3 k(1, T, 1);
  std::fill(k.data.begin(), k.data.end(), 1.0f);
  k.data[2] = 1.0f + std::ldexp(1.0f, -7);
  Tensor3 q(1, T, 1);
  std::fill(q.data.begin(), q.data.end(), 1.0f);
  auto route_with = [&](DType pool) {
    std::vector<float> kbar(3);
    BlockPoolParams pp;
    pp.k = k.view();
    pp.block_size = B;
    pp.pool_dtype = pool;
    pp.mean = kbar.data();
    block_pool_cpu(pp);
    return run(params(q, kbar, 1, B, 2)).vec(0, 6);
  };
  CHECK(route_with(DType::f32) == ids({0, 2}));
  CHECK(route_with(DType::bf16) == ids({1, 2}));
}

TEST_CASE("select_blocks_row: NaN ranks last, -inf is still selectable, ascending output",
          "[kernels][routing]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<int32_t> out(4);
  const std::vector<float> s = {nan, -inf, 3, nan, 0};
  CHECK(select_blocks_row(s.data(), 5, 4, TieRule::recent, out.data()) == 4);
  CHECK(out == ids({1, 2, 4, 5}));
  CHECK(select_blocks_row(s.data(), 5, 2, TieRule::recent, out.data()) == 2);
  CHECK(std::vector<int32_t>(out.begin(), out.begin() + 2) == ids({2, 5}));
  CHECK(select_blocks_row(s.data(), 0, 4, TieRule::recent, out.data()) == 1);
  CHECK(out == ids({0, -1, -1, -1}));
  // Only NaNs left for the last slot: the more recent NaN under `recent`.
  const std::vector<float> s2 = {nan, 1, nan};
  CHECK(select_blocks_row(s2.data(), 3, 3, TieRule::recent, out.data()) == 3);
  CHECK(std::vector<int32_t>(out.begin(), out.begin() + 3) == ids({1, 2, 3}));
  CHECK(select_blocks_row(s2.data(), 3, 3, TieRule::older, out.data()) == 3);
  CHECK(std::vector<int32_t>(out.begin(), out.begin() + 3) == ids({0, 1, 3}));
}

// Independent reference: scores with the documented fp32 channel-order accumulation, then
// a full stable sort by (score desc, index desc|asc).
TEST_CASE("routing: gate_topk matches a sort-based reference on random inputs",
          "[kernels][routing]") {
  struct Case { int64_t T, B; int k; int64_t n_q, n_kv, d; GqaMode gqa; TieRule tie; int64_t tile; };
  const Case cases[] = {
      {1, 16, 4, 2, 1, 48, GqaMode::per_head, TieRule::recent, 0},
      {113, 16, 3, 4, 1, 64, GqaMode::per_head, TieRule::recent, 7},
      {113, 1, 8, 4, 2, 48, GqaMode::shared, TieRule::older, 0},
      {200, 32, 2, 2, 2, 128, GqaMode::per_head, TieRule::older, 1},
      {257, 16, 5, 4, 1, 64, GqaMode::shared, TieRule::recent, 64},
      {64, 64, 1, 2, 1, 48, GqaMode::per_head, TieRule::recent, 0},
      {300, 7, 100, 2, 1, 8, GqaMode::per_head, TieRule::recent, 0},  // k > n_blocks
  };
  for (const Case& c : cases) {
    CAPTURE(c.T, c.B, c.k, c.n_q, c.n_kv, c.d, static_cast<int>(c.gqa), static_cast<int>(c.tie), c.tile);
    const Tensor3 q = random_tensor(c.n_q, c.T, c.d, 100 + static_cast<uint32_t>(c.T));
    const Tensor3 k = random_tensor(c.n_kv, c.T, c.d, 200 + static_cast<uint32_t>(c.B));
    const int64_t nb = block_count(c.T, c.B);
    std::vector<float> kbar(static_cast<size_t>(c.n_kv * nb * c.d));
    BlockPoolParams pp;
    pp.k = k.view();
    pp.block_size = c.B;
    pp.pool_dtype = DType::bf16;
    pp.mean = kbar.data();
    block_pool_cpu(pp);
    GateTopkParams gp = params(q, kbar, c.n_kv, c.B, c.k, c.tie, c.gqa);
    gp.query_tile = c.tile;
    const Route r = run(gp);
    const int64_t g = c.n_q / c.n_kv;
    std::vector<float> tile(static_cast<size_t>(c.T * nb));
    for (int64_t h = 0; h < c.n_q; ++h) {
      gate_scores_tile_cpu(gp, h, 0, c.T, tile.data());
      for (int64_t t = 0; t < c.T; ++t) {
        const int64_t cur = t / c.B;
        std::vector<float> s(static_cast<size_t>(cur));
        for (int64_t b = 0; b < cur; ++b) {
          float acc_sum = 0.0f;
          const int64_t h0 = c.gqa == GqaMode::shared ? (h / g) * g : h;
          const int64_t h1 = c.gqa == GqaMode::shared ? h0 + g : h + 1;
          for (int64_t hh = h0; hh < h1; ++hh) {
            float acc = 0.0f;
            for (int64_t ch = 0; ch < c.d; ++ch)
              acc += q.row(hh, t)[ch] * kbar[static_cast<size_t>(((hh / g) * nb + b) * c.d + ch)];
            acc_sum = hh == h0 ? acc : acc_sum + acc;
          }
          s[static_cast<size_t>(b)] = acc_sum;
          REQUIRE(tile[static_cast<size_t>(t * nb + b)] == acc_sum);  // helper: same fp32 values
        }
        for (int64_t b = cur; b < nb; ++b) REQUIRE(std::isinf(tile[static_cast<size_t>(t * nb + b)]));
        std::vector<int32_t> order(static_cast<size_t>(cur));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
          if (s[a] != s[b]) return s[a] > s[b];
          return c.tie == TieRule::recent ? a > b : a < b;
        });
        order.resize(static_cast<size_t>(std::min<int64_t>(c.k - 1, cur)));
        order.push_back(static_cast<int32_t>(cur));
        std::sort(order.begin(), order.end());
        order.resize(static_cast<size_t>(c.k), -1);
        REQUIRE(r.vec(h, t) == order);
      }
    }
  }
}

TEST_CASE("gate_topk: can_run names bad params", "[kernels][routing]") {
  const Tensor3 q = random_tensor(3, 8, 4, 1);
  std::vector<float> kbar(8);
  std::vector<int32_t> sel(3 * 8 * 2);
  GateTopkParams p = params(q, kbar, 1, 4, 2);
  p.selected = sel.data();
  CHECK(gate_topk_can_run(p) == nullptr);
  p.n_kv_heads = 2;  // 3 % 2 != 0
  CHECK(gate_topk_can_run(p) != nullptr);
  p.n_kv_heads = 1;
  p.top_k = 0;
  CHECK(gate_topk_can_run(p) != nullptr);
  p.top_k = 2;
  p.block_size = 0;
  CHECK(gate_topk_can_run(p) != nullptr);
}
