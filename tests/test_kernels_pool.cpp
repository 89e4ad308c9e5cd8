// Block pooling and the causal key convolution (kernels/block_pool.h, kernels/kconv.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "kernels/block_pool.h"
#include "kernels/kconv.h"
#include "test_kernels_util.h"

using namespace moba;
using namespace moba::kernels;
using namespace moba::kernels_test;

namespace {

struct Pooled {
  std::vector<float> mean, min, max;
};

Pooled pool(const Tensor3& k, int64_t B, DType dt, bool bounds = true) {
  const int64_t nb = block_count(k.n_tokens, B);
  Pooled r;
  r.mean.resize(static_cast<size_t>(k.n_heads * nb * k.head_dim));
  poison(r.mean);
  if (bounds) {
    r.min = r.mean;
    r.max = r.mean;
  }
  BlockPoolParams p;
  p.k = k.view();
  p.block_size = B;
  p.pool_dtype = dt;
  p.mean = r.mean.data();
  p.min = bounds ? r.min.data() : nullptr;
  p.max = bounds ? r.max.data() : nullptr;
  REQUIRE(block_pool_can_run(p) == nullptr);
  block_pool_cpu(p);
  return r;
}

}  // namespace

TEST_CASE("block_count is ceil(T / B)", "[kernels][pool]") {
  CHECK(block_count(0, 4) == 0);
  CHECK(block_count(1, 4) == 1);
  CHECK(block_count(4, 4) == 1);
  CHECK(block_count(5, 4) == 2);
  CHECK(block_count(113, 16) == 8);
  CHECK(block_count(7, 1) == 7);
}

TEST_CASE("block_pool: mean, min, max per block, the partial last block over its real length",
          "[kernels][pool]") {
  const int64_t B = GENERATE(1, 3, 4, 16);
  const int64_t T = GENERATE(1, 10, 17);
  CAPTURE(B, T);
  const Tensor3 k = random_tensor(2, T, 5, 11);
  const Pooled r = pool(k, B, DType::f32);
  const int64_t nb = block_count(T, B);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t t1 = std::min((b + 1) * B, T);
      for (int64_t c = 0; c < 5; ++c) {
        double sum = 0.0;
        float mn = k.row(h, b * B)[c], mx = mn;
        for (int64_t t = b * B; t < t1; ++t) {
          sum += k.row(h, t)[c];
          mn = std::min(mn, k.row(h, t)[c]);
          mx = std::max(mx, k.row(h, t)[c]);
        }
        const size_t at = static_cast<size_t>((h * nb + b) * 5 + c);
        CHECK(r.mean[at] == static_cast<float>(sum / static_cast<double>(t1 - b * B)));
        CHECK(r.min[at] == mn);
        CHECK(r.max[at] == mx);
      }
    }
}

TEST_CASE("block_pool: partial last block is not divided by B", "[kernels][pool]") {
  // T = 10, B = 4: block 2 holds keys 8 and 9 only.
  Tensor3 k(1, 10, 1);
  for (int t = 0; t < 10; ++t) k.data[t] = static_cast<float>(t);
  const Pooled r = pool(k, 4, DType::f32);
  CHECK(r.mean[0] == 1.5f);
  CHECK(r.mean[1] == 5.5f);
  CHECK(r.mean[2] == 8.5f);  // (8 + 9) / 2, not (8 + 9) / 4
  CHECK(r.min[2] == 8.0f);
  CHECK(r.max[2] == 9.0f);
}

TEST_CASE("block_pool: pool precision dump rounds the mean, fp32 keeps it", "[kernels][pool]") {
  // Three bf16-exact keys 1, 1, 1 + 2^-7: the fp32 mean 1 + 2^-7/3 is not a bf16 (nor f16)
  // value; `dump` rounds it to the dump dtype, `fp32` keeps it.
  Tensor3 k(1, 3, 1);
  k.data = {1.0f, 1.0f, 1.0f + std::ldexp(1.0f, -7)};
  const float exact = static_cast<float>((3.0 + std::ldexp(1.0, -7)) / 3.0);
  CHECK(pool(k, 3, DType::f32, false).mean[0] == exact);
  CHECK(pool(k, 3, DType::bf16, false).mean[0] == 1.0f);
  CHECK(pool(k, 3, DType::bf16, false).mean[0] == round_to(DType::bf16, exact));
  CHECK(pool(k, 3, DType::f16, false).mean[0] == round_to(DType::f16, exact));
  CHECK(pool(k, 3, DType::f16, false).mean[0] != exact);
}

TEST_CASE("block_pool: strided (thd) views pool the same values", "[kernels][pool]") {
  // The same data laid out [n_tokens, n_heads, head_dim] and viewed head-major.
  const int64_t H = 3, T = 9, D = 4, B = 4;
  const Tensor3 k = random_tensor(H, T, D, 5);
  std::vector<float> thd(static_cast<size_t>(H * T * D));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < D; ++c) thd[static_cast<size_t>((t * H + h) * D + c)] = k.row(h, t)[c];
  const int64_t nb = block_count(T, B);
  std::vector<float> mean(static_cast<size_t>(H * nb * D));
  BlockPoolParams p;
  p.k = TensorView{thd.data(), H, T, D, D, H * D, 1};
  p.block_size = B;
  p.mean = mean.data();
  REQUIRE(block_pool_can_run(p) == nullptr);
  block_pool_cpu(p);
  CHECK(mean == pool(k, B, DType::f32, false).mean);
}

TEST_CASE("block_pool: can_run names bad params", "[kernels][pool]") {
  const Tensor3 k = random_tensor(1, 4, 2, 1);
  std::vector<float> mean(8);
  BlockPoolParams p;
  p.k = k.view();
  p.block_size = 0;
  p.mean = mean.data();
  CHECK(block_pool_can_run(p) != nullptr);
  p.block_size = 2;
  CHECK(block_pool_can_run(p) == nullptr);
  p.mean = nullptr;
  CHECK(block_pool_can_run(p) != nullptr);
}

namespace {

double silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

TEST_CASE("kconv: k'_t = k_t + SiLU(sum_l w_l k_{t-l}), zero padding before t = 0",
          "[kernels][kconv]") {
  const int W = GENERATE(3, 5);
  const int weights_mode = GENERATE(0, 1, 2);  // uniform, shared, per head
  CAPTURE(W, weights_mode);
  const int64_t H = 2, T = 9, D = 3;
  const Tensor3 k = random_tensor(H, T, D, 21);
  std::vector<float> w;
  if (weights_mode == 1) w = to_std_vector(random_tensor(1, W, D, 3).data);
  if (weights_mode == 2) w = to_std_vector(random_tensor(H, W, D, 4).data);
  std::vector<float> out(static_cast<size_t>(H * T * D));
  poison(out);
  KconvParams p;
  p.k = k.view();
  p.width = W;
  p.weights = w.empty() ? nullptr : w.data();
  p.weights_per_head = weights_mode == 2;
  p.out = out.data();
  REQUIRE(kconv_can_run(p) == nullptr);
  kconv_cpu(p);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < D; ++c) {
        double conv = 0.0;
        for (int l = 0; l < W; ++l) {
          if (t - l < 0) continue;  // zero padding
          const double wl = weights_mode == 0 ? 1.0 / W
                            : weights_mode == 1 ? w[static_cast<size_t>(l * D + c)]
                                                : w[static_cast<size_t>((h * W + l) * D + c)];
          conv += wl * k.row(h, t - l)[c];
        }
        const double want = k.row(h, t)[c] + silu(conv);
        CHECK(out[static_cast<size_t>((h * T + t) * D + c)] == Approx(want).epsilon(1e-6).margin(1e-7));
      }
}

TEST_CASE("kconv: t = 0 sees only its own key (causal, zero padded)", "[kernels][kconv]") {
  Tensor3 k(1, 3, 1);
  k.data = {3.0f, 100.0f, 100.0f};  // later keys must not leak into t = 0
  std::vector<float> out(3);
  KconvParams p;
  p.k = k.view();
  p.width = 3;
  p.out = out.data();
  kconv_cpu(p);
  CHECK(out[0] == Approx(3.0 + silu(1.0)).epsilon(1e-7));
  CHECK(out[1] == Approx(100.0 + silu(103.0 / 3.0)).epsilon(1e-7));
}

TEST_CASE("kconv: can_run rejects widths other than 3 and 5", "[kernels][kconv]") {
  const Tensor3 k = random_tensor(1, 4, 2, 1);
  std::vector<float> out(8);
  KconvParams p;
  p.k = k.view();
  p.out = out.data();
  for (int w : {0, 1, 2, 4, 6}) {
    p.width = w;
    CHECK(kconv_can_run(p) != nullptr);
  }
  p.width = 5;
  CHECK(kconv_can_run(p) == nullptr);
}
