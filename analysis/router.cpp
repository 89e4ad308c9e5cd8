// Routers (analysis/router.h): kconv weights, pooled keys, and one KV group's routing.
#include "analysis/router.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "analysis/gpu/route_gpu.h"
#include "core/errors.h"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"

namespace moba::analysis {
namespace {

std::vector<float> parse_npy(const std::string& path, const std::string& bytes) {
  auto bad = [&](const std::string& why) { return FormatError(path, "npy", why); };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw bad("truncated header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    offset = 12;
  } else {
    throw bad("unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size()) throw bad("truncated header");
  const std::string header = bytes.substr(offset, header_len);
  // The header is a Python dict literal; take the text after each key.
  auto value_of = [&](const std::string& key) -> std::string {
    const size_t at = header.find("'" + key + "'");
    if (at == std::string::npos) throw bad("no '" + key + "' in the header");
    size_t v = header.find(':', at);
    if (v == std::string::npos) throw bad("malformed header");
    ++v;
    while (v < header.size() && header[v] == ' ') ++v;
    return header.substr(v);
  };
  const std::string descr = value_of("descr"), fortran = value_of("fortran_order"), shape_text = value_of("shape");
  if (descr.compare(0, 5, "'<f4'") != 0) throw bad("dtype must be little-endian float32 ('<f4')");
  if (fortran.compare(0, 5, "False") != 0) throw bad("fortran_order must be False");
  if (shape_text.empty() || shape_text[0] != '(' || shape_text.find(')') == std::string::npos)
    throw bad("malformed shape in the header");
  std::vector<int64_t> shape;
  std::stringstream ss(shape_text.substr(1, shape_text.find(')') - 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), ::isspace), item.end());
    if (item.empty()) continue;
    char* end = nullptr;
    const long long n = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || n < 0) throw bad("malformed shape in the header");
    shape.push_back(n);
  }
  if (shape.size() != 2) throw ShapeError(path, "npy", "weights must be 2-D [W, head_dim]");
  const size_t n = static_cast<size_t>(shape[0] * shape[1]);
  const size_t data_at = offset + header_len;
  if (bytes.size() - data_at != n * 4) throw bad("data length does not match the shape");
  std::vector<float> w(n);
  std::memcpy(w.data(), bytes.data() + data_at, n * 4);  // little-endian host
  w.insert(w.begin(), {static_cast<float>(shape[0]), static_cast<float>(shape[1])});
  return w;  // [rows, cols, values...]
}

std::vector<float> parse_text(const std::string& path, const std::string& bytes) {
  std::vector<float> values;
  int64_t rows = 0, cols = -1;
  std::istringstream in(bytes);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream ls(line);
    std::string tok;
    int64_t n = 0;
    while (ls >> tok) {
      char* end = nullptr;
      const double x = std::strtod(tok.c_str(), &end);
      if (*end != '\0') throw FormatError(path, "line " + std::to_string(line_no), "'" + tok + "' is not a number");
      values.push_back(static_cast<float>(x));
      ++n;
    }
    if (n == 0) continue;
    if (cols >= 0 && n != cols)
      throw ShapeError(path, "line " + std::to_string(line_no),
                       std::to_string(n) + " values, previous rows have " + std::to_string(cols));
    cols = n;
    ++rows;
  }
  if (rows == 0) throw FormatError(path, "weights", "no numbers in the file");
  values.insert(values.begin(), {static_cast<float>(rows), static_cast<float>(cols)});
  return values;
}

}  // namespace

std::vector<float> load_kconv_weights(const std::string& path, int width, int64_t head_dim) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FileNotFoundError(path, "", "cannot open the kconv weights file");
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> parsed = bytes.compare(0, 6, "\x93NUMPY") == 0 ? parse_npy(path, bytes) : parse_text(path, bytes);
  const auto rows = static_cast<int64_t>(parsed[0]), cols = static_cast<int64_t>(parsed[1]);
  parsed.erase(parsed.begin(), parsed.begin() + 2);
  if (rows != width || cols != head_dim)
    throw ShapeError(path, "weights",
                     "shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "], expected [W=" +
                         std::to_string(width) + ", head_dim=" + std::to_string(head_dim) + "]");
  for (size_t i = 0; i < parsed.size(); ++i)
    if (!std::isfinite(parsed[i]))
      throw ValueError(path, "weights", "non-finite value at row " + std::to_string(i / cols) + ", column " +
                                            std::to_string(i % cols));
  return parsed;
}

namespace {
DType operand_dtype(DType dump_dtype, const RoutingOptions& opt) {
  return opt.precision == kernels::Precision::exact ? dump_dtype : DType::f32;
}
}  // namespace

void apply_precision(kernels::GateTopkParams& p, DType dump_dtype, const RoutingOptions& opt) {
  p.precision = opt.precision;
  p.q.dtype = operand_dtype(dump_dtype, opt);
}

void apply_precision(kernels::MobaAttentionParams& p, DType dump_dtype, const RoutingOptions& opt, bool k_from_dump) {
  p.precision = opt.precision;
  p.q.dtype = operand_dtype(dump_dtype, opt);
  p.k.dtype = k_from_dump ? operand_dtype(dump_dtype, opt) : DType::f32;
  p.v.dtype = operand_dtype(dump_dtype, opt);
}

void apply_precision(kernels::DensePassParams& p, DType dump_dtype, const RoutingOptions& opt) {
  p.precision = opt.precision;
  p.q.dtype = operand_dtype(dump_dtype, opt);
  p.k.dtype = operand_dtype(dump_dtype, opt);
  p.v.dtype = operand_dtype(dump_dtype, opt);
}

Tensor3 kconv_keys(const TensorView& k, const RoutingOptions& opt, Device device) {
  Tensor3 out(k.n_heads, k.n_tokens, k.head_dim);
  kernels::KconvParams p;
  p.k = k;
  p.width = opt.kconv_width;
  p.weights = opt.kconv_weights.empty() ? nullptr : opt.kconv_weights.data();
  p.out = out.data.data();
  run_kconv(p, device);
  return out;
}

std::vector<float> pooled_keys(const TensorView& k, int64_t block_size, DType dump_dtype,
                               const RoutingOptions& opt, Device device) {
  std::vector<float> kbar(static_cast<size_t>(k.n_heads * kernels::block_count(k.n_tokens, block_size) * k.head_dim));
  kernels::BlockPoolParams p;
  p.k = k;
  p.block_size = block_size;
  p.pool_dtype = opt.pool_fp32 ? DType::f32 : dump_dtype;
  p.mean = kbar.data();
  run_block_pool(p, device);
  return kbar;
}

kernels::DensePassParams block_mass_pass(const TensorView& q, const TensorView& k, int64_t query_begin,
                                         int64_t query_count, float* lse, const std::vector<int64_t>& block_sizes,
                                         const std::vector<float*>& block_mass) {
  kernels::DensePassParams dp;
  dp.q = q;
  dp.k = k;
  dp.query_begin = query_begin;
  dp.query_count = query_count;
  dp.lse = lse;
  dp.n_block_sizes = static_cast<int>(block_sizes.size());
  for (size_t i = 0; i < block_sizes.size() && i < static_cast<size_t>(kernels::kDensePassMaxBlockSizes); ++i) {
    dp.block_sizes[i] = block_sizes[i];
    dp.block_mass[i] = block_mass[i];
  }
  return dp;
}

void select_oracle_shared(const float* block_mass, int64_t n_heads, int64_t query_count, int64_t n_blocks,
                          int64_t query_begin, int64_t block_size, kernels::TieRule tie,
                          const std::vector<OracleTarget>& targets) {
  std::vector<float> summed(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < query_count; ++i) {
    const int64_t c = (query_begin + i) / block_size;
    std::fill(summed.begin(), summed.end(), 0.0f);
    for (int64_t h = 0; h < n_heads; ++h)  // head order, fp32
      for (int64_t b = 0; b < c; ++b) summed[b] += block_mass[(h * query_count + i) * n_blocks + b];
    for (const OracleTarget& target : targets)
      kernels::select_blocks_row(summed.data(), c, target.top_k, tie, target.selected + i * target.top_k);
  }
}

GateIndex gate_index(const std::vector<RouterKind>& routers) {
  GateIndex g;
  for (const RouterKind r : routers) {
    g.of_router.push_back(router_is_gate(r) ? static_cast<int>(g.kinds.size()) : -1);
    if (router_is_gate(r)) g.kinds.push_back(r);
  }
  return g;
}

void setup_gate_routers(const TensorView& q, const TensorView& k, DType dump_dtype,
                        const std::vector<RouterKind>& routers, const RoutingOptions& opt,
                        const std::vector<int64_t>& block_sizes, Device device, GateRouters* out) {
  out->gates.clear();
  out->gate_of_router = gate_index(routers).of_router;
  out->score_keys.assign(routers.size(), {});
  for (size_t ri = 0; ri < routers.size(); ++ri) {
    const RouterKind kind = routers[ri];
    if (router_is_score_row(kind))
      for (const int64_t B : block_sizes)
        out->score_keys[ri].push_back(block_score_keys(kind, k, B, dump_dtype, opt, device));
    if (!router_is_gate(kind)) continue;
    if (kind == RouterKind::moba_kconv && out->conv.data.empty()) out->conv = kconv_keys(k, opt, device);
    GateRouter g;
    g.kind = kind;
    g.keys = kind == RouterKind::moba_kconv ? out->conv.view() : k;
    for (const int64_t B : block_sizes) {
      g.kbar.push_back(pooled_keys(g.keys, B, dump_dtype, opt, device));
      kernels::GateTopkParams gp;
      gp.q = q;
      gp.kbar = g.kbar.back().data();
      gp.n_kv_heads = 1;
      gp.block_size = B;
      gp.top_k = 1;
      gp.tie = opt.tie;
      gp.gqa = opt.gqa;
      apply_precision(gp, dump_dtype, opt);
      g.select_params.push_back(gp);
      gp.gqa = kernels::GqaMode::per_head;
      g.snr_params.push_back(gp);
    }
    out->gates.push_back(std::move(g));
  }
}

BlockScoreKeys block_score_keys(RouterKind kind, const TensorView& k, int64_t block_size, DType dump_dtype,
                                const RoutingOptions& opt, Device device) {
  BlockScoreKeys out;
  out.kind = kind;
  out.block_size = block_size;
  if (kind == RouterKind::quest) {
    const size_t n = static_cast<size_t>(k.n_heads * kernels::block_count(k.n_tokens, block_size) * k.head_dim);
    std::vector<float> mean(n);
    out.kmin.resize(n);
    out.kmax.resize(n);
    kernels::BlockPoolParams p;
    p.k = k;
    p.block_size = block_size;
    p.pool_dtype = DType::f32;
    p.mean = mean.data();
    p.min = out.kmin.data();
    p.max = out.kmax.data();
    kernels::block_pool_cpu(p);  // min/max are exact key values on any backend
  } else if (kind == RouterKind::minference_bs || kind == RouterKind::moba_threshold ||
             kind == RouterKind::nsa_shared) {
    out.kbar = pooled_keys(k, block_size, dump_dtype, opt, device);
  }
  return out;
}

namespace {
// One head's row (block_score_row) into row[0, c).
void head_score_row(const BlockScoreKeys& keys, const TensorView& q, int64_t h, int64_t t, float* row) {
  const int64_t B = keys.block_size, c = t / B, d = q.head_dim;
  const float* qt = q.row(h, t);
  if (keys.kind == RouterKind::quest) {
    for (int64_t b = 0; b < c; ++b) {
      const float* lo = keys.kmin.data() + b * d;
      const float* hi = keys.kmax.data() + b * d;
      float s = 0.0f;
      for (int64_t ch = 0; ch < d; ++ch) {
        const float a = qt[ch] * lo[ch], e = qt[ch] * hi[ch];
        s += std::max(a, e);
      }
      row[b] = s;
    }
  } else if (keys.kind == RouterKind::minference_bs) {
    const int64_t t_lo = c * B, t_hi = std::min((c + 1) * B, q.n_tokens);
    std::vector<float> qbar(static_cast<size_t>(d));
    for (int64_t ch = 0; ch < d; ++ch) {
      double acc = 0.0;
      for (int64_t u = t_lo; u < t_hi; ++u) acc += q.row(h, u)[ch];
      qbar[ch] = static_cast<float>(acc / static_cast<double>(t_hi - t_lo));
    }
    for (int64_t b = 0; b < c; ++b) {
      const float* kb = keys.kbar.data() + b * d;
      float s = 0.0f;
      for (int64_t ch = 0; ch < d; ++ch) s += qbar[ch] * kb[ch];
      row[b] = s;
    }
  } else if (keys.kind == RouterKind::moba_threshold || keys.kind == RouterKind::nsa_shared) {
    for (int64_t b = 0; b < c; ++b) {  // moba's gate score: fp32, channel order
      const float* kb = keys.kbar.data() + b * d;
      float s = 0.0f;
      for (int64_t ch = 0; ch < d; ++ch) s += qt[ch] * kb[ch];
      row[b] = s;
    }
  } else {  // sink-window
    for (int64_t b = 0; b < c; ++b) row[b] = static_cast<float>(b);
    if (c > 0) row[0] = std::numeric_limits<float>::infinity();
  }
}
// p[b] = softmax over b < c of scale * s[b], in double (max subtracted). NaN scores count as
// -inf (no mass); a row of no finite score gives zeros.
void softmax_routable(const float* s, int64_t c, double scale, double* p) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < c; ++b)
    if (!std::isnan(s[b])) mx = std::max(mx, scale * static_cast<double>(s[b]));
  double sum = 0.0;
  for (int64_t b = 0; b < c; ++b) {
    p[b] = std::isnan(s[b]) || !std::isfinite(mx) ? 0.0 : std::exp(scale * static_cast<double>(s[b]) - mx);
    sum += p[b];
  }
  if (sum > 0.0)
    for (int64_t b = 0; b < c; ++b) p[b] /= sum;
}
}  // namespace

int select_mass_row(const float* rank, const double* mass, double mass_current, int64_t c, int top_k, double tau,
                    kernels::TieRule tie, int32_t* selected) {
  const int64_t n_pick = std::min<int64_t>(top_k - 1, c);
  int cnt = 0;
  if (n_pick > 0 && mass_current < tau) {
    std::vector<int32_t> order(static_cast<size_t>(c));
    for (int64_t b = 0; b < c; ++b) order[b] = static_cast<int32_t>(b);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return kernels::ranks_before(rank[a], a, rank[b], b, tie); });
    double cum = mass_current;
    while (cnt < n_pick && cum < tau) {
      selected[cnt] = order[cnt];
      cum += mass[order[cnt]];
      ++cnt;
    }
    std::sort(selected, selected + cnt);
  }
  selected[cnt++] = static_cast<int32_t>(c);
  for (int i = cnt; i < top_k; ++i) selected[i] = -1;
  return cnt;
}

int select_threshold_host(const float* scores, int64_t c, int top_k, double tau, int64_t head_dim,
                          kernels::TieRule tie, int32_t* selected) {
  std::vector<double> p(static_cast<size_t>(c));
  softmax_routable(scores, c, 1.0 / std::sqrt(static_cast<double>(head_dim)), p.data());
  return select_mass_row(scores, p.data(), 0.0, c, top_k, tau, tie, selected);
}

int select_topp_host(const float* block_mass, int64_t c, int top_k, double tau, kernels::TieRule tie,
                     int32_t* selected) {
  std::vector<double> m(block_mass, block_mass + c);
  return select_mass_row(block_mass, m.data(), static_cast<double>(block_mass[c]), c, top_k, tau, tie, selected);
}

void select_topp_shared(const float* block_mass, int64_t n_heads, int64_t query_count, int64_t n_blocks,
                        int64_t query_begin, int64_t block_size, kernels::TieRule tie, double tau,
                        const std::vector<OracleTarget>& targets) {
  std::vector<float> summed(static_cast<size_t>(n_blocks));
  std::vector<double> mean(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < query_count; ++i) {
    const int64_t c = (query_begin + i) / block_size;
    std::fill(summed.begin(), summed.end(), 0.0f);
    std::fill(mean.begin(), mean.end(), 0.0);
    for (int64_t h = 0; h < n_heads; ++h)  // head order: fp32 for the ranking, double for the mass
      for (int64_t b = 0; b <= c; ++b) {
        const float m = block_mass[(h * query_count + i) * n_blocks + b];
        summed[b] += m;
        mean[b] += m;
      }
    for (int64_t b = 0; b <= c; ++b) mean[b] /= static_cast<double>(n_heads);
    for (const OracleTarget& target : targets)
      select_mass_row(summed.data(), mean.data(), mean[c], c, target.top_k, tau, tie,
                      target.selected + i * target.top_k);
  }
}

void block_score_row(const BlockScoreKeys& keys, const TensorView& q, int64_t q_head, bool shared, int64_t t,
                     float* row, float* tmp) {
  const int64_t c = t / keys.block_size;
  if (keys.kind == RouterKind::nsa_shared) {
    // Per head the softmax over the routable blocks of s / sqrt(d), summed over every head of
    // the group in head order, in double; rounded once.
    std::vector<double> sum(static_cast<size_t>(c), 0.0), p(static_cast<size_t>(c));
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.head_dim));
    for (int64_t h = 0; h < q.n_heads; ++h) {
      head_score_row(keys, q, h, t, tmp);
      softmax_routable(tmp, c, scale, p.data());
      for (int64_t b = 0; b < c; ++b) sum[b] += p[b];
    }
    for (int64_t b = 0; b < c; ++b) row[b] = static_cast<float>(sum[b]);
    return;
  }
  if (!shared || keys.kind == RouterKind::sink_window) {
    head_score_row(keys, q, q_head, t, row);
    return;
  }
  head_score_row(keys, q, 0, t, row);
  for (int64_t h = 1; h < q.n_heads; ++h) {
    head_score_row(keys, q, h, t, tmp);
    for (int64_t b = 0; b < c; ++b) row[b] += tmp[b];
  }
}

void gate_scores_tile_host(const kernels::GateTopkParams& p, int64_t q_head, int64_t t_begin, int64_t n,
                           float* scores) {
  kernels::gate_scores_tile_cpu(p, q_head, t_begin, n, scores);
}

int select_blocks_host(const float* scores, int64_t current_block, int top_k, kernels::TieRule tie,
                       int32_t* selected) {
  return kernels::select_blocks_row(scores, current_block, top_k, tie, selected);
}

void route_group(const TensorView& q, const TensorView& k, const TensorView& v, DType dump_dtype,
                 RouterKind router, const RoutingOptions& opt, int64_t block_size, int top_k,
                 Device device, int32_t* selected, float* out, float* lse, int64_t query_chunk) {
  const int64_t G = q.n_heads, T = q.n_tokens, B = block_size;
  const int64_t n_blocks = kernels::block_count(T, B);
  Tensor3 conv;
  if (router == RouterKind::moba_kconv) conv = kconv_keys(k, opt, device);
  const TensorView route_k = router == RouterKind::moba_kconv ? conv.view() : k;

  if (device == Device::cuda && route_gpu_unsupported(router, T, q.head_dim, B).empty()) {
    route_group_gpu(q, k, dump_dtype, router, opt, B, top_k, selected);  // rows and selection on the device
  } else if (router_is_score_row(router)) {
    const BlockScoreKeys keys = block_score_keys(router, k, B, dump_dtype, opt, device);
    // nsa-shared is one choice per KV group under either --gqa.
    const bool shared = opt.gqa == kernels::GqaMode::shared || router == RouterKind::nsa_shared;
    const int64_t n_choosers = shared ? 1 : G;
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(n_blocks + 1)), tmp(static_cast<size_t>(n_blocks + 1));
#pragma omp for schedule(dynamic, 64)
      for (int64_t item = 0; item < n_choosers * T; ++item) {
        const int64_t h = item / T, t = item % T;
        block_score_row(keys, q, h, shared, t, row.data(), tmp.data());
        int32_t* sel = selected + (h * T + t) * top_k;
        if (router == RouterKind::moba_threshold)
          select_threshold_host(row.data(), t / B, top_k, opt.tau, q.head_dim, opt.tie, sel);
        else
          kernels::select_blocks_row(row.data(), t / B, top_k, opt.tie, sel);
        if (shared)
          for (int64_t hh = 1; hh < G; ++hh) std::copy(sel, sel + top_k, selected + (hh * T + t) * top_k);
      }
    }
  } else if (router == RouterKind::oracle || router == RouterKind::oracle_topp) {
    const bool topp = router == RouterKind::oracle_topp;
    // Exact block masses, one query chunk at a time: [G, chunk, n_blocks] floats at most.
    const int64_t C = std::max<int64_t>(1, query_chunk);
    std::vector<float> mass(static_cast<size_t>(G * std::min(C, T) * n_blocks));
    std::vector<float> chunk_lse(static_cast<size_t>(G * std::min(C, T)));
    std::vector<int32_t> chunk_selected;  // [chunk, top_k] under `shared`
    for (int64_t t0 = 0; t0 < T; t0 += C) {
      const int64_t nq = std::min(C, T - t0);
      kernels::DensePassParams dp = block_mass_pass(q, k, t0, nq, chunk_lse.data(), {B}, {mass.data()});
      apply_precision(dp, dump_dtype, opt);
      run_dense_pass(dp, device);
      if (opt.gqa == kernels::GqaMode::shared) {
        chunk_selected.resize(static_cast<size_t>(nq * top_k));
        if (topp)
          select_topp_shared(mass.data(), G, nq, n_blocks, t0, B, opt.tie, opt.tau, {{top_k, chunk_selected.data()}});
        else
          select_oracle_shared(mass.data(), G, nq, n_blocks, t0, B, opt.tie, {{top_k, chunk_selected.data()}});
        for (int64_t h = 0; h < G; ++h)
          std::copy(chunk_selected.begin(), chunk_selected.end(), selected + (h * T + t0) * top_k);
        continue;
      }
      for (int64_t h = 0; h < G; ++h)
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t t = t0 + i;
          const float* row = mass.data() + (h * nq + i) * n_blocks;  // [G, nq, n_blocks]
          if (topp)
            select_topp_host(row, t / B, top_k, opt.tau, opt.tie, selected + (h * T + t) * top_k);
          else
            kernels::select_blocks_row(row, t / B, top_k, opt.tie, selected + (h * T + t) * top_k);
        }
    }
  } else {
    const std::vector<float> kbar = pooled_keys(route_k, B, dump_dtype, opt, device);
    kernels::GateTopkParams gp;
    gp.q = q;
    gp.kbar = kbar.data();
    gp.n_kv_heads = 1;
    gp.block_size = B;
    gp.top_k = top_k;
    gp.tie = opt.tie;
    gp.gqa = opt.gqa;
    gp.selected = selected;
    apply_precision(gp, dump_dtype, opt);
    run_gate_topk(gp, device);
  }

  if (out) {
    kernels::MobaAttentionParams ap;
    ap.q = q;
    ap.k = router == RouterKind::moba_kconv && opt.kconv_both ? conv.view() : k;
    ap.v = v;
    ap.selected = selected;
    ap.top_k = top_k;
    ap.block_size = B;
    ap.out = out;
    ap.lse = lse;
    apply_precision(ap, dump_dtype, opt, !(router == RouterKind::moba_kconv && opt.kconv_both));
    run_moba_attention(ap, device);
  }
}

}  // namespace moba::analysis
