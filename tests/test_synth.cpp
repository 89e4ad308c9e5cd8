// The synthetic simulator (analysis/synth.h): determinism, shapes, planted truth, and that
// the generated data realise the statistical model and the FlashMoBA SNR it predicts
// (DESIGN.md §5, §6), measured here with plain loops independent of the engine.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "analysis/synth.h"
#include "core/errors.h"

using namespace moba;
using namespace moba::analysis;

namespace {

SynthParams small_params() {
  SynthParams p;
  p.n_tokens = 700;
  p.n_q_heads = 4;
  p.n_kv_heads = 2;
  p.head_dim = 48;
  p.seed = 11;
  return p;
}

bool same_bits(const Tensor3& a, const Tensor3& b) {
  return a.n_heads == b.n_heads && a.n_tokens == b.n_tokens && a.head_dim == b.head_dim &&
         std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0;
}

double dot(const float* a, const float* b, int64_t d) {
  double s = 0;
  for (int64_t i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

struct Moments {
  double n = 0, sum = 0, sum2 = 0;
  void add(double x) {
    n += 1;
    sum += x;
    sum2 += x * x;
  }
  double mean() const { return sum / n; }
  double var() const { return sum2 / n - mean() * mean(); }
  double se() const { return std::sqrt(var() / n); }  // standard error of the mean
};

// Standard error from means of consecutive batches, for samples that are correlated over
// neighbouring queries (the sink key and overlapping windows are shared by all of them).
struct BatchMoments {
  Moments all, batches, current;
  void add(double x) {
    all.add(x);
    current.add(x);
    if (current.n == 256) {
      batches.add(current.mean());
      current = Moments{};
    }
  }
  double mean() const { return all.mean(); }
  double se() const { return std::sqrt(batches.var() / batches.n); }
};

double phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

bool in_plant(const SynthPlant& pl, int64_t j) {
  if (j == pl.planted) return true;
  return std::find(pl.mates, pl.mates + pl.n_mates, j) != pl.mates + pl.n_mates;
}

}  // namespace

TEST_CASE("synth: the same seed draws identical tensors, independent of thread count", "[synth]") {
  const SynthParams p = small_params();
  const SynthLayer a = synth_layer(p, 0);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SynthLayer b = synth_layer(p, 0);
  omp_set_num_threads(threads);
  CHECK(same_bits(a.q, b.q));
  CHECK(same_bits(a.k, b.k));
  CHECK(same_bits(a.v, b.v));
  CHECK(a.planted == b.planted);

  SynthParams other = p;
  other.seed = 12;
  const SynthLayer c = synth_layer(other, 0);
  CHECK_FALSE(same_bits(a.q, c.q));
  CHECK_FALSE(same_bits(a.k, c.k));
  CHECK_FALSE(same_bits(a.v, c.v));
  CHECK(a.planted != c.planted);

  const SynthLayer next_layer = synth_layer(p, 1);
  CHECK_FALSE(same_bits(a.k, next_layer.k));
  CHECK_FALSE(same_bits(a.k, a.v));

  // Changing the model's strengths keeps keys, values and plant positions (paired sweeps).
  SynthParams stronger = p;
  stronger.delta_mu = 0.5;
  const SynthLayer s = synth_layer(stronger, 0);
  CHECK(same_bits(a.k, s.k));
  CHECK(same_bits(a.v, s.v));
  CHECK(a.planted == s.planted);
  CHECK_FALSE(same_bits(a.q, s.q));
}

TEST_CASE("synth: shapes, GQA and stored dtype", "[synth]") {
  for (const DType dt : {DType::f32, DType::f16, DType::bf16}) {
    SynthParams p = small_params();
    p.n_tokens = 113;
    p.min_distance = 16;
    p.dtype = dt;
    CAPTURE(dtype_name(dt));
    const SynthLayer l = synth_layer(p, 0);
    CHECK(l.q.n_heads == 4);
    CHECK(l.k.n_heads == 2);
    CHECK(l.v.n_heads == 2);
    for (const Tensor3* t : {&l.q, &l.k, &l.v}) {
      CHECK(t->n_tokens == 113);
      CHECK(t->head_dim == 48);
      CHECK(t->dtype == dt);
      bool representable = true, finite = true;
      for (const float x : t->data) {
        representable = representable && round_to(dt, x) == x;
        finite = finite && std::isfinite(x);
      }
      CHECK(representable);
      CHECK(finite);
    }
    CHECK(l.planted.size() == static_cast<size_t>(4 * 113));
  }
  SynthParams one = small_params();
  one.n_tokens = 1;
  const SynthLayer l = synth_layer(one, 0);
  CHECK(l.q.n_tokens == 1);
  CHECK(l.planted == std::vector<int32_t>(4, -1));
}

TEST_CASE("synth: planted positions and cluster mates obey the contract", "[synth]") {
  SynthParams p = small_params();
  p.min_distance = 100;
  for (const bool sink : {false, true}) {
    p.sink = sink ? 0.2 : 0.0;
    CAPTURE(sink);
    const SynthLayer l = synth_layer(p, 0);
    for (int64_t h = 0; h < p.n_q_heads; ++h) {
      for (int64_t t = 0; t < p.n_tokens; ++t) {
        const int32_t planted = l.planted[static_cast<size_t>(h * p.n_tokens + t)];
        const SynthPlant pl = synth_plant(p, 0, h, t);
        REQUIRE(pl.planted == planted);
        const int64_t lowest = sink ? 16 : 0;
        if (t - p.min_distance < lowest) {
          REQUIRE(planted == -1);
          continue;
        }
        REQUIRE(planted >= lowest);  // planted_fraction = 1: every eligible query has one
        REQUIRE(planted <= t - p.min_distance);
        REQUIRE(pl.n_mates == p.cluster_size - 1);
        for (int i = 0; i < pl.n_mates; ++i) {
          REQUIRE(pl.mates[i] / 16 == planted / 16);
          REQUIRE(pl.mates[i] != planted);
          REQUIRE(pl.mates[i] < t);
          if (i > 0) REQUIRE(pl.mates[i] > pl.mates[i - 1]);
        }
      }
    }
  }

  p.sink = 0;
  p.planted_fraction = 0.5;
  const SynthLayer half = synth_layer(p, 0);
  double eligible = 0, planted = 0;
  for (int64_t h = 0; h < p.n_q_heads; ++h)
    for (int64_t t = p.min_distance; t < p.n_tokens; ++t) {
      eligible += 1;
      planted += half.planted[static_cast<size_t>(h * p.n_tokens + t)] >= 0;
    }
  CHECK(std::fabs(planted / eligible - 0.5) < 5 * std::sqrt(0.25 / eligible));

  p.planted_fraction = 0;
  const SynthLayer none = synth_layer(p, 0);
  CHECK(std::all_of(none.planted.begin(), none.planted.end(), [](int32_t x) { return x == -1; }));
}

TEST_CASE("synth: invalid parameters are refused with a reason", "[synth]") {
  CHECK(synth_can_run(SynthParams{}).empty());
  auto reason = [](void (*edit)(SynthParams&)) {
    SynthParams p;
    edit(p);
    return synth_can_run(p);
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(reason([](SynthParams& p) { p.n_q_heads = 6; p.n_kv_heads = 4; }), Contains("multiple"));
  CHECK_THAT(reason([](SynthParams& p) { p.n_tokens = 0; }), Contains("n_tokens"));
  CHECK_THAT(reason([](SynthParams& p) { p.head_dim = 4; }), Contains("head_dim"));
  CHECK_THAT(reason([](SynthParams& p) { p.cluster_size = 17; }), Contains("cluster_size"));
  CHECK_THAT(reason([](SynthParams& p) { p.min_distance = 8; }), Contains("min_distance"));
  CHECK_THAT(reason([](SynthParams& p) { p.planted_fraction = 1.5; }), Contains("planted_fraction"));
  CHECK_THAT(reason([](SynthParams& p) { p.delta_mu = NAN; }), Contains("delta_mu"));
  CHECK_THAT(reason([](SynthParams& p) { p.delta_mu = 0.9; p.mu_cluster = 0.3; }), Contains("norm budget"));
  CHECK_THAT(reason([](SynthParams& p) { p.window_bias = 0.2; p.window = 64; }), Contains("norm budget"));
  SynthParams bad;
  bad.delta_mu = 0.99;
  CHECK_THROWS_AS(synth_layer(bad, 0), UsageError);
}

TEST_CASE("synth: parameters survive the attribute round trip", "[synth]") {
  SynthParams p = small_params();
  p.delta_mu = 0.55;
  p.mu_cluster = 0.1;
  p.cluster_size = 3;
  p.sink = 0.2;
  p.window_bias = 0.03;
  p.window = 17;
  p.min_distance = 128;
  p.planted_fraction = 0.75;
  std::map<std::string, std::string> text;
  for (const auto& kv : synth_attributes(p)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", kv.second);
    text[kv.first] = buf;
  }
  SynthParams back;
  REQUIRE(synth_params_from_attributes(text, small_params(), &back));
  CHECK(back.seed == p.seed);
  CHECK(back.delta_mu == p.delta_mu);
  CHECK(back.mu_cluster == p.mu_cluster);
  CHECK(back.cluster_size == p.cluster_size);
  CHECK(back.sink == p.sink);
  CHECK(back.window_bias == p.window_bias);
  CHECK(back.window == p.window);
  CHECK(back.min_distance == p.min_distance);
  CHECK(back.planted_fraction == p.planted_fraction);
  CHECK(synth_delta_mu_eff(p) == Approx(0.55 + 2 * 0.1));
  // Broken headers are refused with the attribute at fault named.
  std::string why;
  auto with = [&](const char* name, const char* value) {
    auto t = text;
    t[name] = value;
    why.clear();
    CHECK_FALSE(synth_params_from_attributes(t, small_params(), &back, &why));
    return why;
  };
  CHECK_THAT(with("synth_cluster_size", "0"), Catch::Contains("synth_cluster_size is out of range"));
  CHECK_THAT(with("synth_delta_mu", "nan"), Catch::Contains("synth_delta_mu is absent or not a finite number"));
  CHECK_THAT(with("synth_delta_mu", "abc"), Catch::Contains("synth_delta_mu"));
  CHECK_THAT(with("synth_min_distance", "-5"), Catch::Contains("synth_min_distance is out of range"));
  CHECK_THAT(with("synth_version", "9"), Catch::Contains("synth_version 9 is not this moba's"));
  text.erase("synth_delta_mu");
  CHECK_FALSE(synth_params_from_attributes(text, small_params(), &back, &why));
  CHECK_THAT(why, Catch::Contains("synth_delta_mu is absent"));
}

// Scores of queries against their planted key, mates, sink, window and noise keys have the
// means the model states, and noise scores have variance 1/d (sigma^2 of §5).
TEST_CASE("synth: measured score statistics match the model's targets", "[synth][stats]") {
  struct Case {
    double delta_mu, mu_cluster, sink, window_bias;
    int64_t window;
  };
  for (const Case c : {Case{0.8, 0.15, 0, 0, 64}, Case{0.6, 0.2, 0.3, 0.05, 32}}) {
    SynthParams p;
    p.n_tokens = 4096;
    p.n_q_heads = 4;
    p.n_kv_heads = 2;
    p.head_dim = 64;
    p.seed = 5;
    p.delta_mu = c.delta_mu;
    p.mu_cluster = c.mu_cluster;
    p.sink = c.sink;
    p.window_bias = c.window_bias;
    p.window = c.window;
    CAPTURE(p.delta_mu, p.mu_cluster, p.sink, p.window_bias, p.window);
    const SynthLayer l = synth_layer(p, 0);
    const int64_t d = p.head_dim, T = p.n_tokens, group = p.n_q_heads / p.n_kv_heads;
    Moments signal, mate, noise, qnorm;
    BatchMoments sink, window;
    uint64_t lcg = 12345;
    for (int64_t h = 0; h < p.n_q_heads; ++h) {
      const int64_t g = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const float* q = l.q.row(h, t);
        qnorm.add(dot(q, q, d));
        const SynthPlant pl = synth_plant(p, 0, h, t);
        if (pl.planted >= 0) {
          signal.add(dot(q, l.k.row(g, pl.planted), d));
          for (int i = 0; i < pl.n_mates; ++i) mate.add(dot(q, l.k.row(g, pl.mates[i]), d));
        }
        if (p.sink != 0) sink.add(dot(q, l.k.row(g, 0), d));
        const int64_t window_start = std::max<int64_t>(0, t - p.window + 1);
        if (p.window_bias != 0 && t > 0) {
          const int64_t j = std::max<int64_t>(window_start, 1);
          if (!in_plant(pl, j)) window.add(dot(q, l.k.row(g, j), d));
        }
        // 16 noise keys per query from anywhere in the sequence (the model does not need
        // causality): not the plant, mates, sink or window.
        for (int s = 0; s < 16; ++s) {
          lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
          const int64_t j = static_cast<int64_t>((lcg >> 33) % static_cast<uint64_t>(T));
          if (in_plant(pl, j) || (p.sink != 0 && j == 0) || (p.window_bias != 0 && j >= window_start && j <= t))
            continue;
          noise.add(dot(q, l.k.row(g, j), d));
        }
      }
    }
    CHECK(std::fabs(signal.mean() - p.delta_mu) < 5 * signal.se());
    CHECK(std::fabs(mate.mean() - p.mu_cluster) < 5 * mate.se());
    CHECK(std::fabs(noise.mean()) < 5 * noise.se());
    CHECK(noise.var() * d == Approx(1.0).epsilon(0.05));
    CHECK(qnorm.mean() == Approx(1.0).epsilon(0.02));
    // Dividing by |k|^2 leaves the planted score with (1 - delta_mu^2)/d of variance at most.
    CHECK(signal.var() * d < 1.0);
    if (p.sink != 0) CHECK(std::fabs(sink.mean() - p.sink) < 5 * sink.se());
    if (p.window_bias != 0) CHECK(std::fabs(window.mean() - p.window_bias) < 5 * window.se());
  }
}

// DESIGN §5 measured on the generated data with the planted block as the signal:
// D = q.kbar_signal - q.kbar_b over the other routable blocks, SNR_emp = mean(D)/std(D),
// compared with Delta_mu_eff sqrt(d/2B); pairwise P(D < 0) with Phi(-SNR). Also checks that
// the highest-scoring routable key lies in the planted block, so §5's signal definition
// (the block holding the highest-probability routable key) finds the plant too.
TEST_CASE("synth: empirical routing SNR matches the FlashMoBA prediction", "[synth][snr]") {
  SynthParams p;  // the defaults: d 64, delta_mu 0.8, m 4, mu_cluster 0.15, min distance 256
  p.n_tokens = 4096;
  p.n_q_heads = 4;
  p.n_kv_heads = 2;
  p.seed = 3;
  const SynthLayer l = synth_layer(p, 0);
  const int64_t d = p.head_dim, T = p.n_tokens, group = p.n_q_heads / p.n_kv_heads;

  for (const int64_t B : {16, 32, 64, 128, 256}) {
    const int64_t n_blocks = T / B;  // T is a multiple of every B here
    std::vector<float> kbar(static_cast<size_t>(p.n_kv_heads * n_blocks * d), 0.0f);
    for (int64_t g = 0; g < p.n_kv_heads; ++g)
      for (int64_t b = 0; b < n_blocks; ++b) {
        float* out = kbar.data() + (g * n_blocks + b) * d;
        for (int64_t i = 0; i < d; ++i) {
          double s = 0;
          for (int64_t j = b * B; j < (b + 1) * B; ++j) s += l.k.row(g, j)[i];
          out[i] = static_cast<float>(s / static_cast<double>(B));
        }
      }
    Moments D;
    double below_zero = 0;
    std::vector<double> score(static_cast<size_t>(n_blocks));
    for (int64_t h = 0; h < p.n_q_heads; ++h) {
      const int64_t g = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const int32_t planted = l.planted[static_cast<size_t>(h * T + t)];
        const int64_t routable = t / B;  // blocks b with (b + 1) B <= t
        if (planted < 0 || routable < 2) continue;
        const int64_t signal = planted / B;
        REQUIRE(signal < routable);
        for (int64_t b = 0; b < routable; ++b)
          score[static_cast<size_t>(b)] = dot(l.q.row(h, t), kbar.data() + (g * n_blocks + b) * d, d);
        for (int64_t b = 0; b < routable; ++b) {
          if (b == signal) continue;
          const double x = score[static_cast<size_t>(signal)] - score[static_cast<size_t>(b)];
          D.add(x);
          below_zero += x < 0;
        }
      }
    }
    const double snr_emp = D.mean() / std::sqrt(D.var());
    const double snr_theory = synth_snr_theory(p, B);
    const double p_fail_emp = below_zero / D.n;
    CAPTURE(B, snr_emp, snr_theory, p_fail_emp, phi(-snr_theory));
    CHECK(snr_emp == Approx(snr_theory).epsilon(0.15));
    CHECK(std::fabs(p_fail_emp - phi(-snr_theory)) < 0.03);
  }

  // The top routable key (by q.k, the order of attention probability) is in the planted
  // 16-group, on every 7th planted query.
  double queries = 0, found = 0;
  for (int64_t h = 0; h < p.n_q_heads; ++h) {
    const int64_t g = h / group;
    for (int64_t t = 0; t < T; t += 7) {
      const int32_t planted = l.planted[static_cast<size_t>(h * T + t)];
      if (planted < 0) continue;
      const int64_t routable_end = t / 16 * 16;  // keys of blocks routable at B = 16
      int64_t best = 0;
      double best_score = -1e30;
      for (int64_t j = 0; j < routable_end; ++j) {
        const double s = dot(l.q.row(h, t), l.k.row(g, j), d);
        if (s > best_score) {
          best_score = s;
          best = j;
        }
      }
      queries += 1;
      found += best / 16 == planted / 16;
    }
  }
  CAPTURE(queries, found);
  CHECK(found / queries > 0.99);
}
