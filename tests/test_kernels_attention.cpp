// MoBA block-sparse attention and the dense streaming pass against an independent
// brute-force masked dense attention in double (kernels/moba_attention.h, dense_pass.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"
#include "kernels/gate_topk.h"
#include "kernels/moba_attention.h"
#include "test_kernels_util.h"

using namespace moba;
using namespace moba::kernels;
using namespace moba::kernels_test;

namespace {

// MoBA routing on (q, k): pool (bf16 dump precision) + gate_topk.
std::vector<int32_t> route(const Tensor3& q, const Tensor3& k, int64_t B, int top_k) {
  const int64_t nb = block_count(q.n_tokens, B);
  std::vector<float> kbar(static_cast<size_t>(k.n_heads * nb * k.head_dim));
  BlockPoolParams pp;
  pp.k = k.view();
  pp.block_size = B;
  pp.pool_dtype = DType::bf16;
  pp.mean = kbar.data();
  REQUIRE(block_pool_can_run(pp) == nullptr);
  block_pool_cpu(pp);
  std::vector<int32_t> sel(static_cast<size_t>(q.n_heads * q.n_tokens * top_k));
  GateTopkParams gp;
  gp.q = q.view();
  gp.kbar = kbar.data();
  gp.n_kv_heads = k.n_heads;
  gp.block_size = B;
  gp.top_k = top_k;
  gp.selected = sel.data();
  REQUIRE(gate_topk_can_run(gp) == nullptr);
  gate_topk_cpu(gp);
  return sel;
}

struct AttnOut {
  std::vector<float> out, lse;
};

// `sel` holds every query's selection [n_q_heads, n_tokens, top_k]; a window [q_begin,
// q_begin + q_count) (-1: to the end) is passed the window's rows of it and gets its rows out.
AttnOut moba_attend(const Tensor3& q, const Tensor3& k, const Tensor3& v,
                    const std::vector<int32_t>& sel, int64_t B, int top_k, int64_t q_begin = 0,
                    int64_t q_count = -1) {
  const int64_t T = q.n_tokens, R = q_count < 0 ? T - q_begin : q_count;
  std::vector<int32_t> win(static_cast<size_t>(q.n_heads * R * top_k));
  for (int64_t h = 0; h < q.n_heads; ++h)
    std::copy(sel.begin() + (h * T + q_begin) * top_k, sel.begin() + (h * T + q_begin + R) * top_k,
              win.begin() + h * R * top_k);
  AttnOut r;
  r.out.resize(static_cast<size_t>(q.n_heads * R * q.head_dim));
  r.lse.resize(static_cast<size_t>(q.n_heads * R));
  poison(r.out);
  poison(r.lse);
  MobaAttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.selected = win.data();
  p.top_k = top_k;
  p.block_size = B;
  p.out = r.out.data();
  p.lse = r.lse.data();
  p.q_begin = q_begin;
  p.q_count = q_count;
  REQUIRE(moba_attention_can_run(p) == nullptr);
  moba_attention_cpu(p);
  return r;
}

// Queries to check against the brute force: all of them for short inputs, else the block
// edges, the first and last rows and a stride.
std::vector<int64_t> probe_queries(int64_t T, int64_t B) {
  std::set<int64_t> s;
  for (int64_t t = 0; t < T; ++t)
    if (T <= 160 || t % 37 == 0 || t % B == 0 || t % B == B - 1 || t + 3 >= T || t < 3) s.insert(t);
  if (T > 160) {  // keep the long cases cheap: at most ~70 probes
    std::vector<int64_t> v(s.begin(), s.end());
    std::vector<int64_t> thin;
    const size_t step = std::max<size_t>(1, v.size() / 64);
    for (size_t i = 0; i < v.size(); i += step) thin.push_back(v[i]);
    thin.push_back(T - 1);
    return thin;
  }
  return {s.begin(), s.end()};
}

void check_against_brute(const Tensor3& q, const Tensor3& k, const Tensor3& v,
                         const std::vector<int32_t>& sel, int64_t B, int top_k,
                         const AttnOut& got) {
  const int64_t T = q.n_tokens, d = q.head_dim, nb = block_count(T, B);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  REQUIRE(std::none_of(got.out.begin(), got.out.end(), [](float x) { return std::isnan(x); }));  // fully written
  REQUIRE(std::none_of(got.lse.begin(), got.lse.end(), [](float x) { return std::isnan(x); }));
  std::vector<double> o;
  double worst = 0.0;
  for (int64_t h = 0; h < q.n_heads; ++h)
    for (int64_t t : probe_queries(T, B)) {
      const int32_t* row = sel.data() + (h * T + t) * top_k;
      std::vector<bool> listed(static_cast<size_t>(nb), false);
      for (int j = 0; j < top_k; ++j)
        if (row[j] >= 0 && row[j] < nb) listed[static_cast<size_t>(row[j])] = true;
      const double lse = brute_attention(q, k, v, h, t, scale,
                                         [&](int64_t j) { return listed[static_cast<size_t>(j / B)]; }, o);
      const double e = rel_err(got.out.data() + (h * T + t) * d, o);
      worst = std::max(worst, e);
      CAPTURE(h, t, e);
      REQUIRE(e <= kAttnRelTol);
      if (std::isinf(lse))  // attends nothing
        REQUIRE(got.lse[static_cast<size_t>(h * T + t)] == -std::numeric_limits<float>::infinity());
      else
        REQUIRE(std::fabs(got.lse[static_cast<size_t>(h * T + t)] - lse) <= kAttnRelTol * std::max(1.0, std::fabs(lse)));
    }
  CAPTURE(worst);
  SUCCEED();
}

}  // namespace

TEST_CASE("moba_attention matches brute-force masked attention over the adversarial sweep",
          "[kernels][attention]") {
  const int64_t dims[] = {48, 64, 128};
  const int64_t ratios[] = {1, 2, 4};
  int case_no = 0;
  for (int64_t B : {1, 16, 32, 64}) {
    std::set<int64_t> Ts = {1, B - 1, B, B + 1, 113, 1023};
    Ts.erase(0);
    for (int64_t T : Ts) {
      const int64_t nb = block_count(T, B);
      for (int variant = 0; variant < 2; ++variant) {
        // The dense variant at T = 1023 only once (B = 64) to keep the ASan run short.
        if (variant == 1 && T >= 1000 && B != 64) continue;
        ++case_no;
        const int64_t d = dims[case_no % 3];
        const int64_t ratio = ratios[(case_no / 3) % 3];
        const int64_t n_kv = T >= 1000 ? 1 : 1 + case_no % 2;
        const int64_t n_q = T >= 1000 ? std::min<int64_t>(ratio, 2) : n_kv * ratio;
        // variant 0: k = 1 or small; variant 1: k >= n_blocks (dense)
        const int top_k = variant == 0 ? 1 + case_no % 3 : static_cast<int>(nb + case_no % 2);
        CAPTURE(B, T, d, n_q, n_kv, top_k);
        const Tensor3 q = random_tensor(n_q, T, d, 1000 + case_no, 1.5f);
        const Tensor3 k = random_tensor(n_kv, T, d, 2000 + case_no);
        const Tensor3 v = random_tensor(n_kv, T, d, 3000 + case_no);
        const std::vector<int32_t> sel = route(q, k, B, top_k);
        check_against_brute(q, k, v, sel, B, top_k, moba_attend(q, k, v, sel, B, top_k));
      }
    }
  }
}

TEST_CASE("moba_attention: union of listed blocks, unsorted, duplicated, -1 anywhere, causal",
          "[kernels][attention]") {
  const int64_t T = 77, B = 8, d = 64, nb = block_count(T, B);
  const int top_k = 5;
  const Tensor3 q = random_tensor(4, T, d, 7, 1.5f);
  const Tensor3 k = random_tensor(2, T, d, 8);
  const Tensor3 v = random_tensor(2, T, d, 9);
  std::mt19937 rng(5);
  std::vector<int32_t> sel(static_cast<size_t>(4 * T * top_k));
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t t = 0; t < T; ++t) {
      int32_t* row = sel.data() + (h * T + t) * top_k;
      for (int j = 0; j < top_k; ++j) row[j] = static_cast<int32_t>(rng() % (nb + 2)) - 1;  // -1 .. nb
      row[rng() % top_k] = static_cast<int32_t>(t / B);  // current block somewhere
    }
  check_against_brute(q, k, v, sel, B, top_k, moba_attend(q, k, v, sel, B, top_k));
}

TEST_CASE("moba_attention: an empty selection gives o = 0 and lse = -inf", "[kernels][attention]") {
  const Tensor3 q = random_tensor(1, 4, 8, 1);
  const Tensor3 k = random_tensor(1, 4, 8, 2);
  std::vector<int32_t> sel = {-1, -1, 0, -1, 1, -1, 3, -1};  // top_k 2, B 2; t=0: nothing
  const AttnOut r = moba_attend(q, k, k, sel, 2, 2);
  CHECK(std::isinf(r.lse[0]));
  CHECK(r.lse[0] < 0);
  for (int c = 0; c < 8; ++c) CHECK(r.out[static_cast<size_t>(c)] == 0.0f);
  CHECK(std::isinf(r.lse[3]));  // block 3 > current block 1: nothing visible
  CHECK(std::isfinite(r.lse[1]));
}

// A query window computes the same rows as a full call, bit for bit: windows from the start,
// mid-block, of one row, at the end, over a ragged last block, GQA, empty and -1 selections.
TEST_CASE("moba_attention: a query window gives exactly the full call's rows", "[kernels][attention]") {
  struct WinCase {
    int64_t T, n_q, n_kv, d, B;
    int top_k;
  };
  const WinCase cases[] = {
      {113, 4, 2, 48, 16, 3},   // ragged last block (113 = 7 x 16 + 1), GQA 2:1
      {300, 2, 1, 64, 64, 2},   // ragged (300 = 4 x 64 + 44), GQA 2:1
      {77, 2, 2, 128, 8, 12},   // k >= n_blocks
      {1, 1, 1, 8, 4, 1},       // T = 1
  };
  for (const WinCase& c : cases) {
    const int64_t nb = block_count(c.T, c.B);
    const Tensor3 q = random_tensor(c.n_q, c.T, c.d, 11 + static_cast<uint32_t>(c.T), 1.5f);
    const Tensor3 k = random_tensor(c.n_kv, c.T, c.d, 12 + static_cast<uint32_t>(c.T));
    const Tensor3 v = random_tensor(c.n_kv, c.T, c.d, 13 + static_cast<uint32_t>(c.T));
    // Random blocks in -1 .. n_blocks (invalid, future, duplicated ones included); some rows
    // attend nothing (o = 0, lse = -inf), the others list their current block.
    std::mt19937 rng(static_cast<uint32_t>(c.T));
    std::vector<int32_t> sel(static_cast<size_t>(c.n_q * c.T * c.top_k));
    for (int64_t h = 0; h < c.n_q; ++h)
      for (int64_t t = 0; t < c.T; ++t) {
        int32_t* row = sel.data() + (h * c.T + t) * c.top_k;
        for (int j = 0; j < c.top_k; ++j) row[j] = static_cast<int32_t>(rng() % (nb + 2)) - 1;
        row[rng() % c.top_k] = rng() % 9 == 0 ? -1 : static_cast<int32_t>(t / c.B);
      }
    const AttnOut full = moba_attend(q, k, v, sel, c.B, c.top_k);
    check_against_brute(q, k, v, sel, c.B, c.top_k, full);
    const int64_t T = c.T, B = c.B;
    const std::pair<int64_t, int64_t> windows[] = {
        {0, -1}, {0, T}, {0, 1}, {T - 1, 1}, {T - 1, -1}, {T, 0}, {T, -1}, {T / 2, 0},
        {B / 2, 2 * B + 3},  // starts and ends mid-block
        {T / 3, -1}, {T / 3 + 1, 1}, {std::max<int64_t>(T - B - 1, 0), -1},  // over the ragged last block
    };
    for (auto [q_begin, q_count] : windows) {
      q_begin = std::min(q_begin, T);  // short sequences: clamped into range
      if (q_count > T - q_begin) q_count = T - q_begin;
      const int64_t R = q_count < 0 ? T - q_begin : q_count;
      CAPTURE(T, B, c.n_q, c.n_kv, c.d, c.top_k, q_begin, q_count);
      const AttnOut w = moba_attend(q, k, v, sel, B, c.top_k, q_begin, q_count);
      REQUIRE(w.out.size() == static_cast<size_t>(c.n_q * R * c.d));
      for (int64_t h = 0; h < c.n_q; ++h)
        for (int64_t i = 0; i < R; ++i) {
          const int64_t t = q_begin + i;
          CAPTURE(h, t);
          REQUIRE(w.lse[static_cast<size_t>(h * R + i)] == full.lse[static_cast<size_t>(h * T + t)]);
          REQUIRE(std::equal(w.out.begin() + (h * R + i) * c.d, w.out.begin() + (h * R + i + 1) * c.d,
                             full.out.begin() + (h * T + t) * c.d));
        }
    }
  }
}

TEST_CASE("moba_attention: can_run names a bad query window", "[kernels][attention]") {
  const Tensor3 q = random_tensor(2, 8, 4, 1);
  std::vector<int32_t> sel(2 * 8);
  std::vector<float> out(2 * 8 * 4);
  MobaAttentionParams p;
  p.q = q.view();
  p.k = q.view();
  p.v = q.view();
  p.selected = sel.data();
  p.top_k = 1;
  p.block_size = 4;
  p.out = out.data();
  CHECK(moba_attention_can_run(p) == nullptr);
  CHECK(moba_attention_rows(p) == 8);
  p.q_begin = 3;
  CHECK(moba_attention_can_run(p) == nullptr);
  CHECK(moba_attention_rows(p) == 5);
  p.q_count = 5;
  CHECK(moba_attention_can_run(p) == nullptr);
  p.q_count = 6;  // past n_tokens
  CHECK(moba_attention_can_run(p) != nullptr);
  p.q_count = -2;
  CHECK(moba_attention_can_run(p) != nullptr);
  p.q_begin = -1;
  p.q_count = 1;
  CHECK(moba_attention_can_run(p) != nullptr);
  p.q_begin = 9;  // past n_tokens, to the end
  p.q_count = -1;
  CHECK(moba_attention_can_run(p) != nullptr);
  p.q_begin = 8;  // an empty window: nothing to compute, no selection needed
  p.selected = nullptr;
  CHECK(moba_attention_can_run(p) == nullptr);
  CHECK(moba_attention_rows(p) == 0);
}

namespace {

struct DenseCase {
  int64_t T, n_q, n_kv, d, q_begin, q_count, q_tile, k_tile;
  std::vector<int64_t> block_sizes;
  int top_n;
};

struct DenseOut {
  std::vector<float> lse, out, top_prob;
  std::vector<int32_t> top_index;
  std::vector<std::vector<float>> mass;
};

DenseOut dense(const Tensor3& q, const Tensor3& k, const Tensor3& v, const DenseCase& c) {
  DenseOut r;
  r.lse.resize(static_cast<size_t>(c.n_q * c.q_count));
  r.out.resize(static_cast<size_t>(c.n_q * c.q_count * c.d));
  r.top_index.resize(static_cast<size_t>(c.n_q * c.q_count * c.top_n));
  r.top_prob.resize(r.top_index.size());
  poison(r.lse);
  poison(r.out);
  poison(r.top_index);
  poison(r.top_prob);
  DensePassParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.query_begin = c.q_begin;
  p.query_count = c.q_count;
  p.query_tile = c.q_tile;
  p.key_tile = c.k_tile;
  p.lse = r.lse.data();
  p.out = r.out.data();
  p.n_block_sizes = static_cast<int>(c.block_sizes.size());
  r.mass.resize(c.block_sizes.size());
  for (size_t i = 0; i < c.block_sizes.size(); ++i) {
    r.mass[i].resize(static_cast<size_t>(c.n_q * c.q_count * block_count(c.T, c.block_sizes[i])));
    poison(r.mass[i]);
    p.block_sizes[i] = c.block_sizes[i];
    p.block_mass[i] = r.mass[i].data();
  }
  p.top_n = c.top_n;
  p.top_index = c.top_n ? r.top_index.data() : nullptr;
  p.top_prob = c.top_n ? r.top_prob.data() : nullptr;
  REQUIRE(dense_pass_can_run(p) == nullptr);
  dense_pass_cpu(p);
  return r;
}

}  // namespace

TEST_CASE("dense_pass matches brute force: lse, output, block masses, top-n", "[kernels][dense]") {
  const DenseCase cases[] = {
      {1, 1, 1, 48, 0, 1, 0, 0, {1, 16}, 10},
      {17, 2, 1, 64, 0, 17, 4, 5, {1, 16, 32}, 10},
      {113, 4, 1, 64, 0, 113, 16, 32, {1, 7, 16, 32, 64}, 10},
      {300, 2, 2, 128, 37, 150, 64, 100, {16, 32, 64, 128}, 5},
      {1023, 2, 1, 48, 900, 123, 0, 0, {16, 64}, 10},
  };
  for (const DenseCase& c : cases) {
    CAPTURE(c.T, c.n_q, c.n_kv, c.d, c.q_begin, c.q_count, c.q_tile, c.k_tile);
    const Tensor3 q = random_tensor(c.n_q, c.T, c.d, 40 + static_cast<uint32_t>(c.T), 2.0f);
    const Tensor3 k = random_tensor(c.n_kv, c.T, c.d, 50 + static_cast<uint32_t>(c.T));
    const Tensor3 v = random_tensor(c.n_kv, c.T, c.d, 60 + static_cast<uint32_t>(c.T));
    const DenseOut r = dense(q, k, v, c);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    const int64_t kv_group = c.n_q / c.n_kv;
    std::vector<double> o;
    for (int64_t h = 0; h < c.n_q; ++h)
      for (int64_t i = 0; i < c.q_count; ++i) {
        const int64_t t = c.q_begin + i, r_idx = h * c.q_count + i;
        CAPTURE(h, t);
        const double lse = brute_attention(q, k, v, h, t, scale, [](int64_t) { return true; }, o);
        REQUIRE(rel_err(r.out.data() + r_idx * c.d, o) <= kAttnRelTol);
        REQUIRE(std::fabs(r.lse[static_cast<size_t>(r_idx)] - lse) <= kAttnRelTol * std::max(1.0, std::fabs(lse)));
        // Exact probabilities of every key, in double.
        std::vector<double> prob(static_cast<size_t>(t + 1));
        for (int64_t j = 0; j <= t; ++j) {
          double s = 0.0;
          for (int64_t ch = 0; ch < c.d; ++ch)
            s += static_cast<double>(q.row(h, t)[ch]) * k.row(h / kv_group, j)[ch];
          prob[static_cast<size_t>(j)] = std::exp(s * scale - lse);
        }
        for (size_t bi = 0; bi < c.block_sizes.size(); ++bi) {
          const int64_t B = c.block_sizes[bi], nb = block_count(c.T, B);
          const float* m = r.mass[bi].data() + r_idx * nb;
          double sum = 0.0;
          for (int64_t b = 0; b < nb; ++b) {
            double want = 0.0;
            for (int64_t j = b * B; j < std::min((b + 1) * B, t + 1); ++j) want += prob[static_cast<size_t>(j)];
            if (b > t / B) REQUIRE(m[b] == 0.0f);
            REQUIRE(std::fabs(m[b] - want) <= 2e-6 + 1e-5 * want);
            sum += m[b];
          }
          REQUIRE(std::fabs(sum - 1.0) <= 1e-5);
        }
        // Top-n: the n largest probabilities, descending, -1 / 0 padded.
        std::vector<double> sorted = prob;
        std::sort(sorted.rbegin(), sorted.rend());
        const int32_t* ti = r.top_index.data() + r_idx * c.top_n;
        const float* tp = r.top_prob.data() + r_idx * c.top_n;
        std::set<int32_t> seen;
        for (int n = 0; n < c.top_n; ++n) {
          if (n > t) {
            REQUIRE(ti[n] == -1);
            REQUIRE(tp[n] == 0.0f);
            continue;
          }
          REQUIRE(ti[n] >= 0);
          REQUIRE(ti[n] <= t);
          REQUIRE(seen.insert(ti[n]).second);
          REQUIRE(std::fabs(tp[n] - sorted[static_cast<size_t>(n)]) <= 2e-6);
          REQUIRE(std::fabs(prob[static_cast<size_t>(ti[n])] - sorted[static_cast<size_t>(n)]) <= 2e-6);
          if (n > 0) REQUIRE(tp[n] <= tp[n - 1]);
        }
      }
  }
}

TEST_CASE("dense_pass: exactly equal probabilities rank the more recent key first", "[kernels][dense]") {
  const int64_t T = 6, d = 4;
  Tensor3 k(1, T, d);
  std::fill(k.data.begin(), k.data.end(), 0.5f);  // every key identical
  const Tensor3 q = random_tensor(1, T, d, 3);
  const DenseCase c{T, 1, 1, d, 0, T, 0, 0, {2}, 3};
  const DenseOut r = dense(q, k, k, c);
  CHECK(std::vector<int32_t>(r.top_index.begin() + 15, r.top_index.end()) == std::vector<int32_t>{5, 4, 3});
  CHECK(std::vector<int32_t>(r.top_index.begin(), r.top_index.begin() + 3) == std::vector<int32_t>{0, -1, -1});
  CHECK(r.mass[0][static_cast<size_t>(5 * 3 + 1)] == Approx(2.0 / 6.0).epsilon(1e-6));
}

TEST_CASE("dense: T <= k*B makes MoBA equal full causal attention, T = k*B + 1 does not",
          "[kernels][attention][dense]") {
  const int64_t B = 16, d = 64;
  const int top_k = 3;
  for (int64_t T : {top_k * B, top_k * B + 1}) {
    CAPTURE(T);
    const Tensor3 q = random_tensor(2, T, d, 70, 3.0f);
    const Tensor3 k = random_tensor(1, T, d, 71);
    const Tensor3 v = random_tensor(1, T, d, 72);
    const std::vector<int32_t> sel = route(q, k, B, top_k);
    const AttnOut sparse = moba_attend(q, k, v, sel, B, top_k);
    const DenseCase c{T, 2, 1, d, 0, T, 0, 0, {}, 0};
    const DenseOut full = dense(q, k, v, c);
    double worst = 0.0;
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> ref(full.out.begin() + (h * T + t) * d, full.out.begin() + (h * T + t + 1) * d);
        worst = std::max(worst, rel_err(sparse.out.data() + (h * T + t) * d, ref));
      }
    if (T == top_k * B)
      CHECK(worst <= kAttnRelTol);
    else
      CHECK(worst > 1e-3);  // the last query dropped a block
  }
}

TEST_CASE("dense_pass: can_run names bad params", "[kernels][dense]") {
  const Tensor3 q = random_tensor(2, 8, 4, 1);
  std::vector<float> lse(16);
  DensePassParams p;
  p.q = q.view();
  p.k = q.view();
  p.query_count = 8;
  p.lse = lse.data();
  CHECK(dense_pass_can_run(p) == nullptr);
  p.query_begin = 1;  // range past n_tokens
  CHECK(dense_pass_can_run(p) != nullptr);
  p.query_begin = 0;
  p.n_block_sizes = 1;  // block size 0 and no buffer
  CHECK(dense_pass_can_run(p) != nullptr);
  p.n_block_sizes = 0;
  std::vector<float> out(64);
  p.out = out.data();  // output without v
  CHECK(dense_pass_can_run(p) != nullptr);
}
