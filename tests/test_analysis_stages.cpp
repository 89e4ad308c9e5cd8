// analyze's stages on their own: the plan's index maps, the shared-GQA oracle selection that
// route_group and analyze both use, the SNR probe's signal key, and the device split notice.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

#include "analysis/analyze.h"
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/router.h"
#include "analysis/snr_probe.h"
#include "kernels/backend.h"
#include "core/errors.h"
#include "test_analysis_util.h"

using namespace moba;
using namespace moba::analysis;

TEST_CASE("analyze plan: configurations grouped by block size", "[analysis][plan]") {
  AnalyzeOptions opt;
  opt.block_sizes = {64, 16};
  opt.top_ks = {2, 4};
  opt.top_n = 3;
  opt.query_chunk = 1000;
  const AnalyzePlan p = make_plan(opt, 300);
  REQUIRE(p.n_configs() == 4);
  CHECK(p.n_block_sizes() == 2);
  CHECK(p.n_blocks == std::vector<int64_t>{5, 19});
  CHECK(p.chunk == 300);
  CHECK(p.n_top == 16);
  for (int ci = 0; ci < p.n_configs(); ++ci) {
    const int bi = p.block_of_config[ci];
    CHECK(p.block_sizes[bi] == p.configs[ci].block_size);
    const auto& list = p.configs_of_block[bi];
    CHECK(std::find(list.begin(), list.end(), ci) != list.end());
  }
  CHECK(p.configs_of_block[0] == std::vector<int>{0, 1});
  opt.top_ks.clear();
  CHECK_THROWS_AS(make_plan(opt, 300), UsageError);
}

TEST_CASE("select_oracle_shared: group-summed masses, one selection per query, every target",
          "[analysis][router]") {
  const int64_t G = 3, nq = 40, B = 8, t0 = 17, n_blocks = (t0 + nq + B - 1) / B;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> mass(static_cast<size_t>(G * nq * n_blocks));
  for (float& x : mass) x = u(rng);
  std::vector<int32_t> k2(static_cast<size_t>(nq * 2)), k4(static_cast<size_t>(nq * 4));
  select_oracle_shared(mass.data(), G, nq, n_blocks, t0, B, kernels::TieRule::recent,
                       {{2, k2.data()}, {4, k4.data()}});
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t c = (t0 + i) / B;
    std::vector<float> sum(static_cast<size_t>(n_blocks), 0.0f);
    for (int64_t h = 0; h < G; ++h)
      for (int64_t b = 0; b < c; ++b) sum[b] += mass[(h * nq + i) * n_blocks + b];
    std::vector<int32_t> want(4);
    kernels::select_blocks_row(sum.data(), c, 4, kernels::TieRule::recent, want.data());
    INFO("query " << t0 + i);
    CHECK(std::equal(want.begin(), want.end(), k4.begin() + i * 4));
    kernels::select_blocks_row(sum.data(), c, 2, kernels::TieRule::recent, want.data());
    CHECK(std::equal(want.begin(), want.begin() + 2, k2.begin() + i * 2));
  }
}

TEST_CASE("route_group and analyze agree on the oracle under shared and per-head GQA", "[analysis][router]") {
  const int64_t T = 200, d = 16, G = 2;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 31, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 32, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 33);
  for (const auto gqa : {kernels::GqaMode::shared, kernels::GqaMode::per_head}) {
    AnalyzeOptions opt;
    opt.block_sizes = {16};
    opt.top_ks = {3};
    opt.query_chunk = 64;  // chunks that do not align with blocks
    opt.routing.gqa = gqa;
    opt.routers = {RouterKind::oracle};
    const GroupResult r = analysis_test::analyze_all(q, k, v, opt);
    std::vector<int32_t> ref(static_cast<size_t>(G * T * 3));
    route_group(q.view(), k.view(), v.view(), DType::f32, RouterKind::oracle, opt.routing, 16, 3, Device::cpu,
                ref.data(), nullptr, nullptr, 50);
    for (int64_t h = 0; h < G; ++h) {
      INFO("gqa " << gqa_name(gqa) << " head " << h);
      const auto& a = analysis_test::find_arrays(r, h, RouterKind::oracle, 16, 3);
      CHECK(std::equal(a.selected.begin(), a.selected.end(), ref.begin() + h * T * 3));
    }
  }
}

TEST_CASE("find_signal_key: the dense top list first, else the argmax (later key on ties)", "[analysis][snr]") {
  Tensor3 k(1, 6, 2);
  const float keys[6][2] = {{1, 0}, {3, 0}, {3, 0}, {0, 1}, {9, 0}, {9, 0}};
  for (int j = 0; j < 6; ++j)
    for (int c = 0; c < 2; ++c) k.row(0, j)[c] = keys[j][c];
  const float q[2] = {1, 0};
  Eigen::VectorXf scratch;
  const int32_t top[3] = {5, 2, -1};
  CHECK(find_signal_key(top, 3, 4, q, k.view(), &scratch) == 2);   // 5 is not routable
  const int32_t none[2] = {5, -1};
  CHECK(find_signal_key(none, 2, 4, q, k.view(), &scratch) == 2);  // argmax over j < 4, tie 1/2 -> 2
}

TEST_CASE("analyze_device_split: silent on the CPU, says where the stages run on cuda", "[analysis]") {
  AnalyzeOptions opt;
  opt.block_sizes = {16, 64};
  opt.top_ks = {2, 4};
  CHECK(analyze_device_split(opt, 1024, 64).empty());
  opt.device = Device::cuda;
  const std::string split = analyze_device_split(opt, 1024, 64);
  if (gpu_analysis_unsupported(opt, make_plan(opt, 1024), 64).empty()) {
    CHECK(split == "every stage on cuda (GPU-resident analysis)");
  } else {  // a build without the CUDA backend
    CHECK(split == "routing, metrics and SNR on the CPU (this build has no CUDA backend); dense pass and MoBA "
                   "attention on cuda");
  }
  opt.routing.gqa = kernels::GqaMode::shared;
  CHECK(analyze_device_split(opt, 1024, 64).find("routing, metrics and SNR on the CPU (") == 0);
  opt.routing.gqa = kernels::GqaMode::per_head;
  opt.block_sizes = {1};  // 17000 blocks: above the GPU row sort's 16385
  opt.top_ks = {2};
  CHECK(analyze_device_split(opt, 17000, 64).find("routing, metrics and SNR on the CPU (") == 0);
  // Every router, nsa-shared included, runs on the device.
  opt.block_sizes = {16, 64};
  opt.top_ks = {2, 4};
  for (const RouterKind r : {RouterKind::quest, RouterKind::sink_window, RouterKind::minference_bs,
                             RouterKind::moba_threshold, RouterKind::oracle_topp, RouterKind::nsa_shared}) {
    opt.routers = {RouterKind::moba, r, RouterKind::oracle};
    INFO(router_name(r));
    CHECK(analyze_device_split(opt, 1024, 64).find(kernels::cuda_compiled() ? "every stage on cuda"
                                                                             : "routing, metrics and SNR on the CPU (") == 0);
  }
}

TEST_CASE("attention windows: the host path's tables and arrays do not depend on the window", "[analysis][window]") {
  // T = 700 in chunks of 64 (a ragged last chunk); a 1-byte budget makes every window one chunk.
  const int64_t T = 700, d = 16, G = 2;
  const Tensor3 q = analysis_test::random_tensor(G, T, d, 41, 2.0f);
  const Tensor3 k = analysis_test::random_tensor(1, T, d, 42, 2.0f);
  const Tensor3 v = analysis_test::random_tensor(1, T, d, 43);
  AnalyzeOptions opt;
  opt.block_sizes = {16, 48};
  opt.top_ks = {1, 3, 20};
  opt.query_chunk = 64;
  opt.routers = {RouterKind::moba, RouterKind::oracle, RouterKind::moba_threshold, RouterKind::oracle_topp};
  const AnalyzePlan plan = make_plan(opt, T);
  CHECK(attention_window(opt, plan, plan.chunk) == T);  // the whole sequence fits 2 GiB
  AnalyzeOptions small = opt;
  small.attn_window_bytes = 1;
  CHECK(attention_window(small, plan, plan.chunk) == 64);
  small.attn_window_bytes = 128 * 2 * (1 + 3 + 20) * 4 * 4;  // 128 queries x sum k (2 B x 4 routers) x 4 bytes
  CHECK(attention_window(small, plan, plan.chunk) == 128);
  // Bands of nested budgets (the device's): the largest k of each B, 20 entries instead of 24.
  small.attn_window_bytes = 256 * 2 * 20 * 4 * 4;
  CHECK(attention_window(small, plan, plan.chunk, true) == 256);
  CHECK(attention_window(small, plan, plan.chunk) == 192);  // 213 queries fit: three chunks
  small.attn_window_bytes = 1;

  const GroupResult whole = analysis_test::analyze_all(q, k, v, opt);
  const GroupResult windows = analysis_test::analyze_all(q, k, v, small);
  REQUIRE(whole.rows.size() == windows.rows.size());
  for (size_t i = 0; i < whole.rows.size(); ++i) {
    INFO("row " << i << " " << router_name(whole.rows[i].key.router) << " B " << whole.rows[i].key.block_size << " k "
                << whole.rows[i].key.top_k);
    for (size_t c = 0; c < whole.rows[i].values.size(); ++c) {
      const double a = whole.rows[i].values[c], b = windows.rows[i].values[c];
      CHECK(((std::isnan(a) && std::isnan(b)) || a == b));
    }
  }
  REQUIRE(whole.arrays.size() == windows.arrays.size());
  for (size_t i = 0; i < whole.arrays.size(); ++i) {
    const PositionArrays &a = whole.arrays[i], &b = windows.arrays[i];
    CHECK(a.selected == b.selected);
    CHECK(a.selected.size() == static_cast<size_t>(T * a.key.top_k));
    CHECK(std::memcmp(a.output_rel_err.data(), b.output_rel_err.data(), a.output_rel_err.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(a.output_cosine.data(), b.output_cosine.data(), a.output_cosine.size() * sizeof(float)) == 0);
  }
}
