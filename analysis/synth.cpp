#include "analysis/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/errors.h"
#include "core/json_writer.h"

namespace moba::analysis {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int kGroup = 16;  // plants and their mates share an aligned group of this many keys
constexpr int kVersion = 1;  // bump when the same seed would draw different tensors

// Stream tags: each row of each tensor draws from its own stream, so rows are independent
// of the order (and thread) they are generated in.
enum Stream : uint64_t { kStreamKeys = 1, kStreamValues = 2, kStreamQueryNoise = 3, kStreamPlant = 4 };

// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t stream_key(uint64_t seed, Stream stream, uint64_t layer, uint64_t head, uint64_t token) {
  uint64_t h = mix64(seed + kGolden);
  h = mix64(h ^ (static_cast<uint64_t>(stream) * kGolden));
  h = mix64(h ^ (layer + 1) * 0xD1B54A32D192ED03ull);
  h = mix64(h ^ (head + 1) * 0xAEF17502108EF2D9ull);
  return mix64(h ^ (token + 1) * 0xF1357AEA2E62A9C5ull);
}

// SplitMix64 generator over one stream; normals by Box-Muller with our own code, since
// std::normal_distribution differs between standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t key) : state_(key) {}
  uint64_t next() {
    state_ += kGolden;
    return mix64(state_);
  }
  // Uniform in (0, 1], 53 random bits.
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }
  // Uniform integer in [0, n), n >= 1 (multiply-shift; bias below 2^-64 * n).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // n independent N(0, 1) draws.
  void normals(double* out, int64_t n) {
    for (int64_t i = 0; i < n; i += 2) {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      const double theta = kTwoPi * uniform();
      out[i] = r * std::cos(theta);
      if (i + 1 < n) out[i + 1] = r * std::sin(theta);
    }
  }

 private:
  uint64_t state_;
};

void require_valid(const SynthParams& p) {
  const std::string reason = synth_can_run(p);
  if (!reason.empty()) throw UsageError("synth: " + reason);
}

// Fills t [n_heads, n_tokens, head_dim] with N(0, I/d) rows, rounded to p.dtype.
Tensor3 gaussian_rows(const SynthParams& p, int layer, Stream stream, int64_t n_heads) {
  Tensor3 t(n_heads, p.n_tokens, p.head_dim, p.dtype);
  const int64_t d = p.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const int64_t rows = n_heads * p.n_tokens;
#pragma omp parallel
  {
    std::vector<double> z(static_cast<size_t>(d));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = r / p.n_tokens, tok = r % p.n_tokens;
      Rng rng(stream_key(p.seed, stream, static_cast<uint64_t>(layer), static_cast<uint64_t>(h),
                         static_cast<uint64_t>(tok)));
      rng.normals(z.data(), d);
      float* out = t.row(h, tok);
      for (int64_t i = 0; i < d; ++i) out[i] = round_to(p.dtype, static_cast<float>(z[i] * scale));
    }
  }
  return t;
}

}  // namespace

std::string synth_can_run(const SynthParams& p) {
  std::ostringstream why;
  if (p.n_tokens < 1 || p.n_tokens > INT32_MAX)
    why << "n_tokens = " << p.n_tokens << " must be in [1, 2^31 - 1] (planted positions are int32)";
  else if (p.n_layers < 1)
    why << "n_layers = " << p.n_layers << " must be >= 1";
  else if (p.n_q_heads < 1 || p.n_kv_heads < 1)
    why << "n_q_heads = " << p.n_q_heads << " and n_kv_heads = " << p.n_kv_heads << " must be >= 1";
  else if (p.n_q_heads % p.n_kv_heads != 0)
    why << "n_q_heads = " << p.n_q_heads << " must be a multiple of n_kv_heads = " << p.n_kv_heads;
  else if (p.head_dim < 8)
    why << "head_dim = " << p.head_dim << " must be >= 8";
  else if (p.head_dim > (int64_t{1} << 16) || p.n_q_heads > (int64_t{1} << 16) ||
           p.n_q_heads * p.n_tokens > (int64_t{1} << 40) / p.head_dim)
    why << "shape " << p.n_q_heads << " x " << p.n_tokens << " x " << p.head_dim << " is too large";
  else if (!std::isfinite(p.delta_mu) || p.delta_mu < 0 || p.delta_mu >= 1)
    why << "delta_mu = " << p.delta_mu << " must be in [0, 1)";
  else if (p.cluster_size < 1 || p.cluster_size > kGroup)
    why << "cluster_size = " << p.cluster_size << " must be in [1, " << kGroup
        << "] (the cluster lies in one aligned " << kGroup << "-token group)";
  else if (!std::isfinite(p.mu_cluster) || p.mu_cluster < -1 || p.mu_cluster > 1)
    why << "mu_cluster = " << p.mu_cluster << " must be in [-1, 1]";
  else if (!std::isfinite(p.sink) || p.sink < -1 || p.sink > 1)
    why << "sink = " << p.sink << " must be in [-1, 1]";
  else if (!std::isfinite(p.window_bias) || p.window_bias < -1 || p.window_bias > 1)
    why << "window_bias = " << p.window_bias << " must be in [-1, 1]";
  else if (p.window < 1)
    why << "window = " << p.window << " must be >= 1";
  else if (p.min_distance < kGroup || p.min_distance > INT32_MAX)
    why << "min_distance = " << p.min_distance << " must be in [" << kGroup
        << ", 2^31 - 1] (the planted group must lie before the query)";
  else if (!std::isfinite(p.planted_fraction) || p.planted_fraction < 0 || p.planted_fraction > 1)
    why << "planted_fraction = " << p.planted_fraction << " must be in [0, 1]";
  if (!why.str().empty()) return why.str();

  const double d = static_cast<double>(p.head_dim);
  const double n_window = static_cast<double>(std::min(p.window, p.n_tokens));
  const double budget = d / (d - 2) *
                        (p.delta_mu * p.delta_mu + (p.cluster_size - 1) * p.mu_cluster * p.mu_cluster +
                         p.sink * p.sink + n_window * p.window_bias * p.window_bias);
  if (budget >= 1) {
    why << "norm budget d/(d-2) * (delta_mu^2 + (m-1) mu_cluster^2 + sink^2 + window * window_bias^2) = "
        << format_g(budget, 6) << " must be < 1 so that E|q|^2 = 1 (sigma^2 = 1/d); lower delta_mu, "
        << "cluster_size, mu_cluster, sink or window_bias";
  }
  return why.str();
}

SynthPlant synth_plant(const SynthParams& p, int layer, int64_t q_head, int64_t t) {
  SynthPlant plant;
  Rng rng(stream_key(p.seed, kStreamPlant, static_cast<uint64_t>(layer), static_cast<uint64_t>(q_head),
                     static_cast<uint64_t>(t)));
  const bool drawn = rng.uniform() <= p.planted_fraction;  // uniform() > 0, so fraction 0 never plants
  // With a sink, key 0's group is left out so the sink never doubles as a plant or a mate.
  const int64_t lowest = p.sink != 0 ? kGroup : 0;
  const int64_t highest = t - p.min_distance;
  if (!drawn || highest < lowest) return plant;
  plant.planted = lowest + static_cast<int64_t>(rng.below(static_cast<uint64_t>(highest - lowest + 1)));
  // Partial Fisher-Yates over the other 15 offsets of the planted key's group.
  const int64_t group = plant.planted / kGroup * kGroup;
  int offsets[kGroup - 1];
  for (int i = 0, o = 0; o < kGroup; ++o)
    if (group + o != plant.planted) offsets[i++] = o;
  plant.n_mates = p.cluster_size - 1;
  for (int i = 0; i < plant.n_mates; ++i) {
    const int j = i + static_cast<int>(rng.below(static_cast<uint64_t>(kGroup - 1 - i)));
    std::swap(offsets[i], offsets[j]);
  }
  // Ascending (insertion sort: at most 15 entries).
  for (int i = 0; i < plant.n_mates; ++i) {
    int j = i;
    for (; j > 0 && plant.mates[j - 1] > group + offsets[i]; --j) plant.mates[j] = plant.mates[j - 1];
    plant.mates[j] = group + offsets[i];
  }
  return plant;
}

Tensor3 synth_keys(const SynthParams& p, int layer) {
  require_valid(p);
  return gaussian_rows(p, layer, kStreamKeys, p.n_kv_heads);
}

Tensor3 synth_values(const SynthParams& p, int layer) {
  require_valid(p);
  return gaussian_rows(p, layer, kStreamValues, p.n_kv_heads);
}

Tensor3 synth_queries(const SynthParams& p, int layer, const Tensor3& keys,
                      std::vector<int32_t>* planted) {
  require_valid(p);
  if (keys.n_heads != p.n_kv_heads || keys.n_tokens != p.n_tokens || keys.head_dim != p.head_dim)
    throw UsageError("synth: keys do not have the shape of the parameters");
  const int64_t d = p.head_dim, T = p.n_tokens, group_size = p.n_q_heads / p.n_kv_heads;
  const double dd = static_cast<double>(d);
  const double norm_factor = dd / (dd - 2);  // E[1 / |k|^2] for k ~ N(0, I/d)

  // 1 / |k_j|^2 of the stored (rounded) keys: [n_kv_heads, n_tokens].
  std::vector<double> inv_norm2(static_cast<size_t>(p.n_kv_heads * T));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < p.n_kv_heads * T; ++r) {
    const float* k = keys.data.data() + r * d;
    double s = 0;
    for (int64_t i = 0; i < d; ++i) s += static_cast<double>(k[i]) * k[i];
    inv_norm2[static_cast<size_t>(r)] = 1.0 / s;
  }

  Tensor3 q(p.n_q_heads, T, d, p.dtype);
  planted->assign(static_cast<size_t>(p.n_q_heads * T), -1);
  const int64_t rows = p.n_q_heads * T;
#pragma omp parallel
  {
    std::vector<double> acc(static_cast<size_t>(d));
    std::vector<int64_t> role_pos;
    std::vector<double> role_coef;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = r / T, t = r % T, g = h / group_size;
      const SynthPlant plant = synth_plant(p, layer, h, t);
      (*planted)[static_cast<size_t>(r)] = static_cast<int32_t>(plant.planted);

      // Each related key gets exactly one role: plant, mate, sink, then window.
      role_pos.clear();
      role_coef.clear();
      if (plant.planted >= 0) {
        role_pos.push_back(plant.planted);
        role_coef.push_back(p.delta_mu);
        for (int i = 0; i < plant.n_mates; ++i) {
          role_pos.push_back(plant.mates[i]);
          role_coef.push_back(p.mu_cluster);
        }
      }
      const size_t n_plant_roles = role_pos.size();
      if (p.sink != 0) {
        role_pos.push_back(0);
        role_coef.push_back(p.sink);
      }
      if (p.window_bias != 0) {
        for (int64_t j = std::max<int64_t>(0, t - p.window + 1); j <= t; ++j) {
          if (j == 0 && p.sink != 0) continue;
          const bool taken = std::find(role_pos.begin(), role_pos.begin() + static_cast<long>(n_plant_roles),
                                       j) != role_pos.begin() + static_cast<long>(n_plant_roles);
          if (taken) continue;
          role_pos.push_back(j);
          role_coef.push_back(p.window_bias);
        }
      }
      double sum_c2 = 0;
      for (const double c : role_coef) sum_c2 += c * c;
      const double a = std::sqrt(std::max(0.0, 1.0 - norm_factor * sum_c2));

      Rng rng(stream_key(p.seed, kStreamQueryNoise, static_cast<uint64_t>(layer), static_cast<uint64_t>(h),
                         static_cast<uint64_t>(t)));
      rng.normals(acc.data(), d);
      const double z_scale = a / std::sqrt(dd);
      for (int64_t i = 0; i < d; ++i) acc[static_cast<size_t>(i)] *= z_scale;
      for (size_t s = 0; s < role_pos.size(); ++s) {
        const float* k = keys.row(g, role_pos[s]);
        const double c = role_coef[s] * inv_norm2[static_cast<size_t>(g * T + role_pos[s])];
        for (int64_t i = 0; i < d; ++i) acc[static_cast<size_t>(i)] += c * k[i];
      }
      float* out = q.row(h, t);
      for (int64_t i = 0; i < d; ++i) out[i] = round_to(p.dtype, static_cast<float>(acc[static_cast<size_t>(i)]));
    }
  }
  return q;
}

SynthLayer synth_layer(const SynthParams& p, int layer) {
  SynthLayer out;
  out.k = synth_keys(p, layer);
  out.v = synth_values(p, layer);
  out.q = synth_queries(p, layer, out.k, &out.planted);
  return out;
}

double synth_delta_mu_eff(const SynthParams& p) { return p.delta_mu + (p.cluster_size - 1) * p.mu_cluster; }

double synth_snr_theory(const SynthParams& p, int64_t block_size) {
  return synth_delta_mu_eff(p) * std::sqrt(static_cast<double>(p.head_dim) / (2.0 * static_cast<double>(block_size)));
}

std::map<std::string, double> synth_attributes(const SynthParams& p) {
  return {
      {"synth_version", kVersion},
      {"synth_seed", static_cast<double>(p.seed)},
      {"synth_delta_mu", p.delta_mu},
      {"synth_cluster_size", static_cast<double>(p.cluster_size)},
      {"synth_mu_cluster", p.mu_cluster},
      {"synth_sink", p.sink},
      {"synth_window_bias", p.window_bias},
      {"synth_window", static_cast<double>(p.window)},
      {"synth_min_distance", static_cast<double>(p.min_distance)},
      {"synth_planted_fraction", p.planted_fraction},
      {"synth_delta_mu_eff", synth_delta_mu_eff(p)},
  };
}

std::string synth_source(const SynthParams& p) {
  return "moba synth v" + std::to_string(kVersion) +
         ": FlashMoBA statistical model; keys, values N(0, I/d); q = a z + sum_j c_j k_j / |k_j|^2 "
         "(planted key delta_mu, m-1 mates mu_cluster, sink, window bias); planted truth in "
         "/layers/L/planted; seed " + std::to_string(p.seed);
}

bool synth_params_from_attributes(const std::map<std::string, std::string>& attributes,
                                  const SynthParams& shape, SynthParams* out, std::string* why) {
  const auto fail = [&](const std::string& problem) {
    if (why) *why = problem;
    return false;
  };
  const char* bad = nullptr;  // the first attribute absent or not a finite number
  auto number = [&](const char* name, double* value) {
    const auto it = attributes.find(name);
    char* end = nullptr;
    if (it != attributes.end()) *value = std::strtod(it->second.c_str(), &end);
    const bool ok = it != attributes.end() && !it->second.empty() && *end == '\0' && std::isfinite(*value);
    if (!ok && !bad) bad = name;
    return ok;
  };
  SynthParams p = shape;
  double version, seed, m, window, min_distance;
  if (!number("synth_version", &version) || !number("synth_seed", &seed) ||
      !number("synth_delta_mu", &p.delta_mu) || !number("synth_cluster_size", &m) ||
      !number("synth_mu_cluster", &p.mu_cluster) || !number("synth_sink", &p.sink) ||
      !number("synth_window_bias", &p.window_bias) || !number("synth_window", &window) ||
      !number("synth_min_distance", &min_distance) ||
      !number("synth_planted_fraction", &p.planted_fraction))
    return fail(std::string(bad) + " is absent or not a finite number");
  if (version != kVersion) return fail("synth_version " + attributes.at("synth_version") + " is not this moba's (" +
                                       std::to_string(kVersion) + ")");
  if (seed < 0 || seed >= 0x1.0p64) return fail("synth_seed is out of range");
  if (m < 1 || m > kGroup) return fail("synth_cluster_size is out of range [1, " + std::to_string(kGroup) + "]");
  if (window < 1 || window > 0x1.0p62) return fail("synth_window is out of range");
  if (min_distance < kGroup || min_distance > INT32_MAX)
    return fail("synth_min_distance is out of range [" + std::to_string(kGroup) + ", 2^31)");
  p.seed = static_cast<uint64_t>(seed);
  p.cluster_size = static_cast<int>(m);
  p.window = static_cast<int64_t>(window);
  p.min_distance = static_cast<int64_t>(min_distance);
  if (const std::string e = synth_can_run(p); !e.empty()) return fail(e);
  *out = p;
  return true;
}

}  // namespace moba::analysis
