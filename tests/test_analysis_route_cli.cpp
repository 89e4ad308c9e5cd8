// `moba route --with-output` end to end (issue 3 acceptance): the binary's `selected`,
// `output` and `lse` against an independent router and brute-force masked dense attention
// written here in double precision, on f32 dumps, over ragged last blocks, k = 1,
// k >= n_blocks, B = 1, GQA 4:1, head dims 48/64/128, tie older, shared GQA, kconv
// (routing only and both), the oracle and the block-score routers (quest, sink-window,
// minference-bs). Output within 1e-5 relative.
#include <hdf5.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include "core/dump.h"
#include "test_analysis_util.h"
#include "test_io_util.h"

using namespace moba;

namespace {

struct RouteCase {
  int64_t T, B;
  int K;
  int64_t n_q, n_kv, d;
  std::string extra;  // extra CLI flags
};

std::string describe(const RouteCase& c) {
  std::ostringstream s;
  s << "T=" << c.T << " B=" << c.B << " K=" << c.K << " n_q=" << c.n_q << " n_kv=" << c.n_kv << " d=" << c.d << " "
    << c.extra;
  return s.str();
}

template <typename T>
std::vector<T> read_dataset(const std::string& file, const std::string& name, hid_t mem_type, std::vector<hsize_t>* dims) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  const hid_t sp = H5Dget_space(d);
  dims->assign(static_cast<size_t>(H5Sget_simple_extent_ndims(sp)), 0);
  H5Sget_simple_extent_dims(sp, dims->data(), nullptr);
  hsize_t n = 1;
  for (const hsize_t x : *dims) n *= x;
  std::vector<T> out(n);
  REQUIRE(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

// kconv with uniform weights, in double (DESIGN.md §3).
Tensor3 kconv_ref(const Tensor3& k, int W) {
  Tensor3 out(k.n_heads, k.n_tokens, k.head_dim);
  for (int64_t h = 0; h < k.n_heads; ++h)
    for (int64_t t = 0; t < k.n_tokens; ++t)
      for (int64_t c = 0; c < k.head_dim; ++c) {
        double conv = 0;
        for (int l = 0; l < W && l <= t; ++l) conv += k.row(h, t - l)[c] / double(W);
        out.row(h, t)[c] = static_cast<float>(k.row(h, t)[c] + conv / (1 + std::exp(-conv)));
      }
  return out;
}

// Independent selection of query (h, t) from block scores `score(b)` of routable blocks.
template <typename Score>
std::vector<int32_t> select_ref(int64_t t, int64_t B, int K, bool older, Score score) {
  const int64_t c = t / B;
  std::vector<int64_t> cand(static_cast<size_t>(c));
  std::iota(cand.begin(), cand.end(), 0);
  std::sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) {
    const double sa = score(a), sb = score(b);
    if (sa != sb) return sa > sb;
    return older ? a < b : a > b;
  });
  std::vector<int32_t> sel;
  for (int64_t i = 0; i < std::min<int64_t>(K - 1, c); ++i) sel.push_back(static_cast<int32_t>(cand[i]));
  sel.push_back(static_cast<int32_t>(c));
  std::sort(sel.begin(), sel.end());
  while (static_cast<int>(sel.size()) < K) sel.push_back(-1);
  return sel;
}

}  // namespace

TEST_CASE("moba route --with-output matches brute-force masked attention in double", "[analysis][route][cli]") {
  const std::vector<RouteCase> cases = {
      {37, 8, 2, 2, 2, 48, ""},                      // ragged last block (37 = 4*8 + 5)
      {50, 7, 1, 4, 1, 64, ""},                      // k = 1, GQA 4:1
      {40, 16, 5, 4, 1, 128, ""},                    // k >= n_blocks (3): dense
      {65, 8, 3, 8, 2, 64, ""},                      // GQA 4:1, ragged
      {33, 1, 4, 1, 1, 48, ""},                      // B = 1
      {70, 8, 3, 4, 1, 48, "--tie older"},           // tie rule older
      {70, 8, 3, 4, 1, 64, "--gqa shared"},          // one choice per KV group
      {61, 8, 3, 2, 1, 48, "--kconv 3"},             // kconv for routing only
      {61, 8, 3, 2, 1, 64, "--kconv 3 --kconv-apply both"},
      {58, 8, 3, 4, 1, 48, "--router oracle"},       // block-mass oracle
      {64, 16, 2, 1, 1, 128, "--pool-precision fp32"},
      {37, 8, 2, 2, 2, 48, "--precision fast"},      // CUDA numerics only: the CPU is the same
      {67, 8, 3, 4, 2, 48, "--router quest"},        // block-score routers (docs/routing.md)
      {70, 8, 3, 4, 1, 64, "--router quest --gqa shared --tie older"},
      {67, 8, 4, 4, 2, 48, "--router sink-window"},
      {67, 8, 3, 4, 2, 48, "--router minference-bs"},
      {70, 8, 3, 4, 1, 64, "--router minference-bs --gqa shared"},
  };
  io_test::ScratchDir dir("route");
  int idx = 0;
  for (const RouteCase& c : cases) {
    INFO(describe(c));
    const std::string dump = dir.file("d" + std::to_string(idx) + ".h5"), out = dir.file("r" + std::to_string(idx) + ".h5");
    ++idx;
    const Tensor3 q = analysis_test::random_tensor(c.n_q, c.T, c.d, 100 + idx, 1.5f);
    const Tensor3 k = analysis_test::random_tensor(c.n_kv, c.T, c.d, 200 + idx, 1.5f);
    const Tensor3 v = analysis_test::random_tensor(c.n_kv, c.T, c.d, 300 + idx);
    {
      DumpMeta meta;
      meta.model = "route-test";
      DumpWriter w(dump, meta);
      w.write_tensor(0, TensorKind::q, q, DType::f32);
      w.write_tensor(0, TensorKind::k, k, DType::f32);
      w.write_tensor(0, TensorKind::v, v, DType::f32);
      w.commit();
    }
    const std::string cmd = std::string(MOBA_BINARY) + " route " + dump + " --layer 0 --block-size " + std::to_string(c.B) +
                            " --top-k " + std::to_string(c.K) + " --out " + out + " --with-output --quiet " + c.extra +
                            " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);

    std::vector<hsize_t> dims;
    const auto sel = read_dataset<int32_t>(out, "/selected", H5T_NATIVE_INT32, &dims);
    REQUIRE(dims == std::vector<hsize_t>{hsize_t(c.n_q), hsize_t(c.T), hsize_t(c.K)});
    const auto o = read_dataset<float>(out, "/output", H5T_NATIVE_FLOAT, &dims);
    REQUIRE(dims == std::vector<hsize_t>{hsize_t(c.n_q), hsize_t(c.T), hsize_t(c.d)});
    const auto lse = read_dataset<float>(out, "/lse", H5T_NATIVE_FLOAT, &dims);
    REQUIRE(dims == std::vector<hsize_t>{hsize_t(c.n_q), hsize_t(c.T)});

    const bool kconv = c.extra.find("--kconv") != std::string::npos;
    const bool both = c.extra.find("both") != std::string::npos;
    const bool oracle = c.extra.find("oracle") != std::string::npos;
    const bool quest = c.extra.find("quest") != std::string::npos;
    const bool sink = c.extra.find("sink-window") != std::string::npos;
    const bool minf = c.extra.find("minference-bs") != std::string::npos;
    const bool shared = c.extra.find("shared") != std::string::npos;
    const bool older = c.extra.find("older") != std::string::npos;
    const Tensor3 kc = kconv ? kconv_ref(k, 3) : k;
    const int64_t group = c.n_q / c.n_kv, n_blocks = (c.T + c.B - 1) / c.B;
    const double scale = 1.0 / std::sqrt(double(c.d));
    // Pooled means in double over each block's real length (f32 dump: rounding is a no-op).
    auto kbar = [&](int64_t g, int64_t b, int64_t ch) {
      double s = 0;
      const int64_t j1 = std::min((b + 1) * c.B, c.T);
      for (int64_t j = b * c.B; j < j1; ++j) s += kc.row(g, j)[ch];
      return s / double(j1 - b * c.B);
    };
    auto gate = [&](int64_t h, int64_t t, int64_t b) {
      double s = 0;
      if (quest) {  // Quest's bound over the block's channel min / max
        for (int64_t ch = 0; ch < c.d; ++ch) {
          double lo = 1e300, hi = -1e300;
          for (int64_t j = b * c.B; j < std::min((b + 1) * c.B, c.T); ++j) {
            lo = std::min(lo, double(k.row(h / group, j)[ch]));
            hi = std::max(hi, double(k.row(h / group, j)[ch]));
          }
          s += std::max(q.row(h, t)[ch] * lo, q.row(h, t)[ch] * hi);
        }
        return s;
      }
      if (sink) return b == 0 ? 1e300 : double(b);
      for (int64_t ch = 0; ch < c.d; ++ch) {
        double qc = q.row(h, t)[ch];
        if (minf) {  // the mean query of t's query block
          const int64_t u0 = (t / c.B) * c.B, u1 = std::min(u0 + c.B, c.T);
          qc = 0;
          for (int64_t u = u0; u < u1; ++u) qc += q.row(h, u)[ch];
          qc /= double(u1 - u0);
        }
        s += qc * kbar(h / group, b, ch);
      }
      return s;
    };
    double worst_out = 0, worst_lse = 0;
    int64_t mismatched = 0;
    for (int64_t h = 0; h < c.n_q; ++h)
      for (int64_t t = 0; t < c.T; ++t) {
        const int32_t* row = sel.data() + (h * c.T + t) * c.K;
        // 1. The selection, from an independent router.
        std::vector<double> mass;
        if (oracle) {  // the oracle cases have one KV head, which full_probs assumes
          mass.assign(static_cast<size_t>(n_blocks), 0.0);
          const std::vector<double> P = analysis_test::full_probs(q, k, h, t);
          for (int64_t j = 0; j <= t; ++j) mass[j / c.B] += P[j];
        }
        const auto ref = select_ref(t, c.B, c.K, older, [&](int64_t b) {
          if (oracle) return mass[b];
          if (!shared) return gate(h, t, b);
          double s = 0;
          for (int64_t hh = (h / group) * group; hh < (h / group + 1) * group; ++hh) s += gate(hh, t, b);
          return s;
        });
        if (!std::equal(ref.begin(), ref.end(), row)) ++mismatched;
        // 2. The output, by brute force over the CLI's own selection.
        const Tensor3& attn_k = both ? kc : k;
        std::vector<double> s, w;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j <= t; ++j)
          if (std::find(row, row + c.K, static_cast<int32_t>(j / c.B)) != row + c.K) {
            double acc = 0;
            for (int64_t ch = 0; ch < c.d; ++ch) acc += double(q.row(h, t)[ch]) * attn_k.row(h / group, j)[ch];
            s.push_back(acc * scale);
            keys.push_back(j);
          }
        REQUIRE(!s.empty());
        const double mx = *std::max_element(s.begin(), s.end());
        double l = 0;
        std::vector<double> ov(static_cast<size_t>(c.d), 0.0);
        for (size_t i = 0; i < s.size(); ++i) {
          const double e = std::exp(s[i] - mx);
          l += e;
          for (int64_t ch = 0; ch < c.d; ++ch) ov[ch] += e * v.row(h / group, keys[i])[ch];
        }
        double num = 0, den = 0;
        for (int64_t ch = 0; ch < c.d; ++ch) {
          const double ref_o = ov[ch] / l, got = o[(h * c.T + t) * c.d + ch];
          num += (got - ref_o) * (got - ref_o);
          den += ref_o * ref_o;
        }
        worst_out = std::max(worst_out, std::sqrt(num / den));
        const double ref_lse = mx + std::log(l);
        worst_lse = std::max(worst_lse, std::fabs(lse[h * c.T + t] - ref_lse) / std::max(1.0, std::fabs(ref_lse)));
      }
    CHECK(mismatched == 0);
    CHECK(worst_out <= 1e-5);
    CHECK(worst_lse <= 1e-5);
  }
}

TEST_CASE("moba route: bad input exits 2 and leaves no output", "[analysis][route][cli]") {
  io_test::ScratchDir dir("route_bad");
  const std::string dump = dir.file("d.h5"), out = dir.file("out.h5");
  {
    DumpMeta meta;
    meta.model = "route-test";
    DumpWriter w(dump, meta);
    const Tensor3 t = analysis_test::random_tensor(2, 20, 8, 1);
    w.write_tensor(0, TensorKind::q, t, DType::f32);
    w.write_tensor(0, TensorKind::k, t, DType::f32);
    w.write_tensor(0, TensorKind::v, t, DType::f32);
    w.commit();
  }
  const std::string bin = MOBA_BINARY;
  auto status = [&](const std::string& args) {
    const int rc = std::system((bin + " route " + args + " > /dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  CHECK(status(dump + " --layer 3 --block-size 4 --top-k 2 --out " + out) == 2);      // no such layer
  CHECK(status(dump + " --layer 0 --block-size 0 --top-k 2 --out " + out) == 2);      // B < 1
  CHECK(status(dump + " --layer 0 --block-size 4 --top-k 2 --out " + out + " --device cuda") == 2);
  CHECK(status(dump + " --layer 0 --block-size 4 --top-k 2 --out " + out + " --kconv 4") == 2);
  CHECK(status(dump + " --layer 0 --block-size 4 --top-k 2 --out " + out + " --precision bf16") == 2);
  CHECK(status(dump + " --layer 0 --block-size 4 --top-k 2 --out " + out + " --kconv 3 --kconv-weights " +
               dir.file("missing.npy")) == 2);
  CHECK(status(dir.file("missing.h5") + " --layer 0 --block-size 4 --top-k 2 --out " + out) == 2);
  CHECK(dir.entries() == std::vector<std::string>{"d.h5"});
  CHECK(status(dump + " --layer 0 --block-size 4 --top-k 2 --out " + out + " --device auto") == 0);
}
