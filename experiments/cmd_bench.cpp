// `moba bench [--json] [--tokens LIST] [--suite b1,b3] [--reps N] [--b3-max-tokens N] [--configs B:k,...]
//             [--tuning key=value,...] [--precision fast|exact]`
//
// PERF.md benchmarks on the CUDA backend, timed with device events after a warm-up, median
// of --reps runs, inputs drawn at random (bf16, larger than L2):
//   B1  routing (block_pool + gate_topk) + block-sparse attention forward, bf16,
//       batch 2 x 16 heads (folded into 32 heads) x head dim 128, causal, for each T and
//       (B, k) in {(128, 8), (64, 16), (32, 32), (16, 64)} (--configs picks others, e.g. 128:8);
//   B2  routing's share of B1 (reported beside B1);
//   B3  the analysis pass: dense_pass with lse, o_full and block masses for B in
//       {16, 32, 64, 128}, streamed over query chunks (chunk sized so the mass buffers stay
//       under 2 GiB).
// Peak device memory (stream-ordered pool high-water mark, inputs included) per row.
// --tuning sets the CUDA tuning knobs (kernels/cuda/tuning.h) for same-inputs A/B runs, e.g.
// `--tuning gate=warp_list` or `--tuning attn_rows=2048,attn_min_blocks3=1`.
// --precision (kernels/operand.h): fast (default here: the PERF.md numbers, bf16 tensor cores,
// P in bf16, gate_topk on tensor cores) or exact (what `route`/`analyze` use by default; on
// these bf16 inputs: P split hi + lo, gate_topk scalar fp32).
// The SDPA baselines come from experiments/bench/sdpa_baseline.py in the same device call.
#include <algorithm>
#include <stdexcept>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "experiments/args.h"
#include "experiments/command.h"
#include "kernels/backend.h"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"
#include "kernels/gate_topk.h"
#include "kernels/moba_attention.h"
#ifdef MOBA_HAVE_CUDA
#include "kernels/cuda/tuning.h"
#include "kernels/cuda_runtime.h"
#endif

namespace moba::cli {
namespace {

const char* kUsage =
    "usage: moba bench [--json] [--tokens 8192,16384,...] [--suite b1,b3] [--reps N] [--b3-max-tokens N]\n"
    "                  [--configs 128:8,16:64] [--tuning key=value,...] [--precision fast|exact]\n"
    "  Times the CUDA kernels (B1-B3, docs/gpu.md): routing + MoBA forward, analysis pass.\n"
    "  --tuning: CUDA tuning knobs (docs/gpu.md): gate=automatic|scalar|warp_list,\n"
    "            attn_rows=N (0 = automatic), attn_min_blocks3=0|1, dense_all_pass2=0|1,\n"
    "            attn_path=automatic|gather|tile, attn_tile_cost=X, tile_min_blocks3=0|1,\n"
    "            tile_wgmma=0|1, attn_warp_ctas=-1|0|1 (-1 = automatic), attn_rounds=0|1,\n"
    "            attn_wgmma=0|1, attn_tma=0|1, attn_q_smem=0|1;\n"
    "            row_warp=0|1, row_ctas=0|5|6|7|8 (0 = automatic), heads_in_flight=1|2,\n"
    "            chunk_rows=N (64..65536, a multiple of 64) and moments_apart=0|1 act on moba\n"
    "            analyze only\n";

#ifdef MOBA_HAVE_CUDA
using namespace moba::kernels;

constexpr int64_t kHeads = 32, kDim = 128;  // batch 2 x 16 heads, folded

void check(const char* e, const char* what) {
  if (e) throw std::runtime_error(std::string("bench: ") + what + ": " + e + " (" + cuda_last_error_detail() + ")");
}

// Random bf16 [heads, tokens, dim] on the device (counter-based, so reproducible and fast).
DeviceBuffer random_bf16(int64_t n, uint64_t seed) {
  std::vector<uint16_t> host(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (static_cast<uint64_t>(i) + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 31; z *= 0x94D049BB133111EBull; z ^= z >> 29;
    // Sum of 4 uniforms ~ roughly normal, unit variance.
    double s = 0;
    for (int j = 0; j < 4; ++j) s += static_cast<double>((z >> (16 * j)) & 0xffff) / 65536.0;
    host[static_cast<size_t>(i)] = f32_to_bf16(static_cast<float>((s - 2.0) * 1.7320508));
  }
  DeviceBuffer b(host.size() * 2);
  check(b.error(), "alloc inputs");
  check(cuda_copy_to_device(b.get(), host.data(), host.size() * 2), "upload");
  return b;
}

template <typename F>
double median_ms(int reps, F run) {
  run();  // warm-up
  check(cuda_synchronize(), "warm-up");
  std::vector<double> t;
  CudaTimer timer;
  for (int r = 0; r < reps; ++r) {
    check(timer.start(), "timer");
    run();
    check(timer.stop(), "timer");
    t.push_back(timer.elapsed_ms());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string bench;
  int64_t tokens, block_size;
  int top_k;
  double routing_ms, attention_ms, total_ms;
  double peak_gib;
};

int run_bench(const std::vector<std::string>& argv) {
  const Args args(argv, {"tokens", "suite", "reps", "b3-max-tokens", "configs", "tuning", "precision"}, {"json", "help"});
  if (args.flag("help")) { std::printf("%s", kUsage); return 0; }
  const auto tokens = args.int_list("tokens", {8192, 16384, 32768, 65536, 131072}, 1, int64_t{1} << 22);
  const auto suites = args.str_list("suite", {"b1", "b3"});
  const int reps = static_cast<int>(args.integer("reps", 10, 1, 1000));
  const int64_t b3_max = args.integer("b3-max-tokens", 65536, 1, int64_t{1} << 22);
  const bool json = args.flag("json");
  CudaTuning tuning;
  if (const char* e = parse_cuda_tuning(args.str("tuning", ""), &tuning))
    throw UsageError(std::string("bench: --") + e);
  set_cuda_tuning(tuning);
  const Precision precision = args.choice("precision", "fast", {"fast", "exact"}) == "exact" ? Precision::exact : Precision::fast;
  // No GPU here is the user's situation, not a bug: exit 2 with what to do.
  if (!cuda_device_available())
    throw UsageError("bench: no CUDA device is visible; run it on a machine with an NVIDIA GPU (docs/gpu.md)");
  const std::string device = cuda_device_name();
  const bool do_b1 = std::find(suites.begin(), suites.end(), "b1") != suites.end();
  const bool do_b3 = std::find(suites.begin(), suites.end(), "b3") != suites.end();
  std::vector<std::pair<int64_t, int>> configs;
  for (const std::string& c : args.str_list("configs", {"128:8", "64:16", "32:32", "16:64"})) {
    const size_t colon = c.find(':');
    long long B = 0, K = 0;
    if (colon == std::string::npos || std::sscanf(c.c_str(), "%lld:%lld", &B, &K) != 2 || B < 1 || K < 1 || K > 129)
      throw UsageError("bench: --configs takes B:k pairs (B >= 1, 1 <= k <= 129), e.g. 128:8,16:64");
    configs.emplace_back(B, static_cast<int>(K));
  }
  std::vector<Row> rows;

  for (const int64_t T : tokens) {
    const int64_t n = kHeads * T * kDim;
    check(cuda_peak_memory_reset(), "peak reset");
    DeviceBuffer q = random_bf16(n, 1 + T), k = random_bf16(n, 2 + T), v = random_bf16(n, 3 + T);
    const TensorView view{nullptr, kHeads, T, kDim, T * kDim, kDim, 1};
    if (do_b1) {
      DeviceBuffer out(static_cast<size_t>(n) * 4), lse(static_cast<size_t>(kHeads * T) * 4);
      check(out.error(), "alloc out");
      for (const auto& [B, K] : configs) {
        const int64_t nb = block_count(T, B);
        DeviceBuffer kbar(static_cast<size_t>(kHeads * nb * kDim) * 4);
        DeviceBuffer sel(static_cast<size_t>(kHeads * T * K) * 4);
        check(sel.error(), "alloc selected");
        check(cuda_peak_memory_reset(), "peak reset");
        BlockPoolParams pp;
        pp.k = Operand::device16(view, k.as<uint16_t>(), DType::bf16);
        pp.block_size = B; pp.pool_dtype = DType::bf16; pp.mean = kbar.as<float>();
        GateTopkParams gp;
        gp.q = Operand::device16(view, q.as<uint16_t>(), DType::bf16);
        gp.kbar = kbar.as<float>(); gp.n_kv_heads = kHeads; gp.block_size = B; gp.top_k = K;
        gp.selected = sel.as<int32_t>();
        gp.precision = precision;
        MobaAttentionParams ap;
        ap.q = Operand::device16(view, q.as<uint16_t>(), DType::bf16);
        ap.k = Operand::device16(view, k.as<uint16_t>(), DType::bf16);
        ap.v = Operand::device16(view, v.as<uint16_t>(), DType::bf16);
        ap.selected = sel.as<int32_t>(); ap.top_k = K; ap.block_size = B;
        ap.out = out.as<float>(); ap.lse = lse.as<float>();
        ap.precision = precision;
        auto routing = [&] {
          check(block_pool_cuda(pp), "block_pool");
          check(gate_topk_cuda(gp), "gate_topk");
        };
        auto attention = [&] { check(moba_attention_cuda(ap), "moba_attention"); };
        const int r = T >= 131072 ? std::max(3, reps / 3) : reps;
        const double t_route = median_ms(r, routing);
        const double t_attn = median_ms(r, attention);
        const double t_all = median_ms(r, [&] { routing(); attention(); });
        const double peak = static_cast<double>(cuda_peak_memory_bytes()) / (1 << 30);
        rows.push_back({"B1", T, B, K, t_route, t_attn, t_all, peak});
        if (!json)
          std::fprintf(stderr, "B1 T=%" PRId64 " B=%" PRId64 " k=%d: routing %.3f ms, attention %.3f ms, total %.3f ms\n",
                       T, B, K, t_route, t_attn, t_all);
      }
    }
    if (do_b3 && T <= b3_max) {
      const int64_t sizes[4] = {16, 32, 64, 128};
      int64_t mass_per_query = 0;
      for (int64_t B : sizes) mass_per_query += block_count(T, B);
      int64_t chunk = T;
      while (chunk > 256 && kHeads * chunk * mass_per_query * 4 > (int64_t{2} << 30)) chunk /= 2;
      std::vector<DeviceBuffer> mass;
      for (int64_t B : sizes) mass.emplace_back(static_cast<size_t>(kHeads * chunk * block_count(T, B)) * 4);
      DeviceBuffer lse(static_cast<size_t>(kHeads * T) * 4), out(static_cast<size_t>(kHeads * chunk * kDim) * 4);
      for (auto& m : mass) check(m.error(), "alloc masses");
      check(cuda_peak_memory_reset(), "peak reset");
      auto pass = [&] {
        for (int64_t q0 = 0; q0 < T; q0 += chunk) {
          DensePassParams p;
          p.q = Operand::device16(view, q.as<uint16_t>(), DType::bf16);
          p.k = Operand::device16(view, k.as<uint16_t>(), DType::bf16);
          p.v = Operand::device16(view, v.as<uint16_t>(), DType::bf16);
          p.query_begin = q0;
          p.precision = precision;
          p.query_count = std::min(chunk, T - q0);
          p.lse = lse.as<float>() + 0;  // [heads, chunk] per call; lse reused
          p.out = out.as<float>();
          p.n_block_sizes = 4;
          for (int i = 0; i < 4; ++i) { p.block_sizes[i] = sizes[i]; p.block_mass[i] = mass[i].as<float>(); }
          check(dense_pass_cuda(p), "dense_pass");
        }
      };
      const int r = T >= 65536 ? 2 : std::max(2, reps / 3);
      const double t = median_ms(r, pass);
      const double peak = static_cast<double>(cuda_peak_memory_bytes()) / (1 << 30);
      rows.push_back({"B3", T, chunk, 4, 0.0, t, t, peak});
      if (!json) std::fprintf(stderr, "B3 T=%" PRId64 " (chunk %" PRId64 "): %.3f ms\n", T, chunk, t);
    }
  }

  if (json) {
    auto fixed = [](double v, int decimals) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
      return std::string(buf);
    };
    std::vector<std::string> items;
    for (const Row& r : rows)
      items.push_back(JsonObject()
                          .add_string("bench", r.bench)
                          .add_integer("tokens", r.tokens)
                          .add_integer("block_size", r.block_size)
                          .add_integer("top_k", r.top_k)
                          .add_raw("routing_ms", fixed(r.routing_ms, 4))
                          .add_raw("attention_ms", fixed(r.attention_ms, 4))
                          .add_raw("total_ms", fixed(r.total_ms, 4))
                          .add_raw("routing_share", fixed(r.total_ms > 0 ? r.routing_ms / r.total_ms : 0.0, 4))
                          .add_raw("peak_gib", fixed(r.peak_gib, 3))
                          .str());
    std::printf("%s\n", JsonObject()
                             .add_string("device", device)
                             .add_integer("heads", kHeads)
                             .add_integer("head_dim", kDim)
                             .add_string("dtype", "bfloat16")
                             .add_string("precision", precision_name(precision))
                             .add_raw("rows", json_array(items))
                             .str()
                             .c_str());
  } else {
    std::printf("device: %s\n%-4s %8s %5s %4s %11s %11s %11s %7s %8s\n", device.c_str(), "", "tokens", "B", "k",
                "routing_ms", "attn_ms", "total_ms", "route%", "peak_GiB");
    for (const Row& r : rows)
      std::printf("%-4s %8" PRId64 " %5" PRId64 " %4d %11.3f %11.3f %11.3f %6.1f%% %8.2f\n", r.bench.c_str(), r.tokens,
                  r.block_size, r.top_k, r.routing_ms, r.attention_ms, r.total_ms,
                  r.total_ms > 0 ? 100 * r.routing_ms / r.total_ms : 0.0, r.peak_gib);
  }
  return 0;
}
#else
int run_bench(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help") { std::printf("%s", kUsage); return 0; }
  throw UsageError("bench: this build has no CUDA backend (configure with -DMOBA_CUDA=ON)");
}
#endif

const Command kBench("bench", "time the CUDA kernels (B1-B3 of docs/gpu.md; --json)", run_bench);

}  // namespace
}  // namespace moba::cli
