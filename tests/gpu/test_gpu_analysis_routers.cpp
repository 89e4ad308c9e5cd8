// The GPU-resident analysis' routers (analysis/gpu/analyze_gpu.h) against the host analysis,
// the reference (analysis/analyze.cpp, analysis/router.h), in process: analyze_group runs the
// same seeded KV group on the CPU and on CUDA, and the per-position selections are compared
// row by row, the summary rows with compare_summary.py's tolerance classes. Each case prints
// its parameters on failure.
//
// Contract checked here:
// - quest, minference-bs, sink-window: their score rows are the CPU's bits on the device
//   (fp32, multiply then add in channel order), so every selection row is identical;
// - moba-threshold: the gate scores are the CPU's bits, the softmax masses are summed in the
//   CPU's order in double; only exp's last bit may differ, so rows are identical unless a
//   cumulative mass lies within ~1e-15 of tau (none on these seeded inputs);
// - nsa-shared: every head's gate scores are the CPU's bits, each head's softmax is summed in
//   the CPU's order in double, the heads in order, rounded once: rows are identical unless
//   exp's last bit moves a summed probability across an fp32 rounding boundary next to a
//   near-tie (none on these seeded inputs); every head of the group selects the same row;
// - oracle-topp: ranked and weighed by the dense pass's block masses, which differ between
//   the backends by ~1e-6 (bf16 / f16 dumps): at most 1% of rows may differ;
// - the realised budget selected_blocks_mean and every selection-class mean agree within
//   1e-4 + 2/n (16-bit dumps) or 1e-2 + 2/n (f32), n the queries the mean is over;
// - the SNR columns are NaN for every router but the gates (moba, moba-kconv), as on the CPU;
// - queries without a choice (t < k B) under a fixed-budget router: output error exactly 0 and
//   cosine exactly 1 on the device (not attended), within 1e-5 of that on the CPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/analyze.h"
#include "tests/test_analysis_util.h"
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/metrics.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "kernels/cuda/tuning.h"

using namespace moba;
using namespace moba::analysis;
using moba::analysis_test::random_rounded;

namespace {

struct RouterCase {
  int64_t n_tokens = 0, n_q_heads = 1, head_dim = 64;
  std::vector<int64_t> heads;  // analysed heads of the group (empty: all)
  std::vector<int64_t> block_sizes;
  std::vector<int> top_ks;
  DType dtype = DType::bf16;
  kernels::TieRule tie = kernels::TieRule::recent;
  double tau = 0.9;
  bool pool_fp32 = false;
  float q_scale = 1.0f;  // larger: sharper softmax rows (masses far from uniform)
  uint32_t seed = 1;
  std::string str() const {
    std::ostringstream o;
    o << "T=" << n_tokens << " Hq=" << n_q_heads << " d=" << head_dim << " B=";
    for (const int64_t b : block_sizes) o << b << ",";
    o << " k=";
    for (const int k : top_ks) o << k << ",";
    o << " " << dtype_name(dtype) << (tie == kernels::TieRule::older ? " tie=older" : "") << " tau=" << tau
      << (pool_fp32 ? " pool=fp32" : "") << " q_scale=" << q_scale << " seed=" << seed;
    return o.str();
  }
};

using Key = std::tuple<int64_t, int64_t, int, RouterKind>;  // head, B, k, router

struct Run {
  std::map<Key, const PositionArrays*> arrays;
  std::map<Key, const SummaryRow*> rows;
  GroupResult result;
};

void index_run(Run& r) {
  for (const PositionArrays& a : r.result.arrays)
    r.arrays[{a.key.head, a.key.block_size, a.key.top_k, a.key.router}] = &a;
  for (const SummaryRow& row : r.result.rows)
    r.rows[{row.key.head, row.key.block_size, row.key.top_k, row.key.router}] = &row;
}

// Runs the case on both devices and compares. `max_row_diff` per router: the share of
// selection rows (head, t) that may differ.
void check_case(const RouterCase& c, const std::vector<RouterKind>& routers) {
  INFO(c.str());
  REQUIRE(kernels::cuda_device_count() > 0);
  std::mt19937 rng(c.seed);
  const float s = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const Tensor3 q = random_rounded(c.n_q_heads, c.n_tokens, c.head_dim, c.dtype, rng, c.q_scale);
  const Tensor3 k = random_rounded(1, c.n_tokens, c.head_dim, c.dtype, rng, 1.0f);
  const Tensor3 v = random_rounded(1, c.n_tokens, c.head_dim, c.dtype, rng, s);
  GroupInput in;
  in.q = q.view();
  in.k = k.view();
  in.v = v.view();
  in.dtype = c.dtype;
  in.heads = c.heads;
  if (in.heads.empty())
    for (int64_t h = 0; h < c.n_q_heads; ++h) in.heads.push_back(h);
  AnalyzeOptions opt;
  opt.block_sizes = c.block_sizes;
  opt.top_ks = c.top_ks;
  opt.routers = routers;
  opt.routing.tie = c.tie;
  opt.routing.tau = c.tau;
  opt.routing.pool_fp32 = c.pool_fp32;
  opt.keep_arrays = true;
  opt.gpus = 1;
  const std::string why = gpu_analysis_unsupported(opt, make_plan(opt, c.n_tokens), c.head_dim);
  INFO("gpu_analysis_unsupported: " << why);
  REQUIRE(why.empty());

  Run cpu, gpu;
  opt.device = Device::cpu;
  cpu.result = analyze_group(in, opt, nullptr, nullptr);
  opt.device = Device::cuda;
  gpu.result = analyze_group(in, opt, nullptr, nullptr);
  index_run(cpu);
  index_run(gpu);
  REQUIRE(cpu.arrays.size() == gpu.arrays.size());
  REQUIRE(cpu.rows.size() == gpu.rows.size());
  REQUIRE(!cpu.arrays.empty());

  const double abs_tol = c.dtype == DType::f32 ? 1e-2 : 1e-4;
  const int64_t T = c.n_tokens;
  for (const auto& [key, a] : cpu.arrays) {
    const auto [head, B, K, router] = key;
    INFO("head " << head << " B=" << B << " k=" << K << " " << router_name(router));
    REQUIRE(gpu.arrays.count(key) == 1);
    const PositionArrays* b = gpu.arrays.at(key);
    REQUIRE(a->selected.size() == static_cast<size_t>(T * K));
    REQUIRE(b->selected.size() == a->selected.size());
    int64_t differ = 0, first = -1;
    for (int64_t t = 0; t < T; ++t) {
      const bool same = std::equal(a->selected.begin() + t * K, a->selected.begin() + (t + 1) * K,
                                   b->selected.begin() + t * K);
      if (!same && first < 0) first = t;
      differ += same ? 0 : 1;
    }
    std::ostringstream where;
    if (first >= 0) {
      where << "first differing row t=" << first << ": cpu";
      for (int x = 0; x < K; ++x) where << " " << a->selected[first * K + x];
      where << " / cuda";
      for (int x = 0; x < K; ++x) where << " " << b->selected[first * K + x];
    }
    INFO(differ << " of " << T << " rows differ; " << where.str());
    if (router == RouterKind::oracle_topp || router == RouterKind::oracle || c.dtype == DType::f32)
      CHECK(differ <= T / 100);  // masses of two dense passes (or bf16-rounded f32 operands)
    else
      CHECK(differ == 0);  // the CPU's score bits on the device
    if (router == RouterKind::nsa_shared)  // one row per KV group: every head selects the same
      CHECK(b->selected == gpu.arrays.at({in.heads.front(), B, K, router})->selected);

    // Queries without a choice at budget k (t < k B, analysis/metrics.h has_choice): a
    // fixed-budget router selects every causal block, so its output is the full attention's.
    // The device does not attend them (MobaAttentionBand::first_query) and writes error 0 and
    // cosine 1; the CPU attends them and writes its rounding.
    if (!router_is_variable_budget(router)) {
      REQUIRE(a->output_rel_err.size() == static_cast<size_t>(T));
      REQUIRE(a->output_cosine.size() == static_cast<size_t>(T));
      REQUIRE(b->output_rel_err.size() == static_cast<size_t>(T));
      REQUIRE(b->output_cosine.size() == static_cast<size_t>(T));
      int64_t bad = 0, first_bad = -1;
      for (int64_t t = 0; t < std::min<int64_t>(T, int64_t{K} * B); ++t) {
        const bool ok = b->output_rel_err[t] == 0.0f && b->output_cosine[t] == 1.0f &&
                        std::fabs(a->output_rel_err[t]) <= 1e-5f && std::fabs(a->output_cosine[t] - 1.0f) <= 1e-5f;
        if (!ok && first_bad < 0) first_bad = t;
        bad += ok ? 0 : 1;
      }
      INFO(bad << " rows without a choice off (0, 1); first t=" << first_bad
                << (first_bad >= 0 ? ": cuda " + std::to_string(b->output_rel_err[first_bad]) + " / " +
                                         std::to_string(b->output_cosine[first_bad]) + ", cpu " +
                                         std::to_string(a->output_rel_err[first_bad])
                                   : std::string()));
      CHECK(bad == 0);
    }

    const SummaryRow* ra = cpu.rows.at(key);
    const SummaryRow* rb = gpu.rows.at(key);
    const double n = ra->get(SummaryColumn::n_choice);
    CHECK(rb->get(SummaryColumn::n_choice) == n);
    for (const SummaryColumn col : {SummaryColumn::selected_mean, SummaryColumn::coverage_mean,
                                    SummaryColumn::block_recall_mean, SummaryColumn::token_recall_mean,
                                    SummaryColumn::sparsity_mean, SummaryColumn::block_density_mean,
                                    SummaryColumn::kl_mean, SummaryColumn::coverage_all_mean}) {
      const double x = ra->get(col), y = rb->get(col);
      INFO("summary column " << static_cast<int>(col) << ": cpu " << x << " cuda " << y);
      CHECK(std::isnan(x) == std::isnan(y));
      if (!std::isnan(x) && !std::isnan(y)) CHECK(std::fabs(x - y) <= abs_tol + (n >= 1 ? 2.0 / n : 0.0));
    }
    // The realised budget: k on fixed-budget rows with a choice; the variable ones at most k.
    if (n > 0 && !router_is_variable_budget(router)) CHECK(rb->get(SummaryColumn::selected_mean) == K);
    if (n > 0 && router_is_variable_budget(router)) CHECK(rb->get(SummaryColumn::selected_mean) <= K);
    // SNR: the gates only, on both devices.
    const bool gate = router_is_gate(router);
    CHECK(std::isnan(ra->get(SummaryColumn::snr_emp)) == std::isnan(rb->get(SummaryColumn::snr_emp)));
    if (!gate) CHECK(std::isnan(rb->get(SummaryColumn::snr_emp)));
    const double qa = ra->get(SummaryColumn::snr_queries), qb = rb->get(SummaryColumn::snr_queries);
    CHECK((qa == qb || (std::isnan(qa) && std::isnan(qb))));
  }
}

const std::vector<RouterKind> kAllDevice = {RouterKind::moba,           RouterKind::oracle,     RouterKind::quest,
                                            RouterKind::minference_bs,  RouterKind::sink_window,
                                            RouterKind::moba_threshold, RouterKind::oracle_topp,
                                            RouterKind::nsa_shared};

}  // namespace

TEST_CASE("gpu analysis: quest matches the host analysis", "[gpu][analysis][router]") {
  for (const int64_t d : {48, 64, 128}) {
    RouterCase c;
    c.n_tokens = 1000, c.head_dim = d, c.block_sizes = {16, 48}, c.top_ks = {1, 2, 5}, c.seed = 11 + d;
    check_case(c, {RouterKind::quest, RouterKind::oracle});
  }
  RouterCase f32;
  f32.n_tokens = 777, f32.head_dim = 64, f32.block_sizes = {32}, f32.top_ks = {3, 64}, f32.dtype = DType::f32;
  check_case(f32, {RouterKind::quest});
}

TEST_CASE("gpu analysis: minference-bs matches the host analysis", "[gpu][analysis][router]") {
  RouterCase c;
  c.n_tokens = 1201, c.n_q_heads = 4, c.heads = {1, 3}, c.head_dim = 64, c.block_sizes = {16, 100},
  c.top_ks = {1, 4, 13}, c.seed = 5;
  check_case(c, {RouterKind::minference_bs, RouterKind::moba});
  c.tie = kernels::TieRule::older, c.pool_fp32 = true, c.dtype = DType::f16, c.head_dim = 128, c.seed = 6;
  check_case(c, {RouterKind::oracle, RouterKind::minference_bs});
}

TEST_CASE("gpu analysis: sink-window matches the host analysis", "[gpu][analysis][router]") {
  RouterCase c;
  c.n_tokens = 517, c.head_dim = 48, c.block_sizes = {1, 7, 64}, c.top_ks = {1, 2, 9}, c.seed = 3;
  check_case(c, {RouterKind::sink_window, RouterKind::oracle});
}

TEST_CASE("gpu analysis: moba-threshold and oracle-topp match the host analysis", "[gpu][analysis][router]") {
  for (const double tau : {0.5, 0.9, 1.0}) {
    RouterCase c;
    c.n_tokens = 1500, c.n_q_heads = 2, c.head_dim = 64, c.block_sizes = {16, 64}, c.top_ks = {2, 8, 40},
    c.tau = tau, c.q_scale = 3.0f, c.seed = 21;
    // tau = 1: oracle-topp's fp32 masses of two dense passes sum to 1 +- 1e-7, so whether a
    // partial sum reaches tau before the cap is a rounding accident there: moba-threshold only.
    if (tau < 1.0)
      check_case(c, {RouterKind::moba_threshold, RouterKind::oracle_topp, RouterKind::oracle});
    else
      check_case(c, {RouterKind::moba_threshold, RouterKind::oracle});
  }
  RouterCase older;
  older.n_tokens = 900, older.head_dim = 128, older.block_sizes = {32}, older.top_ks = {1, 5, 29},
  older.tie = kernels::TieRule::older, older.q_scale = 2.0f, older.seed = 9;
  check_case(older, {RouterKind::oracle_topp, RouterKind::moba_threshold, RouterKind::moba});
}

TEST_CASE("gpu analysis: nsa-shared matches the host analysis", "[gpu][analysis][router]") {
  // Group of 2, every head analysed; B = 48 leaves a ragged last block (1000 = 20 x 48 + 40),
  // k = 1 and k = 64 >= n_blocks.
  RouterCase c;
  c.n_tokens = 1000, c.n_q_heads = 2, c.head_dim = 64, c.block_sizes = {16, 48}, c.top_ks = {1, 2, 5, 64},
  c.q_scale = 2.0f, c.seed = 31;
  check_case(c, {RouterKind::nsa_shared, RouterKind::oracle});
  // Group of 3, heads 0 and 2 analysed (head 1 still votes), f16, the older tie rule.
  c.n_tokens = 777, c.n_q_heads = 3, c.heads = {0, 2}, c.head_dim = 128, c.block_sizes = {32, 100},
  c.top_ks = {1, 3, 8}, c.dtype = DType::f16, c.tie = kernels::TieRule::older, c.seed = 32;
  check_case(c, {RouterKind::moba, RouterKind::nsa_shared});
  // f32, fp32 pooled keys, d = 48, beside moba-threshold (the same gate scores, one head).
  c.n_tokens = 600, c.heads = {}, c.head_dim = 48, c.block_sizes = {16}, c.top_ks = {2, 40}, c.dtype = DType::f32,
  c.tie = kernels::TieRule::recent, c.pool_fp32 = true, c.seed = 33;
  check_case(c, {RouterKind::nsa_shared, RouterKind::moba_threshold});
  // One head (the sum is that head's probabilities) and B = 1, bf16, sharp rows.
  RouterCase one;
  one.n_tokens = 517, one.head_dim = 64, one.block_sizes = {1, 7}, one.top_ks = {1, 3, 9}, one.q_scale = 4.0f,
  one.tie = kernels::TieRule::older, one.seed = 34;
  check_case(one, {RouterKind::nsa_shared, RouterKind::oracle});
}

TEST_CASE("gpu analysis: every device router at once, GQA, ragged blocks", "[gpu][analysis][router]") {
  RouterCase c;
  // k out of order: the device's selection bands chain each block size's k ascending
  c.n_tokens = 1333, c.n_q_heads = 4, c.head_dim = 64, c.block_sizes = {16, 48, 100}, c.top_ks = {8, 1, 2},
  c.q_scale = 2.0f, c.seed = 4;
  check_case(c, kAllDevice);
  std::vector<RouterKind> with_kconv = kAllDevice;
  with_kconv.push_back(RouterKind::moba_kconv);
  c.dtype = DType::f32, c.n_q_heads = 2, c.head_dim = 48, c.block_sizes = {32}, c.top_ks = {2, 50}, c.seed = 8;
  check_case(c, with_kconv);
}

namespace {

// One KV group of random values rounded to `dtype`, drawn from rng in this order: G query heads
// (scale 2), one key head (1), one value head (0.125). `in` views them and lists heads 0 .. G - 1.
struct RandomGroup {
  Tensor3 q, k, v;
  GroupInput in;
  RandomGroup(int64_t G, int64_t T, int64_t d, DType dtype, std::mt19937& rng)
      : q(random_rounded(G, T, d, dtype, rng, 2.0f)),
        k(random_rounded(1, T, d, dtype, rng, 1.0f)),
        v(random_rounded(1, T, d, dtype, rng, 0.125f)) {
    in.q = q.view();
    in.k = k.view();
    in.v = v.view();
    in.dtype = dtype;
    for (int64_t h = 0; h < G; ++h) in.heads.push_back(h);
  }
  RandomGroup(const RandomGroup&) = delete;  // `in` views this object's tensors
  RandomGroup& operator=(const RandomGroup&) = delete;
};

// Puts the default CUDA tuning back when a test case ends, however it ends.
struct RestoreTuning {
  ~RestoreTuning() { kernels::set_cuda_tuning(kernels::CudaTuning{}); }
};

// rb's summary rows, buckets, SNR sums and kept arrays and selections are ra's, bit for bit.
void same_results(const GroupResult& ra, const GroupResult& rb) {
  const auto same = [](const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; };
  REQUIRE(rb.rows.size() == ra.rows.size());
  for (size_t i = 0; i < ra.rows.size(); ++i) {
    CHECK(rb.rows[i].key == ra.rows[i].key);
    CHECK(same(rb.rows[i].values.data(), ra.rows[i].values.data(), sizeof(ra.rows[i].values)));
  }
  REQUIRE(rb.buckets.size() == ra.buckets.size());
  for (size_t i = 0; i < ra.buckets.size(); ++i) {
    const BucketRow &a = ra.buckets[i], &b = rb.buckets[i];
    CHECK(b.key == a.key);
    CHECK((b.t_begin == a.t_begin && b.t_end == a.t_end && b.n_choice == a.n_choice));
    const double x[5] = {a.coverage, a.kl, a.block_recall, a.token_recall, a.output_rel_err};
    const double y[5] = {b.coverage, b.kl, b.block_recall, b.token_recall, b.output_rel_err};
    CHECK(same(x, y, sizeof(x)));
  }
  REQUIRE(rb.snr.size() == ra.snr.size());
  for (size_t i = 0; i < ra.snr.size(); ++i) {
    const SnrStats &a = ra.snr[i].stats, &b = rb.snr[i].stats;
    CHECK((b.n_queries == a.n_queries && b.n_pairs == a.n_pairs && b.n_negative == a.n_negative));
    const double x[5] = {a.sum_d, a.sum_d2, a.sum_delta_mu, a.sum_excess, a.sum_var_noise};
    const double y[5] = {b.sum_d, b.sum_d2, b.sum_delta_mu, b.sum_excess, b.sum_var_noise};
    CHECK(same(x, y, sizeof(x)));
    CHECK(b.rank_hist == a.rank_hist);
  }
  REQUIRE(rb.arrays.size() == ra.arrays.size());
  for (size_t i = 0; i < ra.arrays.size(); ++i) {
    const PositionArrays &a = ra.arrays[i], &b = rb.arrays[i];
    INFO("head " << a.key.head << " B=" << a.key.block_size << " k=" << a.key.top_k << " "
                 << router_name(a.key.router));
    CHECK(b.key == a.key);
    CHECK(b.selected == a.selected);
    for (const auto& info : position_metrics()) {
      const std::vector<float>& x = a.metric(info.metric);
      const std::vector<float>& y = b.metric(info.metric);
      REQUIRE(x.size() == y.size());
      CHECK(same(x.data(), y.data(), x.size() * sizeof(float)));
    }
  }
}

}  // namespace

// The device's attention runs per window of queries, each (block size, router) cut into query
// parts on several streams: the arrays and selections are the same bits however the queries are
// cut (windows of one chunk, parts of 64 rows, one part), since a row's arithmetic never
// depends on which rows share its call.
TEST_CASE("gpu analysis: attention windows and query parts change no bit", "[gpu][analysis][window]") {
  REQUIRE(kernels::cuda_device_count() > 0);
  const int64_t T = 2100, d = 64;
  std::mt19937 rng(21);
  const RandomGroup g(2, T, d, DType::bf16, rng);
  const GroupInput& in = g.in;
  AnalyzeOptions opt;
  opt.block_sizes = {16, 48};
  opt.top_ks = {9, 1, 3, 30};
  opt.routers = {RouterKind::moba, RouterKind::oracle, RouterKind::oracle_topp};
  opt.query_chunk = 256;
  opt.keep_arrays = true;
  opt.gpus = 1;
  opt.device = Device::cuda;
  opt.attn_split = 1;
  const GroupResult whole = analyze_group(in, opt, nullptr, nullptr);
  // r's arrays and selections are whole's, bit for bit.
  const auto same_arrays = [&whole](const GroupResult& r) {
    REQUIRE(r.arrays.size() == whole.arrays.size());
    for (size_t i = 0; i < r.arrays.size(); ++i) {
      const PositionArrays& a = whole.arrays[i];
      const PositionArrays& b = r.arrays[i];
      INFO("B=" << a.key.block_size << " k=" << a.key.top_k << " " << router_name(a.key.router));
      CHECK(b.selected == a.selected);
      for (const auto& info : position_metrics()) {
        const std::vector<float>& x = a.metric(info.metric);
        const std::vector<float>& y = b.metric(info.metric);
        REQUIRE(x.size() == y.size());
        CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
      }
    }
  };
  for (const auto& [window_bytes, split] : std::vector<std::pair<int64_t, int>>{{0, 7}, {1, 1}, {1, 3}, {0, 64}}) {
    INFO("attn_window_bytes " << window_bytes << " attn_split " << split);
    AnalyzeOptions cut = opt;
    cut.attn_window_bytes = window_bytes;
    cut.attn_split = split;
    const GroupResult r = analyze_group(in, cut, nullptr, nullptr);
    same_arrays(r);
  }
  // The device's query chunk (kernels::CudaTuning::chunk_rows): a query's arithmetic does not
  // depend on its chunk, so chunks of 64 and 320 queries (33 and 7 of them, the last ragged)
  // give the arrays and the summary rows of one 2100-query chunk bit for bit.
  const RestoreTuning restore;
  for (const int rows : {64, 320}) {
    INFO("chunk_rows " << rows);
    kernels::CudaTuning t;
    t.chunk_rows = rows;
    kernels::set_cuda_tuning(t);
    const GroupResult r = analyze_group(in, opt, nullptr, nullptr);
    kernels::set_cuda_tuning(kernels::CudaTuning{});
    REQUIRE(r.rows.size() == whole.rows.size());
    for (size_t i = 0; i < r.rows.size(); ++i) {
      CHECK(r.rows[i].key == whole.rows[i].key);
      CHECK(std::memcmp(r.rows[i].values.data(), whole.rows[i].values.data(), sizeof(whole.rows[i].values)) == 0);
    }
    same_arrays(r);
  }
}

// Two heads in flight (analyze_gpu.cu: head n + 1's chunks enqueued before head n's reductions
// are read, each in a buffer set of its own) give the same bits as one at a time: summary rows,
// buckets, SNR sums, planted hits and the kept arrays and selections, with one window per head
// and with three windows a head (chunks of at most 16384 queries here; windows of one
// chunk: the two selection buffers alternate inside a head), with and without kept heads (whose
// arrays are assembled on a thread of their own).
TEST_CASE("gpu analysis: two heads in flight change no bit", "[gpu][analysis][window]") {
  REQUIRE(kernels::cuda_device_count() > 0);
  const RestoreTuning restore;
  const int64_t d = 64, G = 4;
  for (const auto& [T, window_bytes, keep] :
       std::vector<std::tuple<int64_t, int64_t, bool>>{{1500, 0, true}, {1500, 0, false}, {2 * 16384 + 300, 1, true}}) {
    INFO("T " << T << " attn_window_bytes " << window_bytes << " keep_arrays " << keep);
    std::mt19937 rng(33);
    RandomGroup g(G, T, d, DType::bf16, rng);
    std::vector<int32_t> planted(static_cast<size_t>(G * T));
    for (int64_t t = 0; t < G * T; ++t)
      planted[static_cast<size_t>(t)] = static_cast<int32_t>(std::uniform_int_distribution<int64_t>(-1, t % T)(rng));
    GroupInput& in = g.in;
    in.planted = &planted;
    AnalyzeOptions o;
    o.block_sizes = {16, 48};
    o.top_ks = {9, 1, 3};
    o.routers = {RouterKind::moba, RouterKind::oracle, RouterKind::oracle_topp};
    o.query_chunk = 256;
    o.gpus = 1;
    o.device = Device::cuda;
    o.attn_window_bytes = window_bytes;
    o.keep_arrays = keep;
    const auto run = [&](int in_flight) {
      kernels::CudaTuning t;
      t.heads_in_flight = in_flight;
      t.chunk_rows = 16384;  // three windows of one chunk at T = 2 x 16384 + 300
      kernels::set_cuda_tuning(t);
      GroupResult r = analyze_group(in, o, nullptr, nullptr);
      CHECK(analyze_gpu_heads_in_flight() == in_flight);
      return r;
    };
    const GroupResult one = run(1), two = run(2);
    same_results(one, two);
  }
}

// The routing rows' one-warp-a-row kernel with room for 8 configurations a block size at 6, 7
// or 8 CTAs a multiprocessor (kernels::CudaTuning::row_ctas; 8 by default) gives the bits of the
// one with room for 16 at 5 (row_ctas=5): the same code under other sizes and register caps.
// Eight top-k values (each row's picks from the small list while they are at most 8, by radix
// select past that), six at most 9 (the small list only), and nine, where the kernel with room
// for 16 runs whatever row_ctas says.
TEST_CASE("gpu analysis: the routing rows' CTAs a multiprocessor change no bit", "[gpu][analysis][window]") {
  REQUIRE(kernels::cuda_device_count() > 0);
  const RestoreTuning restore;
  const int64_t T = 3000, d = 64;
  std::mt19937 rng(41);
  const RandomGroup g(2, T, d, DType::bf16, rng);
  const GroupInput& in = g.in;
  for (const std::vector<int>& ks : std::vector<std::vector<int>>{
           {1, 2, 3, 5, 8, 20, 60, 150}, {1, 2, 4, 6, 8, 9}, {1, 2, 3, 5, 8, 20, 60, 150, 180}}) {
    INFO("top-k values " << ks.size() << ", the largest " << ks.back());
    AnalyzeOptions o;
    o.block_sizes = {16, 48};
    o.top_ks = ks;
    o.routers = {RouterKind::moba, RouterKind::oracle};
    o.query_chunk = 256;
    o.keep_arrays = true;
    o.gpus = 1;
    o.device = Device::cuda;
    kernels::CudaTuning t5;
    t5.row_ctas = 5;
    kernels::set_cuda_tuning(t5);
    const int64_t before5 = analyze_gpu_row_launches_nc8();
    const GroupResult base = analyze_group(in, o, nullptr, nullptr);
    CHECK(analyze_gpu_row_launches_nc8() == before5);
    for (const int ctas : {0, 6, 7, 8}) {
      INFO("row_ctas " << ctas);
      kernels::CudaTuning t;
      t.row_ctas = ctas;
      kernels::set_cuda_tuning(t);
      const int64_t before = analyze_gpu_row_launches_nc8();
      const GroupResult r = analyze_group(in, o, nullptr, nullptr);
      CHECK((analyze_gpu_row_launches_nc8() > before) == (ks.size() <= 8));
      same_results(base, r);
    }
  }
}

// The SNR probe's moments of the dump's keys at base 16 come from the dense pass's own score
// tiles where it runs on the same 16-bit q and k (kernels::DensePassParams::score_sum): the
// same bits as the moments kernel of their own (kernels::CudaTuning::moments_apart), which the
// host analysis is compared with elsewhere. bf16 (exact: split P; fast: plain) and f16
// (exact), head dims 48, 64 and 128, ragged T, chunks of 320 queries and one chunk, with a
// second gate (moba-kconv, moments of its own) beside them.
TEST_CASE("gpu analysis: the dense pass's score moments are the moments kernel's bits", "[gpu][analysis][snr]") {
  REQUIRE(kernels::cuda_device_count() > 0);
  const RestoreTuning restore;
  struct Case {
    DType dtype;
    kernels::Precision precision;
    int64_t T, d;
    int chunk_rows;
    std::vector<int64_t> block_sizes;
  };
  const std::vector<Case> cases = {
      {DType::bf16, kernels::Precision::exact, 1333, 128, 32768, {16, 32}},
      {DType::bf16, kernels::Precision::fast, 1333, 64, 320, {16, 48}},
      {DType::f16, kernels::Precision::exact, 2100, 48, 32768, {32, 16}},
      {DType::f16, kernels::Precision::exact, 777, 128, 320, {16}},
  };
  for (const Case& c : cases) {
    INFO(dtype_name(c.dtype) << " " << kernels::precision_name(c.precision) << " T " << c.T << " d " << c.d
                             << " chunk_rows " << c.chunk_rows);
    std::mt19937 rng(static_cast<unsigned>(c.T + c.d));
    const RandomGroup g(2, c.T, c.d, c.dtype, rng);
    const GroupInput& in = g.in;
    AnalyzeOptions o;
    o.block_sizes = c.block_sizes;
    o.top_ks = {1, 3};
    o.routers = {RouterKind::moba, RouterKind::oracle, RouterKind::moba_kconv};
    o.routing.precision = c.precision;
    o.query_chunk = 256;
    o.gpus = 1;
    o.device = Device::cuda;
    const auto run = [&](bool apart) {
      kernels::CudaTuning t;
      t.moments_apart = apart;
      t.chunk_rows = c.chunk_rows;
      kernels::set_cuda_tuning(t);
      const int64_t before = analyze_gpu_moments_in_dense();
      GroupResult r = analyze_group(in, o, nullptr, nullptr);
      const int64_t chunks = analyze_gpu_moments_in_dense() - before;
      const int64_t chunk = std::min<int64_t>(c.chunk_rows, c.T);
      CHECK(chunks == (apart ? 0 : 2 * ((c.T + chunk - 1) / chunk)));
      return r;
    };
    const GroupResult fused = run(false), apart = run(true);
    REQUIRE(fused.rows.size() == apart.rows.size());
    for (size_t i = 0; i < apart.rows.size(); ++i) {
      INFO("row " << i);
      CHECK(fused.rows[i].key == apart.rows[i].key);
      CHECK(std::memcmp(fused.rows[i].values.data(), apart.rows[i].values.data(), sizeof(apart.rows[i].values)) == 0);
    }
    REQUIRE(fused.snr.size() == apart.snr.size());
    REQUIRE(!apart.snr.empty());
    for (size_t i = 0; i < apart.snr.size(); ++i) {
      const SnrStats &a = apart.snr[i].stats, &b = fused.snr[i].stats;
      CHECK(a.n_queries > 0);
      CHECK((b.n_queries == a.n_queries && b.n_pairs == a.n_pairs && b.n_negative == a.n_negative));
      const double x[5] = {a.sum_d, a.sum_d2, a.sum_delta_mu, a.sum_excess, a.sum_var_noise};
      const double y[5] = {b.sum_d, b.sum_d2, b.sum_delta_mu, b.sum_excess, b.sum_var_noise};
      CHECK(std::memcmp(x, y, sizeof(x)) == 0);
      CHECK(b.rank_hist == a.rank_hist);
    }
  }
}
