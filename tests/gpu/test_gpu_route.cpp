// route_group (analysis/router.h, `moba route`) on CUDA against the CPU, in process, for every
// router on awkward shapes: ragged last blocks, k = 1, k >= n_blocks, GQA groups of 1 to 3 heads
// under both --gqa, both tie rules, bf16 / f16 / f32, B = 1. Each case prints its parameters.
//
// Contract checked here:
// - quest, minference-bs, sink-window, moba-threshold, nsa-shared: the device computes the
//   CPU's score rows (analysis/gpu/route_gpu.h), so every selection row is identical (nsa-shared
//   and moba-threshold: unless exp's last bit moves a near-tie; none on these seeded inputs);
// - moba, moba-kconv (gate_topk's tie contract, fp32 FMA gate scores) and oracle, oracle-topp
//   (the masses of two dense passes): at most 1% of rows differ;
// - every head of a KV group gets the same row under --gqa shared, and for nsa-shared always.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/config_key.h"
#include "analysis/gpu/route_gpu.h"
#include "analysis/router.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "tests/test_analysis_util.h"

using namespace moba;
using namespace moba::analysis;
using moba::analysis_test::random_rounded;

namespace {

struct RouteCase {
  int64_t n_tokens = 0, group = 1, head_dim = 64, block_size = 16;
  int top_k = 2;
  DType dtype = DType::bf16;
  kernels::TieRule tie = kernels::TieRule::recent;
  kernels::GqaMode gqa = kernels::GqaMode::per_head;
  bool pool_fp32 = false;
  double tau = 0.9;
  float q_scale = 2.0f;
  uint32_t seed = 1;
  std::string str() const {
    std::ostringstream o;
    o << "T=" << n_tokens << " G=" << group << " d=" << head_dim << " B=" << block_size << " k=" << top_k << " "
      << dtype_name(dtype) << (tie == kernels::TieRule::older ? " tie=older" : "")
      << (gqa == kernels::GqaMode::shared ? " gqa=shared" : "") << (pool_fp32 ? " pool=fp32" : "") << " tau=" << tau
      << " q_scale=" << q_scale << " seed=" << seed;
    return o.str();
  }
};

const std::vector<RouterKind> kEveryRouter = {
    RouterKind::moba,           RouterKind::moba_kconv, RouterKind::oracle,      RouterKind::quest,
    RouterKind::sink_window,    RouterKind::minference_bs, RouterKind::nsa_shared, RouterKind::moba_threshold,
    RouterKind::oracle_topp};

void check_route(const RouteCase& c) {
  INFO(c.str());
  REQUIRE(kernels::cuda_device_count() > 0);
  std::mt19937 rng(c.seed);
  const Tensor3 q = random_rounded(c.group, c.n_tokens, c.head_dim, c.dtype, rng, c.q_scale);
  const Tensor3 k = random_rounded(1, c.n_tokens, c.head_dim, c.dtype, rng, 1.0f);
  RoutingOptions opt;
  opt.tie = c.tie;
  opt.gqa = c.gqa;
  opt.pool_fp32 = c.pool_fp32;
  opt.tau = c.tau;
  const int64_t T = c.n_tokens, K = c.top_k, n = c.group * T * K;
  for (const RouterKind router : kEveryRouter) {
    INFO(router_name(router));
    if (!router_is_gate(router)) {
      const std::string why = route_gpu_unsupported(router, T, c.head_dim, c.block_size);
      INFO("route_gpu_unsupported: " << why);
      REQUIRE(why.empty());
    }
    std::vector<int32_t> cpu(static_cast<size_t>(n), -7), gpu(static_cast<size_t>(n), -7);
    route_group(q.view(), k.view(), k.view(), c.dtype, router, opt, c.block_size, c.top_k, Device::cpu, cpu.data(),
                nullptr, nullptr);
    route_group(q.view(), k.view(), k.view(), c.dtype, router, opt, c.block_size, c.top_k, Device::cuda, gpu.data(),
                nullptr, nullptr);
    int64_t differ = 0, first = -1;
    for (int64_t r = 0; r < c.group * T; ++r) {
      const bool same = std::equal(cpu.begin() + r * K, cpu.begin() + (r + 1) * K, gpu.begin() + r * K);
      if (!same && first < 0) first = r;
      differ += same ? 0 : 1;
      for (int64_t x = 0; x < K; ++x) REQUIRE(gpu[r * K + x] != -7);  // fully written
    }
    std::ostringstream where;
    if (first >= 0) {
      where << "first differing row: head " << first / T << " t=" << first % T << ": cpu";
      for (int64_t x = 0; x < K; ++x) where << " " << cpu[first * K + x];
      where << " / cuda";
      for (int64_t x = 0; x < K; ++x) where << " " << gpu[first * K + x];
    }
    INFO(differ << " of " << c.group * T << " rows differ; " << where.str());
    if (router_is_gate(router) || router == RouterKind::oracle || router == RouterKind::oracle_topp)
      CHECK(differ <= c.group * T / 100);
    else
      CHECK(differ == 0);
    // One row per KV group: every head selects head 0's row.
    if (router == RouterKind::nsa_shared || c.gqa == kernels::GqaMode::shared)
      for (int64_t h = 1; h < c.group; ++h)
        CHECK(std::equal(gpu.begin(), gpu.begin() + T * K, gpu.begin() + h * T * K));
  }
}

}  // namespace

TEST_CASE("gpu route: every router matches the CPU, per-head GQA", "[gpu][route][router]") {
  RouteCase c;
  c.n_tokens = 1000, c.group = 2, c.block_size = 48, c.seed = 41;  // 1000 = 20 x 48 + 40: ragged
  for (const int k : {1, 3, 64}) {  // 64 >= n_blocks (21)
    c.top_k = k;
    check_route(c);
  }
  c.n_tokens = 777, c.group = 3, c.head_dim = 128, c.block_size = 32, c.top_k = 5, c.dtype = DType::f16,
  c.tie = kernels::TieRule::older, c.tau = 0.5, c.seed = 42;
  check_route(c);
}

TEST_CASE("gpu route: every router matches the CPU, --gqa shared", "[gpu][route][router]") {
  RouteCase c;
  c.n_tokens = 1333, c.group = 3, c.block_size = 100, c.top_k = 4, c.gqa = kernels::GqaMode::shared, c.seed = 43;
  check_route(c);
  c.n_tokens = 600, c.group = 2, c.head_dim = 48, c.block_size = 16, c.top_k = 40, c.dtype = DType::f32,
  c.pool_fp32 = true, c.tie = kernels::TieRule::older, c.tau = 0.95, c.seed = 44;
  check_route(c);
}

TEST_CASE("gpu route: one head, B = 1, sharp rows, k = 1", "[gpu][route][router]") {
  RouteCase c;
  c.n_tokens = 517, c.group = 1, c.block_size = 1, c.top_k = 9, c.q_scale = 4.0f, c.seed = 45;
  check_route(c);
  c.top_k = 1, c.block_size = 7, c.dtype = DType::f32, c.seed = 46;
  check_route(c);
}
