// CPU-vs-CUDA comparison of every kernel op (in the spirit of ggml's test-backend-ops): each
// case states its parameters (printed on failure), draws fresh seeded inputs rounded to its
// dtype, runs the CPU reference and the CUDA op on the same values, poisons the device
// outputs first and checks that every element was written, and compares with the per-dtype
// table of tests/tolerances.h. Selections are compared as sets under the tie contract.
// Each case names its numerics (kernels/operand.h Precision): `fast` cases hold the older
// naive-reference tolerances, `exact` cases the issue-10 targets (tolerances::exact_row).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/block_pool.h"
#include "kernels/cuda/tuning.h"
#include "kernels/cuda_runtime.h"
#include "kernels/dense_pass.h"
#include "kernels/dispatch.h"
#include "kernels/gate_topk.h"
#include "kernels/kconv.h"
#include "kernels/moba_attention.h"
#include "tests/tolerances.h"

using namespace moba;
using namespace moba::kernels;

namespace {

constexpr uint32_t kPoisonWord = 0x7f7f7f7fu;  // float 3.39e38, int 2139062143

struct Case {
  int64_t n_tokens, n_q_heads, n_kv_heads, head_dim, block_size;
  int top_k;
  DType dtype;
  TieRule tie = TieRule::recent;
  GqaMode gqa = GqaMode::per_head;
  uint32_t seed = 1;
  bool tied = false;  // exact ties: key row t = key row t % B (routing: whole blocks tie), t % 16 (dense pass)
  Precision precision = Precision::fast;
  bool typed_view = false;  // operands as fp32 views typed with the dtype (route's path), not raw 16-bit
  float scale = 1.0f;       // inputs ~ N(0, scale^2): larger scales give sharper softmax rows
  std::string str() const {
    std::ostringstream o;
    o << "T=" << n_tokens << " Hq=" << n_q_heads << " Hkv=" << n_kv_heads << " d=" << head_dim
      << " B=" << block_size << " k=" << top_k << " " << dtype_name(dtype)
      << (tie == TieRule::older ? " tie=older" : "") << (gqa == GqaMode::shared ? " gqa=shared" : "")
      << (tied ? " tied" : "") << " seed=" << seed << " precision=" << precision_name(precision)
      << (typed_view ? " typed-view" : "") << (scale != 1.0f ? " scale=" + std::to_string(scale) : "");
    return o.str();
  }
};

Tensor3 random_rounded(int64_t h, int64_t t, int64_t d, DType dt, uint32_t seed, float scale = 1.0f) {
  Tensor3 x(h, t, d, dt);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (float& v : x.data) v = round_to(dt, nd(rng));
  return x;
}

#define CUDA_OK(expr)                                   \
  do {                                                  \
    const char* e_ = (expr);                            \
    INFO((e_ ? std::string(e_) + " / " + cuda_last_error_detail() : std::string())); \
    REQUIRE(e_ == nullptr);                             \
  } while (0)

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
  REQUIRE(b.error() == nullptr);
  if (!v.empty()) CUDA_OK(cuda_copy_to_device(b.get(), v.data(), v.size() * sizeof(T)));
  return b;
}

DeviceBuffer poisoned(size_t bytes) {
  DeviceBuffer b(std::max<size_t>(bytes, 16));
  REQUIRE(b.error() == nullptr);
  CUDA_OK(cuda_fill_bytes(b.get(), 0x7f, b.bytes()));
  return b;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  if (n) CUDA_OK(cuda_copy_to_host(v.data(), b.get(), n * sizeof(T)));
  for (size_t i = 0; i < n; ++i) {
    uint32_t w;
    std::memcpy(&w, &v[i], 4);
    INFO("element " << i << " never written");
    REQUIRE(w != kPoisonWord);
  }
  return v;
}

// Device copy of a tensor: fp32 (view on device) and, for 16-bit dtypes, raw 16-bit.
struct DevTensor3 {
  DeviceBuffer f32, h16;
  TensorView view;  // device pointer in data
};
DevTensor3 to_device(const Tensor3& x) {
  DevTensor3 d;
  d.f32 = upload(to_std_vector(x.data));
  if (x.dtype != DType::f32) {
    std::vector<uint16_t> raw(x.data.size());
    for (size_t i = 0; i < raw.size(); ++i)
      raw[i] = x.dtype == DType::bf16 ? f32_to_bf16(x.data[i]) : f32_to_f16(x.data[i]);
    d.h16 = upload(raw);
  }
  d.view = x.view();
  d.view.data = d.f32.as<float>();
  return d;
}

// The op operand of a device tensor: its raw 16-bit values for f16 / bf16 cases (fp32 view
// cleared), its fp32 view for f32 cases.
Operand device_operand(const DevTensor3& d, DType t) {
  return t == DType::f32 ? Operand(d.view) : Operand::device16(d.view, d.h16.as<uint16_t>(), t);
}
// The operand a case asks for: raw 16-bit (device_operand) or the fp32 view typed with the
// dtype (what analysis passes under --precision exact; f32 cases are the same either way).
Operand case_operand(const DevTensor3& d, const Case& c) {
  return c.typed_view ? Operand::of_dtype(d.view, c.dtype) : device_operand(d, c.dtype);
}

// Max over rows of ||o_gpu - o_cpu|| / ||o_cpu|| (rows of `d` values); a row the reference
// leaves at 0 must be 0 on the GPU too (else +inf). The exact-mode output metric.
double max_row_rel_err(const std::vector<float>& gpu, const std::vector<float>& cpu, int64_t d) {
  double worst = 0;
  for (size_t r = 0; r + static_cast<size_t>(d) <= cpu.size(); r += static_cast<size_t>(d)) {
    double e = 0, n = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double x = double(gpu[r + i]) - cpu[r + i];
      e += x * x;
      n += double(cpu[r + i]) * cpu[r + i];
    }
    worst = std::max(worst, n > 0 ? std::sqrt(e / n) : (e > 0 ? INFINITY : 0.0));
  }
  return worst;
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s / std::max<size_t>(v.size(), 1));
}

// Error of a naive low-precision reference (STYLE rule 8): the exact probabilities
// P_j = exp(s_j - lse_t) rounded to the 16-bit type, times V in double, against the CPU
// output. `keys(h, t, f)` calls f(j) for every attended key. Returns max |o_lowp - o_cpu|.
template <typename Keys>
double naive_lowp_error(const Tensor3& q, const Tensor3& k, const Tensor3& v, const std::vector<float>& out,
                        const std::vector<float>& lse, int64_t q_begin, int64_t q_count, DType dt, Keys keys) {
  const DType rt = dt == DType::f16 ? DType::f16 : DType::bf16;
  const int64_t d = q.head_dim, group = q.n_heads / k.n_heads;
  const double scale = 1.0 / std::sqrt(double(d));
  double err = 0;
  std::vector<double> o(static_cast<size_t>(d));
  for (int64_t h = 0; h < q.n_heads; ++h)
    for (int64_t i = 0; i < q_count; ++i) {
      const int64_t t = q_begin + i, kv = h / group, r = h * q_count + i;
      if (!std::isfinite(lse[r])) continue;
      std::fill(o.begin(), o.end(), 0.0);
      keys(h, t, [&](int64_t j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += double(q.row(h, t)[c]) * k.row(kv, j)[c];
        const double pj = round_to(rt, static_cast<float>(std::exp(s * scale - lse[r])));
        for (int64_t c = 0; c < d; ++c) o[c] += pj * v.row(kv, j)[c];
      });
      for (int64_t c = 0; c < d; ++c) err = std::max(err, std::fabs(o[c] - out[r * d + c]));
    }
  return err;
}

// Keys attended by (h, t) under `sel` (valid, causal, deduplicated blocks).
struct SelKeys {
  const std::vector<int32_t>& sel;
  int64_t n_tokens, block_size;
  int top_k;
  template <typename F>
  void operator()(int64_t h, int64_t t, F f) const {
    const int64_t nb = block_count(n_tokens, block_size);
    std::set<int32_t> blocks;
    for (int j = 0; j < top_k; ++j) {
      const int32_t b = sel[(h * n_tokens + t) * top_k + j];
      if (b >= 0 && b < nb && int64_t{b} * block_size <= t) blocks.insert(b);
    }
    for (int32_t b : blocks)
      for (int64_t j = b * block_size; j < std::min({(b + 1) * block_size, n_tokens, t + 1}); ++j) f(j);
  }
};
struct CausalKeys {
  template <typename F>
  void operator()(int64_t, int64_t t, F f) const { for (int64_t j = 0; j <= t; ++j) f(j); }
};

// ---- pooling + gate top-k ----
void check_routing(const Case& c) {
  INFO(c.str());
  const auto& tol = tolerances::row(c.dtype);
  const Tensor3 q = random_rounded(c.n_q_heads, c.n_tokens, c.head_dim, c.dtype, c.seed);
  Tensor3 k = random_rounded(c.n_kv_heads, c.n_tokens, c.head_dim, c.dtype, c.seed + 7);
  if (c.tied)
    for (int64_t hh = 0; hh < c.n_kv_heads; ++hh)
      for (int64_t t = c.block_size; t < c.n_tokens; ++t)
        for (int64_t i = 0; i < c.head_dim; ++i) k.row(hh, t)[i] = k.row(hh, t % c.block_size)[i];
  const int64_t nb = block_count(c.n_tokens, c.block_size);
  const size_t kbar_n = static_cast<size_t>(c.n_kv_heads * nb * c.head_dim);

  // Pool (mean in the dump dtype + min/max), CPU vs CUDA from the 16-bit buffer.
  std::vector<float> mean(kbar_n), mn(kbar_n), mx(kbar_n);
  BlockPoolParams pp;
  pp.k = k.view();
  pp.block_size = c.block_size;
  pp.pool_dtype = c.dtype;
  pp.mean = mean.data();
  pp.min = mn.data();
  pp.max = mx.data();
  block_pool_cpu(pp);
  DevTensor3 dk = to_device(k), dq = to_device(q);
  DeviceBuffer g_mean = poisoned(kbar_n * 4), g_min = poisoned(kbar_n * 4), g_max = poisoned(kbar_n * 4);
  BlockPoolParams gp = pp;
  gp.k = device_operand(dk, c.dtype);
  gp.mean = g_mean.as<float>();
  gp.min = g_min.as<float>();
  gp.max = g_max.as<float>();
  CUDA_OK(block_pool_cuda(gp));
  const auto gm = download<float>(g_mean, kbar_n), gmn = download<float>(g_min, kbar_n),
             gmx = download<float>(g_max, kbar_n);
  const double ulp = c.dtype == DType::bf16 ? 1.0 / 128 : c.dtype == DType::f16 ? 1.0 / 1024 : 1.2e-7;
  for (size_t i = 0; i < kbar_n; ++i) {
    INFO("pool element " << i);
    REQUIRE(std::fabs(gm[i] - mean[i]) <= tol.pool_ulps * ulp * std::fabs(mean[i]) + 1e-30);
    REQUIRE(gmn[i] == mn[i]);
    REQUIRE(gmx[i] == mx[i]);
  }

  // Gate top-k on the CPU's kbar (so both sides score the same pooled keys).
  const size_t sel_n = static_cast<size_t>(c.n_q_heads * c.n_tokens * c.top_k);
  std::vector<int32_t> sel(sel_n);
  std::vector<float> sel_s(sel_n);
  GateTopkParams tp;
  tp.q = q.view();
  tp.kbar = mean.data();
  tp.n_kv_heads = c.n_kv_heads;
  tp.block_size = c.block_size;
  tp.top_k = c.top_k;
  tp.tie = c.tie;
  tp.gqa = c.gqa;
  tp.selected = sel.data();
  tp.selected_scores = sel_s.data();
  gate_topk_cpu(tp);
  DeviceBuffer d_kbar = upload(mean);
  DeviceBuffer g_sel = poisoned(sel_n * 4), g_sel_s = poisoned(sel_n * 4);
  GateTopkParams tg = tp;
  tg.q = case_operand(dq, c);
  tg.precision = c.precision;
  tg.kbar = d_kbar.as<float>();
  tg.selected = g_sel.as<int32_t>();
  tg.selected_scores = g_sel_s.as<float>();
  CUDA_OK(gate_topk_cuda(tg));
  const auto gsel = download<int32_t>(g_sel, sel_n);
  const auto gss = download<float>(g_sel_s, sel_n);

  // Tie contract: rows whose sets differ must differ only among near-tied blocks.
  std::vector<float> row_scores(static_cast<size_t>(std::max<int64_t>(nb, 1)));
  int64_t differing = 0;
  const double kbar_norm = [&] { double s = 0; for (float x : mean) s += double(x) * x; return std::sqrt(s / std::max<int64_t>(1, c.n_kv_heads * nb)); }();
  for (int64_t h = 0; h < c.n_q_heads; ++h)
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      const size_t off = static_cast<size_t>((h * c.n_tokens + t) * c.top_k);
      const std::set<int32_t> a(sel.begin() + off, sel.begin() + off + c.top_k);
      const std::set<int32_t> b(gsel.begin() + off, gsel.begin() + off + c.top_k);
      for (int j = 0; j < c.top_k; ++j) {  // layout: ascending, then -1 padding
        INFO("h=" << h << " t=" << t << " slot " << j);
        if (j > 0 && gsel[off + j] >= 0) REQUIRE(gsel[off + j] > gsel[off + j - 1]);
        REQUIRE(std::isnan(gss[off + j]) == (gsel[off + j] < 0));
      }
      if (a == b) {
        for (int j = 0; j < c.top_k; ++j)
          if (sel[off + j] >= 0)
            REQUIRE(std::fabs(gss[off + j] - sel_s[off + j]) <= 1e-4 * (1 + std::fabs(sel_s[off + j])));
        continue;
      }
      ++differing;
      REQUIRE(!c.tied);  // exact ties: the tie rule decides, both backends must agree
      REQUIRE(a.size() == b.size());
      gate_scores_tile_cpu(tp, h, t, 1, row_scores.data());
      double q_norm = 0;
      for (int64_t i = 0; i < c.head_dim; ++i) q_norm += double(q.row(h, t)[i]) * q.row(h, t)[i];
      const double eps = tol.gate_tie_rel * std::sqrt(q_norm) * kbar_norm * (c.gqa == GqaMode::shared ? c.n_q_heads / c.n_kv_heads : 1);
      float lo_in = INFINITY, hi_out = -INFINITY;  // weakest CPU pick vs strongest GPU-only pick
      for (int32_t x : a) if (x >= 0 && x < t / c.block_size) lo_in = std::min(lo_in, row_scores[x]);
      for (int32_t x : b) if (x >= 0 && !a.count(x)) hi_out = std::max(hi_out, row_scores[x]);
      INFO("h=" << h << " t=" << t << " cpu weakest " << lo_in << " gpu extra " << hi_out << " eps " << eps);
      REQUIRE(std::fabs(double(lo_in) - hi_out) <= eps);
    }
  WARN("routing " << c.str() << ": rows differing at near-ties: " << differing);
}

// ---- attention ----
struct AttnInputs {
  Tensor3 q, k, v;
  std::vector<int32_t> sel;  // [n_q_heads, n_tokens, top_k]
};

// The case's q, k, v and selections: random valid blocks in arbitrary order, the current
// block always, plus some -1 and out-of-range and duplicate entries (the contract skips /
// dedups them).
AttnInputs attention_inputs(const Case& c) {
  AttnInputs in{random_rounded(c.n_q_heads, c.n_tokens, c.head_dim, c.dtype, c.seed, c.scale),
                random_rounded(c.n_kv_heads, c.n_tokens, c.head_dim, c.dtype, c.seed + 7, c.scale),
                random_rounded(c.n_kv_heads, c.n_tokens, c.head_dim, c.dtype, c.seed + 13),
                {}};
  const int64_t nb = block_count(c.n_tokens, c.block_size);
  in.sel.resize(static_cast<size_t>(c.n_q_heads * c.n_tokens * c.top_k));
  std::mt19937 rng(c.seed + 99);
  for (int64_t h = 0; h < c.n_q_heads; ++h)
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      int32_t* row = in.sel.data() + (h * c.n_tokens + t) * c.top_k;
      const int32_t cur = static_cast<int32_t>(t / c.block_size);
      for (int j = 0; j < c.top_k; ++j) {
        const uint32_t r = rng();
        row[j] = j == 0 ? cur : (r % 13 == 0 ? -1 : r % 17 == 0 ? static_cast<int32_t>(nb + 3)
                                   : r % 19 == 0 ? row[0] : static_cast<int32_t>(r % (cur + 1)));
      }
      std::shuffle(row, row + c.top_k, rng);
    }
  return in;
}

// CUDA output (go, gl) of the rows [q_begin, q_begin + R) against the CPU's (out, lse) of the
// same rows: the case's precision decides the tolerance (tolerances.h).
void compare_attention(const Case& c, const AttnInputs& in, int64_t q_begin, int64_t R, const std::vector<float>& go,
                       const std::vector<float>& gl, const std::vector<float>& out, const std::vector<float>& lse) {
  const auto& tol = tolerances::row(c.dtype);
  const double scale = rms(out);
  double max_err = 0, lse_err = 0;
  for (size_t i = 0; i < out.size(); ++i) max_err = std::max(max_err, double(std::fabs(go[i] - out[i])));
  for (size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, double(std::fabs(gl[i] - lse[i])));
  const bool exact = c.precision == Precision::exact;  // the naive reference only for fast
  const double lowp = exact ? 0.0 : naive_lowp_error(in.q, in.k, in.v, out, lse, q_begin, R, c.dtype,
                                                     SelKeys{in.sel, c.n_tokens, c.block_size, c.top_k});
  const double rel = max_row_rel_err(go, out, c.head_dim);
  INFO("max |o err| " << max_err << " (naive low-precision reference: " << lowp << ", rms " << scale
       << ")  max row-relative o err " << rel << "  max |lse err| " << lse_err);
  REQUIRE(scale > 0);
  if (exact) {
    const auto& ex = tolerances::exact_row(c.dtype);
    REQUIRE(rel <= ex.out_rel);
    REQUIRE(lse_err <= ex.lse_abs);
    return;
  }
  REQUIRE(max_err <= tol.attn_vs_naive * lowp + tol.attn_out_abs * scale);
  REQUIRE(lse_err <= tol.attn_lse_abs);
}

// The case's whole-sequence moba_attention_cuda call under the current tuning: (out, lse).
std::pair<std::vector<float>, std::vector<float>> gpu_attention(const Case& c, const AttnInputs& in) {
  const size_t out_n = static_cast<size_t>(c.n_q_heads * c.n_tokens * c.head_dim);
  const size_t lse_n = static_cast<size_t>(c.n_q_heads * c.n_tokens);
  DevTensor3 dq = to_device(in.q), dk = to_device(in.k), dv = to_device(in.v);
  DeviceBuffer d_sel = upload(in.sel), g_out = poisoned(out_n * 4), g_lse = poisoned(lse_n * 4);
  MobaAttentionParams ag;
  // raw 16-bit path; f32 cases exercise the conversion
  ag.q = case_operand(dq, c); ag.k = case_operand(dk, c); ag.v = case_operand(dv, c);
  ag.precision = c.precision;
  ag.selected = d_sel.as<int32_t>();
  ag.top_k = c.top_k;
  ag.block_size = c.block_size;
  ag.out = g_out.as<float>();
  ag.lse = g_lse.as<float>();
  CUDA_OK(moba_attention_cuda(ag));
  return {download<float>(g_out, out_n), download<float>(g_lse, lse_n)};
}

// Puts the default CUDA tuning back when a test case that sets its own ends (passed or not).
struct RestoreTuning {
  RestoreTuning() = default;
  RestoreTuning(const RestoreTuning&) = delete;
  RestoreTuning& operator=(const RestoreTuning&) = delete;
  ~RestoreTuning() { set_cuda_tuning(CudaTuning{}); }
};

// f(c) for every case under fast and under exact precision (the case named in failures).
template <size_t N, typename F>
void for_each_precision(const Case (&cases)[N], F&& f) {
  for (const Case& c0 : cases)
    for (const Precision pr : {Precision::fast, Precision::exact}) {
      Case c = c0;
      c.precision = pr;
      INFO(c.str());
      f(c);
    }
}

// The case's CUDA call under the current tuning against the CPU, on inputs `in`.
void check_attention_on(const Case& c, const AttnInputs& in) {
  INFO(c.str());
  const size_t out_n = static_cast<size_t>(c.n_q_heads * c.n_tokens * c.head_dim);
  const size_t lse_n = static_cast<size_t>(c.n_q_heads * c.n_tokens);
  std::vector<float> out(out_n), lse(lse_n);
  MobaAttentionParams ap;
  ap.q = in.q.view();
  ap.k = in.k.view();
  ap.v = in.v.view();
  ap.selected = in.sel.data();
  ap.top_k = c.top_k;
  ap.block_size = c.block_size;
  ap.out = out.data();
  ap.lse = lse.data();
  moba_attention_cpu(ap);
  const auto [go, gl] = gpu_attention(c, in);
  compare_attention(c, in, 0, c.n_tokens, go, gl, out, lse);
}
void check_attention(const Case& c) { check_attention_on(c, attention_inputs(c)); }

// Query windows [q_begin, q_begin + q_count) (-1: to the end) of one case on the CUDA path the
// current tuning picks: each against the CPU's window (the tolerances of check_attention), and
// bit for bit against the same rows of a full CUDA call.
void check_attention_windows(const Case& c, const std::vector<std::pair<int64_t, int64_t>>& windows) {
  INFO(c.str());
  const AttnInputs in = attention_inputs(c);
  const int64_t T = c.n_tokens, Hq = c.n_q_heads, d = c.head_dim;
  DevTensor3 dq = to_device(in.q), dk = to_device(in.k), dv = to_device(in.v);
  MobaAttentionParams ag;
  ag.q = case_operand(dq, c); ag.k = case_operand(dk, c); ag.v = case_operand(dv, c);
  ag.precision = c.precision;
  ag.top_k = c.top_k;
  ag.block_size = c.block_size;
  // The full call.
  DeviceBuffer d_sel = upload(in.sel), f_out = poisoned(size_t(Hq * T * d) * 4), f_lse = poisoned(size_t(Hq * T) * 4);
  MobaAttentionParams af = ag;
  af.selected = d_sel.as<int32_t>();
  af.out = f_out.as<float>();
  af.lse = f_lse.as<float>();
  CUDA_OK(moba_attention_cuda(af));
  const auto full_o = download<float>(f_out, size_t(Hq * T * d)), full_l = download<float>(f_lse, size_t(Hq * T));
  for (const auto& [q_begin, q_count] : windows) {
    const int64_t R = q_count < 0 ? T - q_begin : q_count;
    INFO("window [" << q_begin << ", " << q_begin + R << ") q_count " << q_count);
    std::vector<int32_t> wsel(static_cast<size_t>(Hq * R * c.top_k));  // the window's rows of sel
    for (int64_t h = 0; h < Hq; ++h)
      std::copy(in.sel.begin() + (h * T + q_begin) * c.top_k, in.sel.begin() + (h * T + q_begin + R) * c.top_k,
                wsel.begin() + h * R * c.top_k);
    const size_t out_n = static_cast<size_t>(Hq * R * d), lse_n = static_cast<size_t>(Hq * R);
    std::vector<float> out(out_n), lse(lse_n);
    MobaAttentionParams ap;
    ap.q = in.q.view();
    ap.k = in.k.view();
    ap.v = in.v.view();
    ap.selected = wsel.data();
    ap.top_k = c.top_k;
    ap.block_size = c.block_size;
    ap.out = out.data();
    ap.lse = lse.data();
    ap.q_begin = q_begin;
    ap.q_count = q_count;
    REQUIRE(moba_attention_can_run(ap) == nullptr);
    moba_attention_cpu(ap);
    DeviceBuffer d_wsel = upload(wsel), g_out = poisoned(out_n * 4), g_lse = poisoned(lse_n * 4);
    MobaAttentionParams aw = ag;
    aw.selected = d_wsel.as<int32_t>();
    aw.out = g_out.as<float>();
    aw.lse = g_lse.as<float>();
    aw.q_begin = q_begin;
    aw.q_count = q_count;
    CUDA_OK(moba_attention_cuda(aw));
    const auto go = download<float>(g_out, out_n), gl = download<float>(g_lse, lse_n);
    compare_attention(c, in, q_begin, R, go, gl, out, lse);
    int64_t bad_h = -1, bad_t = -1;  // the first row that differs from the full call's
    for (int64_t h = 0; h < Hq && bad_h < 0; ++h)
      for (int64_t i = 0; i < R; ++i) {
        const int64_t t = q_begin + i;
        if (gl[size_t(h * R + i)] != full_l[size_t(h * T + t)] ||
            !std::equal(go.begin() + (h * R + i) * d, go.begin() + (h * R + i + 1) * d,
                        full_o.begin() + (h * T + t) * d)) {
          bad_h = h, bad_t = t;
          break;
        }
      }
    INFO("h=" << bad_h << " t=" << bad_t << ": the window's row differs from the full call's");
    REQUIRE(bad_h < 0);
  }
}

// ---- dense pass ----
// Block sizes {c.block_size, 16, 77} unless `sizes` is given (up to 8). 16, 32 and multiples
// of 64 are folded in the CUDA kernel's first pass, the others in its second.
void check_dense(const Case& c, int64_t q_begin, int64_t q_count, int top_n, std::vector<int64_t> sizes = {}) {
  if (sizes.empty()) sizes = {c.block_size, 16, 64 + 13};
  const int n_sizes = static_cast<int>(sizes.size());
  INFO(c.str() << " query range [" << q_begin << ", " << q_begin + q_count << ") top_n=" << top_n
                << " block sizes " << n_sizes);
  const auto& tol = tolerances::row(c.dtype);
  const Tensor3 q = random_rounded(c.n_q_heads, c.n_tokens, c.head_dim, c.dtype, c.seed, c.scale);
  Tensor3 k = random_rounded(c.n_kv_heads, c.n_tokens, c.head_dim, c.dtype, c.seed + 7, c.scale);
  if (c.tied)  // key row t = key row t % 16: every score recurs exactly, the tie rule ranks them
    for (int64_t hh = 0; hh < c.n_kv_heads; ++hh)
      for (int64_t t = 16; t < c.n_tokens; ++t)
        for (int64_t i = 0; i < c.head_dim; ++i) k.row(hh, t)[i] = k.row(hh, t % 16)[i];
  const Tensor3 v = random_rounded(c.n_kv_heads, c.n_tokens, c.head_dim, c.dtype, c.seed + 13);
  DensePassParams p;
  p.q = q.view(); p.k = k.view(); p.v = v.view();
  p.query_begin = q_begin;
  p.query_count = q_count;
  const size_t lse_n = size_t(c.n_q_heads * q_count), out_n = lse_n * c.head_dim;
  std::vector<float> lse(lse_n), out(out_n), tprob(lse_n * top_n);
  std::vector<int32_t> tidx(lse_n * top_n);
  std::vector<std::vector<float>> mass(n_sizes);
  p.lse = lse.data();
  p.out = out.data();
  p.n_block_sizes = n_sizes;
  for (int i = 0; i < n_sizes; ++i) {
    p.block_sizes[i] = sizes[i];
    mass[i].resize(lse_n * block_count(c.n_tokens, sizes[i]));
    p.block_mass[i] = mass[i].data();
  }
  p.top_n = top_n;
  p.top_index = tidx.data();
  p.top_prob = tprob.data();
  dense_pass_cpu(p);

  DevTensor3 dq = to_device(q), dk = to_device(k), dv = to_device(v);
  DeviceBuffer g_lse = poisoned(lse_n * 4), g_out = poisoned(out_n * 4);
  DeviceBuffer g_ti = poisoned(lse_n * top_n * 4), g_tp = poisoned(lse_n * top_n * 4);
  std::vector<DeviceBuffer> g_mass;
  DensePassParams g = p;
  g.q = case_operand(dq, c); g.k = case_operand(dk, c); g.v = case_operand(dv, c);
  g.precision = c.precision;
  g.lse = g_lse.as<float>();
  g.out = g_out.as<float>();
  for (int i = 0; i < n_sizes; ++i) {
    g_mass.push_back(poisoned(mass[i].size() * 4));
    g.block_mass[i] = g_mass.back().as<float>();
  }
  g.top_index = g_ti.as<int32_t>();
  g.top_prob = g_tp.as<float>();
  CUDA_OK(dense_pass_cuda(g));
  const auto gl = download<float>(g_lse, lse_n), go = download<float>(g_out, out_n);
  double lse_err = 0, out_err = 0, mass_err = 0;
  for (size_t i = 0; i < lse_n; ++i) lse_err = std::max(lse_err, double(std::fabs(gl[i] - lse[i])));
  for (size_t i = 0; i < out_n; ++i) out_err = std::max(out_err, double(std::fabs(go[i] - out[i])));
  for (int i = 0; i < n_sizes; ++i) {
    const auto gm = download<float>(g_mass[i], mass[i].size());
    for (size_t j = 0; j < gm.size(); ++j) mass_err = std::max(mass_err, double(std::fabs(gm[j] - mass[i][j])));
  }
  const double lowp = naive_lowp_error(q, k, v, out, lse, q_begin, q_count, c.dtype, CausalKeys{});
  const double rel = max_row_rel_err(go, out, c.head_dim);
  INFO("lse err " << lse_err << " out err " << out_err << " (naive low-precision " << lowp << ") row-relative "
                  << rel << " mass err " << mass_err);
  const bool exact = c.precision == Precision::exact;
  const double mass_tol = exact ? tolerances::exact_row(c.dtype).mass_abs : tol.mass_abs * 10;
  if (exact) {
    REQUIRE(rel <= tolerances::exact_row(c.dtype).out_rel);
    REQUIRE(lse_err <= tolerances::exact_row(c.dtype).lse_abs);
  } else {
    REQUIRE(lse_err <= tol.attn_lse_abs);
    REQUIRE(out_err <= tol.attn_vs_naive * lowp + tol.attn_out_abs * rms(out));
  }
  REQUIRE(mass_err <= mass_tol);
  if (top_n > 0) {
    const auto gi = download<int32_t>(g_ti, tidx.size());
    const auto gp = download<float>(g_tp, tprob.size());
    for (size_t r = 0; r < lse_n; ++r) {
      const std::set<int32_t> a(tidx.begin() + r * top_n, tidx.begin() + (r + 1) * top_n);
      const std::set<int32_t> b(gi.begin() + r * top_n, gi.begin() + (r + 1) * top_n);
      if (c.tied) {  // exact ties: a later copy of a listed key's row ranks above it (ties to
        // the larger key index). Checked on the GPU's list alone: the CPU's scores of two copies
        // may differ in the last bit, so its list is not the reference here.
        const int64_t t = q_begin + static_cast<int64_t>(r) % q_count;
        const auto at = [&](int64_t j) {
          for (int n = 0; n < top_n; ++n)
            if (gi[r * top_n + n] == j) return n;
          return top_n;
        };
        for (int n = 0; n < top_n && gi[r * top_n + n] >= 0; ++n)
          for (int64_t j2 = gi[r * top_n + n] + 16; j2 <= t; j2 += 16) {
            INFO("row " << r << " (t = " << t << "): key " << gi[r * top_n + n] << " at " << n << ", its copy " << j2);
            REQUIRE(at(j2) < n);
          }
      }
      if (a != b) {  // near-tie at the boundary: the n-th probabilities must agree
        INFO("row " << r << " top-n sets differ");
        REQUIRE(std::fabs(tprob[r * top_n + top_n - 1] - gp[r * top_n + top_n - 1]) <= mass_tol);
      }
      for (int n = 0; n < top_n; ++n) REQUIRE(std::fabs(gp[r * top_n + n] - tprob[r * top_n + n]) <= mass_tol);
    }
  }
}

const Case kCases[] = {
    // T, Hq, Hkv, d, B, k, dtype
    {1000, 2, 1, 64, 64, 3, DType::bf16},            // ragged last block, GQA 2:1
    {257, 2, 2, 48, 16, 4, DType::f16},              // head dim 48 (padded), B = 16
    {300, 1, 1, 128, 1, 5, DType::bf16},             // B = 1
    {513, 4, 2, 128, 128, 8, DType::bf16},           // k >= n_blocks (dense), GQA
    {777, 2, 1, 64, 100, 1, DType::f16},             // k = 1, B not a power of two
    {2048, 2, 2, 128, 16, 64, DType::bf16},          // B = 16, k = 64
    {1, 1, 1, 64, 64, 2, DType::bf16},               // T = 1
    {1023, 4, 1, 64, 32, 6, DType::f32},             // fp32 view (converted to bf16), GQA 4:1
    {640, 4, 2, 128, 64, 4, DType::bf16, TieRule::older, GqaMode::shared},
};

}  // namespace

TEST_CASE("gpu: device present", "[gpu][small]") {
  REQUIRE(cuda_device_available());
  WARN("device: " << cuda_device_name());
}

TEST_CASE("gpu: pool + gate top-k match the CPU (sets, tie contract)", "[gpu]") {
  for (const Case& c : kCases) check_routing(c);
  Case big{16384, 2, 1, 128, 16, 64, DType::bf16};
  check_routing(big);
  // bf16 per-head routing runs the tensor-core kernel: both tie rules, per-thread lists
  // (top_k - 1 <= 8, <= 16) and warp lists (<= 32, <= 64, <= 128; one-at-a-time and batch
  // merges), exact ties.
  const Case extra[] = {
      {900, 2, 2, 128, 8, 9, DType::bf16, TieRule::older},
      {2048, 2, 1, 128, 16, 16, DType::bf16},
      {1000, 2, 2, 64, 8, 6, DType::bf16, TieRule::older, GqaMode::per_head, 5, true},
      {1000, 2, 2, 128, 8, 17, DType::bf16, TieRule::recent, GqaMode::per_head, 6, true},
      {1000, 2, 2, 64, 8, 30, DType::bf16, TieRule::recent, GqaMode::per_head, 7, true},
      {1000, 2, 2, 128, 4, 100, DType::bf16, TieRule::older, GqaMode::per_head, 8, true},
      {700, 2, 1, 128, 8, 20, DType::bf16, TieRule::older},
      {1500, 2, 2, 128, 4, 40, DType::bf16, TieRule::older},
      {3000, 1, 1, 64, 16, 129, DType::bf16},
      {1000, 2, 2, 64, 8, 12, DType::bf16, TieRule::recent, GqaMode::per_head, 3, true},
      {1000, 2, 2, 64, 8, 50, DType::bf16, TieRule::older, GqaMode::per_head, 4, true},
  };
  for (const Case& c : extra) check_routing(c);
}

TEST_CASE("gpu: moba attention matches the CPU", "[gpu]") {
  for (const Case& c : kCases) check_attention(c);
}

TEST_CASE("gpu: dense pass matches the CPU", "[gpu]") {
  for (const Case& c : kCases) {
    check_dense(c, 0, c.n_tokens, 10);
    if (c.n_tokens > 200) check_dense(c, c.n_tokens / 3, c.n_tokens / 2, 3);
  }
}

TEST_CASE("gpu: dense pass, block masses folded in the first pass only", "[gpu]") {
  // Only 16, 32 and multiples of 64: the CUDA kernel skips its second pass (top-n is ranked
  // in the first). Ragged ends, a block longer than the sequence, unaligned query ranges, GQA,
  // d 48/64/128; top-n of 1, of 10, and of 64 (early rows have fewer keys: -1 after them).
  const std::vector<int64_t> fast = {16, 32, 64, 128, 192, 4096};
  const Case cases[] = {
      {1000, 2, 1, 64, 64, 3, DType::bf16},
      {2500, 2, 2, 128, 128, 8, DType::bf16},
      {333, 4, 2, 48, 16, 4, DType::f16},
      {1023, 2, 1, 128, 32, 6, DType::f32},
  };
  for (const Case& c : cases) {
    check_dense(c, 0, c.n_tokens, 0, fast);
    check_dense(c, c.n_tokens / 3 + 1, c.n_tokens / 2, 0, fast);
    check_dense(c, 0, c.n_tokens, 10, fast);
    check_dense(c, c.n_tokens / 3 + 1, c.n_tokens / 2, 1, {32});
    check_dense(c, 3, c.n_tokens - 3, 64, {16, 64});
    check_dense(c, 5, c.n_tokens - 5, 2, {16, 77, 128});  // both passes, mixed sizes
  }
  // Exactly tied scores (key rows repeat every 16): within the CPU's tolerance as always, and
  // copies of one key row ranked larger index first, for lists of 1, 10, 16 and 64.
  Case tied{1500, 2, 1, 128, 64, 4, DType::bf16};
  tied.tied = true;
  for (const int n : {1, 10, 16, 64}) check_dense(tied, 0, tied.n_tokens, n, fast);
  tied.head_dim = 64, tied.dtype = DType::f16, tied.n_tokens = 700;
  check_dense(tied, 100, 500, 16, {16, 32});
}

// Every CudaTuning knob changes speed only: the non-default kernels (scalar gate on bf16,
// warp lists for small k, fixed attention rows, the register-capped attention, dense pass 2
// for every size, gather CTAs of one warp or of four) still meet the CPU contract.
TEST_CASE("gpu: tuning variants match the CPU", "[gpu]") {
  RestoreTuning restore;
  const char* specs[] = {"gate=scalar", "gate=warp_list", "attn_rows=256", "attn_min_blocks3=1",
                         "dense_all_pass2=1", "attn_path=tile,tile_wgmma=0",
                         "attn_path=tile,tile_wgmma=0,tile_min_blocks3=1",
                         "attn_path=gather,attn_tile_cost=0.01", "attn_warp_ctas=1", "attn_warp_ctas=0",
                         "attn_path=gather,attn_warp_ctas=1,attn_rows=64", "attn_rounds=0",
                         "attn_path=tile,tile_wgmma=1"};
  const Case routing[] = {
      {1000, 2, 2, 128, 8, 9, DType::bf16, TieRule::older},
      {1000, 2, 2, 64, 8, 6, DType::bf16, TieRule::recent, GqaMode::per_head, 5},
      {2048, 2, 1, 128, 16, 16, DType::bf16},
  };
  const Case attn{1500, 4, 2, 128, 64, 6, DType::bf16};
  const Case dense{1023, 2, 1, 128, 32, 6, DType::bf16};
  for (const char* spec : specs) {
    INFO("tuning " << spec);
    CudaTuning t;
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    for (const Case& c : routing) check_routing(c);
    check_attention(attn);
    check_dense(dense, 0, dense.n_tokens, 0, {16, 32, 64, 128});
    check_dense(dense, 100, 700, 3, {16, 77});
  }
}

TEST_CASE("gpu: small case for compute-sanitizer", "[gpu][small]") {
  RestoreTuning restore;
  const Case c{200, 2, 1, 64, 32, 3, DType::bf16};
  check_routing(c);
  check_attention(c);
  check_dense(c, 10, 150, 4);
  check_dense(c, 3, 190, 0, {16, 32, 64, 128});
  // Query windows on both attention paths (window indexing under memcheck).
  for (const char* spec : {"attn_path=gather", "attn_path=tile,tile_wgmma=0", "attn_path=tile,tile_wgmma=1",
                           "attn_path=gather,attn_warp_ctas=1"}) {
    INFO("tuning " << spec);
    CudaTuning t;
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    check_attention_windows(c, {{37, 100}, {199, 1}, {130, -1}});
  }
  // The tile path's wgmma engine (head dim 128): a window, a ragged tile, exact numerics.
  {
    CudaTuning t;
    REQUIRE(parse_cuda_tuning("attn_path=tile,tile_wgmma=1", &t) == nullptr);
    set_cuda_tuning(t);
    Case w{300, 2, 1, 128, 32, 4, DType::bf16};
    check_attention(w);
    check_attention_windows(w, {{37, 100}, {130, -1}});
    w.precision = Precision::exact;
    check_attention(w);
  }
  // The gather's 16- and 32-key steps (blocks of 16 / 32 keys) with split P, head dim 128, in
  // both CTA shapes, and a window.
  for (const char* spec : {"attn_path=gather", "attn_path=gather,attn_warp_ctas=1"}) {
    INFO("tuning " << spec);
    CudaTuning t;
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    for (const int64_t B : {16, 32}) {
      Case s{301, 2, 1, 128, B, 5, DType::bf16};
      s.precision = Precision::exact;
      check_attention(s);
      check_attention_windows(s, {{37, 100}, {130, -1}});
    }
  }
  // Long blocks in rounds (the default) or not, multi-round lists in both CTA shapes, exact
  // numerics too (fp16x3: 32-key steps).
  for (const char* spec : {"attn_path=gather,attn_rows=512", "attn_path=gather,attn_rows=512,attn_warp_ctas=1",
                           "attn_path=gather,attn_rows=512,attn_rounds=0"}) {
    INFO("tuning " << spec);
    CudaTuning t;
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    Case x{600, 2, 1, 64, 200, 3, DType::bf16};
    check_attention(x);
    x.dtype = DType::f32;
    x.precision = Precision::exact;
    check_attention(x);
  }
  // The wgmma rounds (head dim 128, exact bf16: split P), multi-round lists and a window.
  {
    CudaTuning t;
    REQUIRE(parse_cuda_tuning("attn_path=gather,attn_rows=512,attn_wgmma=1", &t) == nullptr);
    set_cuda_tuning(t);
    Case x{600, 2, 1, 128, 200, 3, DType::bf16};
    x.precision = Precision::exact;
    check_attention(x);
    check_attention_windows(x, {{37, 300}});
    Case y{400, 2, 1, 128, 64, 5, DType::bf16};  // one piece a block, staged once for its rounds
    check_attention(y);
    check_attention_windows(y, {{37, 300}});
  }
}

TEST_CASE("gpu: kconv matches the CPU", "[gpu][small]") {
  const Tensor3 k = random_rounded(2, 301, 48, DType::f32, 5);
  for (int w : {3, 5}) {
    std::vector<float> out(k.data.size()), wts(static_cast<size_t>(2 * w * 48));
    std::mt19937 rng(w);
    std::normal_distribution<float> nd(0.f, 0.5f);
    for (float& x : wts) x = nd(rng);
    KconvParams p;
    p.k = k.view();
    p.width = w;
    p.weights = wts.data();
    p.weights_per_head = true;
    p.out = out.data();
    kconv_cpu(p);
    DevTensor3 dk = to_device(k);
    DeviceBuffer dw = upload(wts), g = poisoned(out.size() * 4);
    KconvParams gp = p;
    gp.k = dk.view;
    gp.weights = dw.as<float>();
    gp.out = g.as<float>();
    CUDA_OK(kconv_cuda(gp));
    const auto go = download<float>(g, out.size());
    for (size_t i = 0; i < out.size(); ++i) REQUIRE(std::fabs(go[i] - out[i]) <= 1e-6 * (1 + std::fabs(out[i])));
  }
}

// Index math past 2^31 elements: head 1 of q/k/v starts 2^31 + 2^20 elements into its buffer.
TEST_CASE("gpu: index math past 2^31 elements", "[gpu][long]") {
  const Case c{4096, 2, 2, 128, 128, 8, DType::bf16};
  INFO(c.str());
  const Tensor3 q = random_rounded(2, c.n_tokens, 128, c.dtype, 3);
  const Tensor3 k = random_rounded(2, c.n_tokens, 128, c.dtype, 4);
  const Tensor3 v = random_rounded(2, c.n_tokens, 128, c.dtype, 5);
  const int64_t head_stride = (int64_t{1} << 31) + (int64_t{1} << 20);
  auto big = [&](const Tensor3& x) {
    DeviceBuffer b(static_cast<size_t>(head_stride + c.n_tokens * 128) * 2);
    REQUIRE(b.error() == nullptr);
    std::vector<uint16_t> raw(static_cast<size_t>(c.n_tokens * 128));
    for (int64_t h = 0; h < 2; ++h) {
      for (size_t i = 0; i < raw.size(); ++i) raw[i] = f32_to_bf16(x.data[h * raw.size() + i]);
      CUDA_OK(cuda_copy_to_device(static_cast<uint16_t*>(b.get()) + h * head_stride, raw.data(), raw.size() * 2));
    }
    return b;
  };
  DeviceBuffer bq = big(q), bk = big(k), bv = big(v);
  TensorView view{nullptr, 2, c.n_tokens, 128, head_stride, 128, 1};
  // Routing on the CPU, attention on both.
  std::vector<float> kbar(static_cast<size_t>(2 * 32 * 128));
  BlockPoolParams pp;
  pp.k = k.view(); pp.block_size = 128; pp.pool_dtype = DType::bf16; pp.mean = kbar.data();
  block_pool_cpu(pp);
  std::vector<int32_t> sel(static_cast<size_t>(2 * c.n_tokens * 8));
  GateTopkParams tp;
  tp.q = q.view(); tp.kbar = kbar.data(); tp.n_kv_heads = 2; tp.block_size = 128; tp.top_k = 8;
  tp.selected = sel.data();
  gate_topk_cpu(tp);
  std::vector<float> out(q.data.size()), lse(static_cast<size_t>(2 * c.n_tokens));
  MobaAttentionParams ap;
  ap.q = q.view(); ap.k = k.view(); ap.v = v.view(); ap.selected = sel.data(); ap.top_k = 8;
  ap.block_size = 128; ap.out = out.data(); ap.lse = lse.data();
  moba_attention_cpu(ap);
  DeviceBuffer d_sel = upload(sel), g_out = poisoned(out.size() * 4), g_lse = poisoned(lse.size() * 4);
  MobaAttentionParams ag = ap;
  ag.q = Operand::device16(view, bq.as<uint16_t>(), DType::bf16);
  ag.k = Operand::device16(view, bk.as<uint16_t>(), DType::bf16);
  ag.v = Operand::device16(view, bv.as<uint16_t>(), DType::bf16);
  ag.precision = Precision::fast;  // the benchmarked path (Precision::exact is covered above)
  ag.selected = d_sel.as<int32_t>();
  ag.out = g_out.as<float>();
  ag.lse = g_lse.as<float>();
  CUDA_OK(moba_attention_cuda(ag));
  const auto go = download<float>(g_out, out.size());
  double err = 0;
  for (size_t i = 0; i < out.size(); ++i) err = std::max(err, double(std::fabs(go[i] - out[i])));
  const double lowp = naive_lowp_error(q, k, v, out, lse, 0, c.n_tokens, DType::bf16, SelKeys{sel, c.n_tokens, 128, 8});
  INFO("max |o err| " << err << " naive low-precision " << lowp);
  REQUIRE(err <= tolerances::kBF16.attn_vs_naive * lowp + tolerances::kBF16.attn_out_abs * rms(out));
}

// ---- exact numerics (issue 10 item 2; tolerances::exact_row) ----

namespace {

Case exact_case(Case c, bool typed_view, float scale = 1.0f) {
  c.precision = Precision::exact;
  c.typed_view = typed_view;
  c.scale = scale;
  return c;
}

const Case kExactCases[] = {
    // T, Hq, Hkv, d, B, k, dtype
    {1000, 4, 2, 8, 64, 3, DType::f16},      // head dim 8 (padded to 64), GQA 2:1, ragged last block
    {777, 2, 2, 48, 32, 4, DType::f16},      // head dim 48, ragged
    {1024, 2, 1, 64, 64, 1, DType::f16},     // k = 1, GQA
    {513, 2, 2, 128, 128, 8, DType::f16},    // head dim 128, k >= n_blocks (dense), ragged
    {1000, 2, 1, 64, 64, 3, DType::bf16},    // GQA, ragged
    {300, 2, 2, 128, 16, 40, DType::bf16},   // k >= n_blocks
    {1023, 4, 1, 64, 32, 6, DType::f32},     // fp16x3, GQA 4:1, ragged
    {600, 2, 2, 128, 100, 4, DType::f32},    // B not a power of two
    {257, 2, 1, 8, 16, 40, DType::f32},      // head dim 8, k >= n_blocks
    {700, 2, 2, 128, 64, 1, DType::f32},     // k = 1
    {1, 1, 1, 64, 64, 2, DType::f16},        // T = 1
    {1999, 2, 1, 128, 16, 24, DType::bf16},  // B = 16: the gather's 16-key steps, split P, ragged
    {1501, 2, 2, 128, 32, 10, DType::bf16},  // B = 32: 32-key steps, split P, ragged
    {999, 2, 1, 64, 16, 20, DType::f16},     // B = 16, head dim 64
};

}  // namespace

TEST_CASE("gpu: exact numerics, moba attention vs the CPU", "[gpu][exact]") {
  for (const Case& c : kExactCases) {
    check_attention(exact_case(c, true));   // route's path: fp32 views typed with the dump dtype
    if (c.dtype != DType::f32) check_attention(exact_case(c, false));  // raw 16-bit operands
  }
  // Sharper rows (inputs x2.5: scores ~6x larger, errors scale with them).
  check_attention(exact_case({1000, 2, 1, 64, 64, 4, DType::f32}, true, 2.5f));
  check_attention(exact_case({1000, 2, 1, 8, 64, 4, DType::f16}, true, 2.5f));
  check_attention(exact_case({1000, 2, 1, 128, 64, 4, DType::bf16}, true, 2.5f));
}

// The tile path of moba_attention_cuda (moba_attention_tile.cuh), forced on every case where
// it applies (16-bit numerics, B a multiple of 16; the others run the gather path), fast and
// exact, with the mma.sync engine and the wgmma one (head dim 128 on compute capability 9.0;
// the mma.sync engine elsewhere); then dense selections (k B near T) that the automatic choice
// sends to it.
TEST_CASE("gpu: moba attention tile path vs the CPU", "[gpu][exact]") {
  RestoreTuning restore;
  CudaTuning t;
  for (const char* spec : {"attn_path=tile,tile_wgmma=0", "attn_path=tile,tile_wgmma=1"}) {
    INFO("tuning " << spec);
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    for (const Case& c : kCases) check_attention(c);
    for (const Case& c : kExactCases) {
      check_attention(exact_case(c, true));
      if (c.dtype != DType::f32) check_attention(exact_case(c, false));
    }
    check_attention(exact_case({1000, 2, 1, 128, 64, 4, DType::bf16}, true, 2.5f));
    check_attention(exact_case({4100, 4, 1, 128, 16, 200, DType::bf16}, false));  // ragged, GQA 4:1, dense
    check_attention(exact_case({2000, 2, 2, 48, 48, 30, DType::f16}, false));      // B = 48: segments never straddle
    check_attention(exact_case({1500, 2, 1, 96, 32, 12, DType::bf16}, false));     // head dim 96 of the 128 kernels
  }
  t = CudaTuning{};
  // head dim 128 at 3 CTAs per SM (the mma.sync kernel)
  REQUIRE(parse_cuda_tuning("attn_path=tile,tile_wgmma=0,tile_min_blocks3=1", &t) == nullptr);
  set_cuda_tuning(t);
  check_attention(exact_case({4100, 4, 1, 128, 16, 200, DType::bf16}, false));
  check_attention(exact_case({1000, 2, 2, 128, 64, 6, DType::f16}, false));
  check_attention({1500, 4, 2, 128, 64, 6, DType::bf16});
  set_cuda_tuning(CudaTuning{});
  check_attention(exact_case({3000, 2, 1, 128, 32, 80, DType::bf16}, false));    // automatic: tile
  check_attention(exact_case({3000, 2, 1, 64, 16, 150, DType::f16}, false));     // automatic: tile
}

// Runs f under each attention path: gather forced, tile forced (where it applies; else the
// gather path runs), and the automatic choice; the default tuning is restored after.
template <typename F>
void for_each_attn_path(F&& f) {
  RestoreTuning restore;
  for (const char* spec : {"attn_path=gather", "attn_path=tile,tile_wgmma=0", "attn_path=tile,tile_wgmma=1", ""}) {
    INFO("tuning '" << spec << "'");
    CudaTuning t;
    REQUIRE(parse_cuda_tuning(spec, &t) == nullptr);
    set_cuda_tuning(t);
    f();
  }
}

// Query windows (MobaAttentionParams::q_begin / q_count) on the gather path, the tile path
// (forced; where it does not apply — B not a multiple of 16, fp16x3 — the gather path runs) and
// the automatic choice: windows that start and end off the 64-row tiles and mid-block, one
// row, the end of a ragged last block, fast and exact numerics, raw 16-bit operands and fp32
// views converted on the device. Each window meets the CPU's window and equals the full
// call's rows bit for bit.
TEST_CASE("gpu: moba attention on query windows", "[gpu][window]") {
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {1000, 2, 1, 64, 64, 3, DType::bf16},   // ragged last block, GQA 2:1
      {257, 2, 2, 48, 16, 4, DType::f16},     // head dim 48, B = 16, ragged
      {777, 2, 1, 64, 100, 1, DType::f16},    // k = 1, B not a multiple of 16 (gather only)
      {513, 4, 2, 128, 128, 8, DType::bf16},  // k >= n_blocks, GQA 2:1, head dim 128
      {1023, 4, 1, 64, 32, 6, DType::f32},    // fp32 views: bf16 (fast), fp16x3 (exact, gather only)
      {700, 2, 2, 128, 16, 50, DType::bf16},  // dense (k B > T): the automatic choice is tile
  };
  for_each_attn_path([&] {
    for (const Case& c : cases) {
      const int64_t T = c.n_tokens;
      const std::vector<std::pair<int64_t, int64_t>> windows = {
          {37, 300 < T - 37 ? 300 : T - 37},  // off the 64-row tiles, mid-block at both ends
          {0, 70},                            // from the start, a partial last tile
          {T - 1, 1},                         // the last row alone
          {T / 2 + 5, -1},                    // to the end (ragged last block)
      };
      for (const Precision pr : {Precision::fast, Precision::exact}) {
        Case w = c;
        w.precision = pr;
        check_attention_windows(w, windows);
      }
      if (c.dtype != DType::f32) check_attention_windows(exact_case(c, true), windows);  // typed fp32 views
    }
  });
  // Through the host staging (kernels/dispatch.h): the window's selections in, its rows out.
  const Case c = exact_case({600, 2, 1, 64, 64, 3, DType::bf16}, true);
  INFO(c.str() << " from host, window [100, 400)");
  const AttnInputs in = attention_inputs(c);
  std::vector<int32_t> wsel(2 * 300 * 3);
  for (int64_t h = 0; h < 2; ++h)
    std::copy(in.sel.begin() + (h * 600 + 100) * 3, in.sel.begin() + (h * 600 + 400) * 3, wsel.begin() + h * 300 * 3);
  std::vector<float> out(2 * 300 * 64), lse(2 * 300), g_out(out.size()), g_lse(lse.size());
  MobaAttentionParams ap;
  ap.q = Operand::of_dtype(in.q.view(), c.dtype);
  ap.k = Operand::of_dtype(in.k.view(), c.dtype);
  ap.v = Operand::of_dtype(in.v.view(), c.dtype);
  ap.selected = wsel.data();
  ap.top_k = 3;
  ap.block_size = 64;
  ap.out = out.data();
  ap.lse = lse.data();
  ap.q_begin = 100;
  ap.q_count = 300;
  moba_attention_cpu(ap);
  MobaAttentionParams ag = ap;
  ag.precision = Precision::exact;
  ag.out = g_out.data();
  ag.lse = g_lse.data();
  CUDA_OK(moba_attention_cuda_from_host(ag));
  compare_attention(c, in, 100, 300, g_out, g_lse, out, lse);
}

// moba_attention_bands_cuda: each case's selection rows cut into bands of consecutive entries
// (widths 1..3, more bands than one gather pass takes, a row's bands may repeat a block), over
// a query window: every band's rows equal, bit for bit, a moba_attention_cuda call with that
// band's selections alone, on the gather path, the tile path (forced) and the automatic choice.
void check_attention_bands(const Case& c, int64_t q_begin, int64_t R) {
  INFO(c.str() << " window [" << q_begin << ", " << q_begin + R << ")");
  const AttnInputs in = attention_inputs(c);
  const int64_t T = c.n_tokens, Hq = c.n_q_heads, d = c.head_dim;
  std::vector<int> widths;  // the bands' widths, summing to top_k
  for (int used = 0, w = 1; used < c.top_k; used += widths.back(), w = w % 3 + 1)
    widths.push_back(std::min(w, c.top_k - used));
  DevTensor3 dq = to_device(in.q), dk = to_device(in.k), dv = to_device(in.v);
  MobaAttentionParams ag;
  ag.q = case_operand(dq, c); ag.k = case_operand(dk, c); ag.v = case_operand(dv, c);
  ag.precision = c.precision;
  ag.block_size = c.block_size;
  ag.q_begin = q_begin;
  ag.q_count = R;
  const size_t out_n = static_cast<size_t>(Hq * R * d), lse_n = static_cast<size_t>(Hq * R);
  std::vector<DeviceBuffer> sel, outs, lses;
  std::vector<MobaAttentionBand> bands;
  for (int j = 0, s0 = 0; j < static_cast<int>(widths.size()); s0 += widths[j], ++j) {
    std::vector<int32_t> bs(static_cast<size_t>(Hq * R * widths[j]));
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < R; ++i)
        std::copy_n(in.sel.begin() + (h * T + q_begin + i) * c.top_k + s0, widths[j],
                    bs.begin() + (h * R + i) * widths[j]);
    sel.push_back(upload(bs));
    outs.push_back(poisoned(out_n * 4));
    lses.push_back(poisoned(lse_n * 4));
    // first_query: none, inside the window, past it (nothing attended), just before it
    const int64_t fq[4] = {0, q_begin + R / 3, q_begin + R + 1, std::max<int64_t>(q_begin - 1, 7)};
    bands.push_back({sel.back().as<int32_t>(), widths[j], outs.back().as<float>(), lses.back().as<float>(), fq[j % 4]});
  }
  REQUIRE(bands.size() > static_cast<size_t>(kMaxAttentionBands));
  CUDA_OK(moba_attention_bands_cuda(ag, bands.data(), static_cast<int>(bands.size())));
  for (size_t j = 0; j < bands.size(); ++j) {
    INFO("band " << j << " of " << bands.size() << ", width " << widths[j]);
    DeviceBuffer o1 = poisoned(out_n * 4), l1 = poisoned(lse_n * 4);
    MobaAttentionParams a1 = ag;
    a1.selected = bands[j].selected;
    a1.top_k = bands[j].top_k;
    a1.out = o1.as<float>();
    a1.lse = l1.as<float>();
    CUDA_OK(moba_attention_cuda(a1));
    const auto bo = download<float>(outs[j], out_n), bl = download<float>(lses[j], lse_n);
    const auto so = download<float>(o1, out_n), sl = download<float>(l1, lse_n);
    // Rows before first_query attend nothing (o = 0, lse = -inf); the others are the call's.
    int64_t n_skipped = 0;
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < R; ++i) {
        const size_t r = static_cast<size_t>(h * R + i);
        if (q_begin + i >= bands[j].first_query) {
          REQUIRE(std::memcmp(bo.data() + r * d, so.data() + r * d, static_cast<size_t>(d) * 4) == 0);
          REQUIRE(std::memcmp(&bl[r], &sl[r], 4) == 0);
          continue;
        }
        ++n_skipped;
        for (int64_t x = 0; x < d; ++x) REQUIRE(bo[r * static_cast<size_t>(d) + static_cast<size_t>(x)] == 0.0f);
        REQUIRE(bl[r] == -std::numeric_limits<float>::infinity());
      }
    if (j % 4 == 2) CHECK(n_skipped == Hq * R);
  }
}

// Blocks of several staged pieces (B > 128, or > 64 in one-warp CTAs) with more queries a row
// group than one chunk a warp: in rounds of one chunk a warp (attn_rounds=1, the default), the
// same bits as every chunk per piece (attn_rounds=0), for 128- and 512-row groups, both CTA
// shapes, fast and exact numerics (bf16 split P, f16, fp16x3), short pieces (B not a multiple
// of 64, a long ragged last block); the gather path's mma.sync kernel (attn_wgmma=0, default
// rounds) against the CPU in each shape, and the default choice too (the wgmma rounds, below,
// where they apply).
TEST_CASE("gpu: long blocks in rounds of a chunk a warp equal chunks per piece bit for bit", "[gpu][window]") {
  RestoreTuning restore;
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {2000, 2, 1, 128, 256, 8, DType::bf16},  // 2 pieces a block, GQA 2:1, a long ragged last block
      {2100, 2, 2, 64, 512, 4, DType::f16},    // 4 pieces, a short last block (52 keys)
      {1500, 2, 1, 128, 300, 5, DType::bf16},  // B not a multiple of 16: a 44-key last piece a block
      {1300, 2, 1, 64, 384, 4, DType::f32},    // fp32: bf16 (fast), fp16x3 (exact, 32-key steps); last block 148 keys
  };
  for_each_precision(cases, [](const Case& c) {
    const AttnInputs in = attention_inputs(c);
    for (const char* shape : {"attn_rows=128", "attn_rows=512", "attn_rows=512,attn_warp_ctas=1"}) {
      CudaTuning t;
      REQUIRE(parse_cuda_tuning(std::string("attn_path=gather,attn_wgmma=0,attn_rounds=0,") + shape, &t) == nullptr);
      set_cuda_tuning(t);
      const auto [po, pl] = gpu_attention(c, in);
      {
        INFO("tuning " << shape << ", attn_rounds=1 against 0");
        REQUIRE(parse_cuda_tuning(std::string("attn_path=gather,attn_wgmma=0,attn_rounds=1,") + shape, &t) ==
                nullptr);
        set_cuda_tuning(t);
        const auto [ro, rl] = gpu_attention(c, in);
        REQUIRE(std::memcmp(po.data(), ro.data(), po.size() * 4) == 0);
        REQUIRE(std::memcmp(pl.data(), rl.data(), pl.size() * 4) == 0);
      }
      REQUIRE(parse_cuda_tuning(std::string("attn_path=gather,attn_wgmma=0,") + shape, &t) == nullptr);
      set_cuda_tuning(t);
      check_attention(c);  // the gather path's mma.sync kernel, default rounds, against the CPU
    }
    set_cuda_tuning(CudaTuning{});
    check_attention(c);  // the automatic choice (the tile path for most of these)
  });
}

// The gather's wgmma rounds (CudaTuning::attn_wgmma: blocks of more than 32 keys, head dim
// 65-128, 16-bit numerics, compute capability 9.0; elsewhere the mma.sync kernel runs): every
// block in rounds whose four chunks are one warpgroup, against the CPU, whole calls and query
// windows, in 128- and 512-row groups; bands (512-row groups, k >= 18) equal single calls bit for
// bit.
TEST_CASE("gpu: the gather's wgmma rounds match the CPU", "[gpu][window]") {
  RestoreTuning restore;
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {2000, 2, 1, 128, 256, 8, DType::bf16},  // 2 pieces a block, GQA 2:1, a long ragged last block
      {1500, 2, 1, 128, 300, 5, DType::bf16},  // B not a multiple of 16: a 44-key last piece a block
      {2100, 4, 2, 96, 512, 4, DType::f16},    // head dim 96 (zero channels), 4 pieces, a 52-key last block
      {1300, 2, 1, 128, 384, 20, DType::f32},  // fp32 fast (bf16); exact is x3 (the mma.sync kernel); k >= n_blocks
      {700, 3, 1, 128, 200, 1, DType::bf16},   // k = 1: the current block only, rows inside a long block
      {1000, 2, 1, 128, 64, 8, DType::bf16},   // one piece a block (staged once for its rounds), ragged
      {900, 2, 2, 96, 128, 5, DType::f16},     // one whole piece a block, a 4-key last block
      {777, 2, 1, 128, 100, 20, DType::bf16},  // B not a multiple of 16 (a 36-key step), k >= n_blocks
      {600, 4, 1, 128, 48, 3, DType::bf16},    // B = 48: one 64-key step a block, GQA 4:1
  };
  for_each_precision(cases, [](const Case& c) {
    for (const char* shape : {"attn_rows=128", "attn_rows=512"}) {
      INFO("tuning attn_wgmma=1," << shape);
      CudaTuning t;
      REQUIRE(parse_cuda_tuning(std::string("attn_path=gather,attn_wgmma=1,") + shape, &t) == nullptr);
      set_cuda_tuning(t);
      check_attention(c);
      check_attention_windows(c, {{37, c.n_tokens / 2}, {c.n_tokens - 300, -1}});
    }
    // Under attn_rows=512, the last shape; k >= 18: more bands (widths 1, 2, 3) than one pass takes.
    if (c.top_k >= 18) check_attention_bands(c, 37, c.n_tokens / 2);
    // The pieces staged by the TMA (attn_tma=1): the same bits as the cp.async staging, and the
    // TMA ran where the rounds do (16-bit staging: not fp32 exact, x3 on the mma.sync kernel).
    {
      INFO("tuning attn_tma=0 against 1");
      const AttnInputs in = attention_inputs(c);
      CudaTuning t;
      REQUIRE(parse_cuda_tuning("attn_path=gather,attn_wgmma=1,attn_rows=512,attn_tma=0", &t) == nullptr);
      set_cuda_tuning(t);
      const auto [po, pl] = gpu_attention(c, in);
      REQUIRE(parse_cuda_tuning("attn_path=gather,attn_wgmma=1,attn_rows=512,attn_tma=1", &t) == nullptr);
      set_cuda_tuning(t);
      const int64_t before = moba_attention_tma_launches();
      const auto [to, tl] = gpu_attention(c, in);
      const bool x3 = c.dtype == DType::f32 && c.precision == Precision::exact;
      CHECK((moba_attention_tma_launches() > before) == !x3);
      REQUIRE(std::memcmp(po.data(), to.data(), po.size() * 4) == 0);
      REQUIRE(std::memcmp(pl.data(), tl.data(), pl.size() * 4) == 0);
      check_attention(c);  // and against the CPU, windows too
      check_attention_windows(c, {{37, c.n_tokens / 2}});
    }
  });
}

// The 4-warp gather kernels of 16- and 32-key steps with their row group's Q rows in shared memory
// (attn_q_smem=1, where rows x head dim fit 64 KB) and read from global memory (attn_q_smem=0): the
// same bits, and against the CPU (windows too); the shared-memory kernels ran where the rows fit
// and not where they do not (512 rows at head dim 128).
TEST_CASE("gpu: the gather's Q rows in shared memory give the same bits", "[gpu][window]") {
  RestoreTuning restore;
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {1000, 2, 1, 128, 16, 20, DType::bf16},  // GQA 2:1, a ragged last block
      {1100, 4, 2, 128, 32, 9, DType::f16},
      {900, 2, 2, 64, 16, 12, DType::bf16},    // head dim 64: 512 rows fit as well
      {777, 3, 1, 64, 32, 30, DType::f16},     // k >= n_blocks (25 blocks), GQA 3:1
      {600, 2, 1, 128, 8, 7, DType::bf16},     // B = 8: half-empty 16-key steps
  };
  for_each_precision(cases, [](const Case& c) {
    const AttnInputs in = attention_inputs(c);
    for (const int rows : {128, 256, 512}) {
      INFO("attn_rows=" << rows);
      const std::string base = "attn_path=gather,attn_warp_ctas=0,attn_rows=" + std::to_string(rows);
      CudaTuning t;
      REQUIRE(parse_cuda_tuning(base + ",attn_q_smem=0", &t) == nullptr);
      set_cuda_tuning(t);
      int64_t before = moba_attention_q_smem_launches();
      const auto [go, gl] = gpu_attention(c, in);
      CHECK(moba_attention_q_smem_launches() == before);
      REQUIRE(parse_cuda_tuning(base + ",attn_q_smem=1", &t) == nullptr);
      set_cuda_tuning(t);
      before = moba_attention_q_smem_launches();
      const auto [so, sl] = gpu_attention(c, in);
      CHECK((moba_attention_q_smem_launches() > before) == (rows * c.head_dim * 2 <= 64 * 1024));
      REQUIRE(std::memcmp(go.data(), so.data(), go.size() * 4) == 0);
      REQUIRE(std::memcmp(gl.data(), sl.data(), gl.size() * 4) == 0);
      check_attention_on(c, in);
      check_attention_windows(c, {{37, c.n_tokens / 2}, {c.n_tokens - 300, -1}});
    }
  });
}

// The gather's lists a warp per row (moba_attention.cu use_warp_lists: passes whose rows hold
// >= 32 entries): rows whose valid picks are ascending (as the analysis gives them, -1 pads
// before or after) take the one-pass path, the same picks shuffled (and with a duplicate) the
// per-thread one; both give the same bits (a row's arithmetic follows the ascending order of its
// blocks) and match the CPU; one-warp and 4-warp CTAs; on query windows too.
TEST_CASE("gpu: the gather's lists a warp per row, ascending or not, give the same bits", "[gpu][window]") {
  RestoreTuning restore;
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {2100, 2, 1, 128, 16, 40, DType::bf16},  // ragged last block, GQA 2:1
      {1500, 2, 2, 64, 32, 33, DType::f16},
      {1300, 2, 1, 48, 8, 64, DType::bf16},    // head dim 48, blocks of 8 keys
  };
  for (const Case& c0 : cases)
    for (const char* shape : {"attn_path=gather,attn_warp_ctas=0", "attn_path=gather,attn_warp_ctas=1"}) {
      Case c = c0;
      c.precision = Precision::exact;
      INFO(c.str() << " tuning " << shape);
      CudaTuning tu;
      REQUIRE(parse_cuda_tuning(shape, &tu) == nullptr);
      set_cuda_tuning(tu);
      AttnInputs in = attention_inputs(c);
      const int64_t T = c.n_tokens, Hq = c.n_q_heads;
      std::mt19937 rng(c.seed + 5), shuffler(c.seed + 11);
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t t = 0; t < T; ++t) {
          int32_t* row = in.sel.data() + (h * T + t) * c.top_k;
          const int32_t cur = static_cast<int32_t>(t / c.block_size);
          std::set<int32_t> picks{cur};
          for (int x = 0; x < 3 * c.top_k && static_cast<int>(picks.size()) < c.top_k; ++x)
            picks.insert(static_cast<int32_t>(rng() % static_cast<uint32_t>(cur + 1)));
          const int pad = c.top_k - static_cast<int>(picks.size());
          const bool lead = (t + h) % 3 == 0;  // -1 pads before the picks (else after)
          std::fill(row, row + c.top_k, -1);
          std::copy(picks.begin(), picks.end(), row + (lead ? pad : 0));
        }
      const auto [ao, al] = gpu_attention(c, in);
      check_attention_on(c, in);
      check_attention_windows(c, {{37, c.n_tokens / 2}, {c.n_tokens - 300, -1}});
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t t = 0; t < T; ++t) {
          int32_t* row = in.sel.data() + (h * T + t) * c.top_k;
          std::shuffle(row, row + c.top_k, shuffler);
          if (t % 5 == 0 && row[0] >= 0 && row[1] < 0) row[1] = row[0];  // a duplicate where a pad was
        }
      const auto [so, sl] = gpu_attention(c, in);
      REQUIRE(std::memcmp(ao.data(), so.data(), ao.size() * 4) == 0);
      REQUIRE(std::memcmp(al.data(), sl.data(), al.size() * 4) == 0);
    }
}

TEST_CASE("gpu: moba attention bands equal single calls bit for bit, before first_query nothing", "[gpu][window]") {
  const Case cases[] = {
      // T, Hq, Hkv, d, B, k, dtype
      {1000, 2, 1, 64, 64, 20, DType::bf16},   // ragged last block, GQA 2:1, k >= n_blocks
      {513, 4, 2, 128, 16, 24, DType::bf16},   // head dim 128, B = 16, ragged
      {777, 2, 1, 48, 100, 20, DType::f16},    // head dim 48, B not a multiple of 16 (gather only)
      {1023, 4, 1, 64, 32, 18, DType::f32},    // fp32 views: bf16 (fast), fp16x3 (exact, gather only)
  };
  for_each_attn_path([&] {
    for (const Case& c : cases) {
      // Exact numerics (16-bit as given, bf16 split P, fp16x3) over the whole sequence; fast
      // numerics on a window off the 64-row tiles.
      check_attention_bands(exact_case(c, false), 0, c.n_tokens);
      Case w = c;
      w.precision = Precision::fast;
      check_attention_bands(w, 37, c.n_tokens / 2);
    }
  });
}

TEST_CASE("gpu: exact numerics, dense pass vs the CPU", "[gpu][exact]") {
  for (const Case& c : kExactCases) {
    check_dense(exact_case(c, true), 0, c.n_tokens, 10);
    if (c.n_tokens > 200) check_dense(exact_case(c, false), c.n_tokens / 3, c.n_tokens / 2, 3);  // raw 16-bit
  }
  check_dense(exact_case({1000, 2, 1, 64, 64, 4, DType::f32}, true, 2.5f), 0, 1000, 5, {16, 32, 64, 77});
  check_dense(exact_case({1000, 2, 1, 8, 64, 4, DType::f16}, true, 2.5f), 0, 1000, 5);
}

TEST_CASE("gpu: exact numerics, gate top-k selects on fp32 scores", "[gpu][exact]") {
  // bf16 raw q would take the tensor-core kernel under fast; exact takes the scalar fp32 one.
  const Case cases[] = {
      {2048, 2, 1, 128, 16, 16, DType::bf16},
      {1000, 2, 2, 8, 64, 3, DType::f16},
      {1023, 4, 1, 64, 32, 6, DType::f32},
      {640, 4, 2, 128, 64, 4, DType::bf16, TieRule::older, GqaMode::shared},
  };
  for (const Case& c : cases) {
    check_routing(exact_case(c, true));
    if (c.dtype != DType::f32) check_routing(exact_case(c, false));
  }
}

// The analysis layer's path: host views typed with the dump dtype through the host staging
// (kernels/dispatch.h), which must keep the dtype (it once rebuilt the operands as fp32).
TEST_CASE("gpu: exact numerics through host staging (route's path)", "[gpu][exact][small]") {
  for (const DType dt : {DType::f16, DType::bf16, DType::f32}) {
    const Case c{600, 2, 1, 8, 64, 3, dt};
    INFO(c.str());
    const Tensor3 q = random_rounded(2, 600, 8, dt, 11, 2.0f), k = random_rounded(1, 600, 8, dt, 12, 2.0f),
                  v = random_rounded(1, 600, 8, dt, 13);
    std::vector<int32_t> sel(2 * 600 * 3);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < 600; ++t)
        for (int j = 0; j < 3; ++j) sel[(h * 600 + t) * 3 + j] = static_cast<int32_t>(std::max<int64_t>(0, t / 64 - 2 * j));
    std::vector<float> out(2 * 600 * 8), lse(2 * 600), g_out(out.size()), g_lse(lse.size());
    MobaAttentionParams ap;
    ap.q = Operand::of_dtype(q.view(), dt);
    ap.k = Operand::of_dtype(k.view(), dt);
    ap.v = Operand::of_dtype(v.view(), dt);
    ap.selected = sel.data();
    ap.top_k = 3;
    ap.block_size = 64;
    ap.out = out.data();
    ap.lse = lse.data();
    moba_attention_cpu(ap);
    MobaAttentionParams ag = ap;
    ag.out = g_out.data();
    ag.lse = g_lse.data();
    CUDA_OK(moba_attention_cuda_from_host(ag));
    double lse_err = 0;
    for (size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, double(std::fabs(g_lse[i] - lse[i])));
    const double rel = max_row_rel_err(g_out, out, 8);
    INFO("attention: row-relative " << rel << " lse " << lse_err);
    REQUIRE(rel <= tolerances::exact_row(dt).out_rel);
    REQUIRE(lse_err <= tolerances::exact_row(dt).lse_abs);

    DensePassParams dp;
    dp.q = ap.q;
    dp.k = ap.k;
    dp.v = ap.v;
    dp.query_begin = 100;
    dp.query_count = 400;
    std::vector<float> d_out(2 * 400 * 8), d_lse(2 * 400), gd_out(d_out.size()), gd_lse(d_lse.size());
    dp.out = d_out.data();
    dp.lse = d_lse.data();
    dense_pass_cpu(dp);
    DensePassParams dg = dp;
    dg.out = gd_out.data();
    dg.lse = gd_lse.data();
    CUDA_OK(dense_pass_cuda_from_host(dg));
    double d_lse_err = 0;
    for (size_t i = 0; i < d_lse.size(); ++i) d_lse_err = std::max(d_lse_err, double(std::fabs(gd_lse[i] - d_lse[i])));
    const double d_rel = max_row_rel_err(gd_out, d_out, 8);
    INFO("dense pass: row-relative " << d_rel << " lse " << d_lse_err);
    REQUIRE(d_rel <= tolerances::exact_row(dt).out_rel);
    REQUIRE(d_lse_err <= tolerances::exact_row(dt).lse_abs);
  }
}

// Precision::fast keeps the pre-phase-2 numerics and tolerances (tolerances::row), including
// fp16 values computed as bf16 (an f32-typed view: what route --precision fast passes).
TEST_CASE("gpu: fast numerics keep their older tolerances", "[gpu][exact]") {
  Case c{1000, 4, 2, 64, 64, 3, DType::f32};
  check_attention(c);
  check_dense(c, 0, c.n_tokens, 10);
  Case b{1000, 2, 1, 128, 64, 3, DType::bf16};
  check_attention(b);
  check_dense(b, 0, b.n_tokens, 10);
}
