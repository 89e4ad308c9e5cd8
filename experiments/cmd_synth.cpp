// `moba synth`: writes a schema-v1 dump drawn from the statistical model of routing
// (analysis/synth.h, DESIGN.md §6), with the planted truth and the parameters recorded.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis/synth.h"
#include "core/dump.h"
#include "core/errors.h"
#include "core/progress.h"
#include "experiments/args.h"
#include "experiments/command.h"

namespace moba::cli {
namespace {

constexpr int64_t kMaxSeed = (int64_t{1} << 53) - 1;  // recorded as a number: exact below 2^53

const char* const kUsage =
    "usage: moba synth --out FILE --seed S [options]\n"
    "\n"
    "Writes an HDF5 schema-v1 dump from FlashMoBA's statistical model: keys and values\n"
    "N(0, I/d); each query plants one signal key (mean score gap delta-mu over noise) with\n"
    "cluster-size - 1 mates of mean score mu-cluster in the same aligned 16-token group, at\n"
    "least min-distance tokens back. Noise scores have variance 1/d, so the routing SNR at\n"
    "block size B is (delta-mu + (m-1) mu-cluster) sqrt(d / 2B) for every B that is a\n"
    "multiple of 16 and <= min-distance. Planted positions go to /layers/L/planted (-1: none).\n"
    "\n"
    "  --out FILE              output dump (written atomically)\n"
    "  --seed S                seed, 0 .. 2^53-1; the same seed gives identical tensors\n"
    "  --tokens N              n_tokens (4096)\n"
    "  --layers L              layers (1)\n"
    "  --heads H               query heads (4)\n"
    "  --kv-heads G            key/value heads; H must be a multiple (2)\n"
    "  --head-dim D            head dim, >= 8 (64)\n"
    "  --delta-mu X            planted key's mean score over noise, [0, 1) (0.8)\n"
    "  --cluster-size M        m, planted key plus mates, 1 .. 16 (4)\n"
    "  --mu-cluster Y          mates' mean score (0.15)\n"
    "  --sink S                key 0's mean score for every query (0: off)\n"
    "  --window-bias W         mean score of each of the last --window keys (0: off)\n"
    "  --window N              width of the local window, key t included (64)\n"
    "  --min-distance N        planted key at least N tokens before the query, >= 16 (256)\n"
    "  --planted-fraction F    share of eligible queries that get a plant (1)\n"
    "  --dtype f32|f16|bf16    stored element type (f32)\n"
    "  --quiet                 no progress on stderr\n"
    "\n"
    "Norm budget: d/(d-2) (delta-mu^2 + (m-1) mu-cluster^2 + sink^2 + window window-bias^2)\n"
    "must stay below 1 (queries of unit norm in expectation). Sink and window bias depart from\n"
    "the SNR model.\n";

int run_synth(const std::vector<std::string>& argv) {
  const Args args(argv,
                  {"out", "seed", "tokens", "layers", "heads", "kv-heads", "head-dim", "delta-mu",
                   "cluster-size", "mu-cluster", "sink", "window-bias", "window", "min-distance",
                   "planted-fraction", "dtype"},
                  {"quiet", "help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!args.positional().empty()) throw UsageError("unexpected argument '" + args.positional()[0] + "'");

  analysis::SynthParams p;
  const std::string out = args.required("out");
  if (!args.has("seed")) throw UsageError("--seed is required (the same seed gives the same dump)");
  p.seed = static_cast<uint64_t>(args.integer("seed", 0, 0, kMaxSeed));
  p.n_tokens = args.integer("tokens", p.n_tokens, 1, INT32_MAX);
  p.n_layers = static_cast<int>(args.integer("layers", p.n_layers, 1, 4096));
  p.n_q_heads = args.integer("heads", p.n_q_heads, 1, 65536);
  p.n_kv_heads = args.integer("kv-heads", p.n_kv_heads, 1, 65536);
  p.head_dim = args.integer("head-dim", p.head_dim, 8, 65536);
  p.delta_mu = args.number("delta-mu", p.delta_mu, 0, 1);
  p.cluster_size = static_cast<int>(args.integer("cluster-size", p.cluster_size, 1, 16));
  p.mu_cluster = args.number("mu-cluster", p.mu_cluster, -1, 1);
  p.sink = args.number("sink", p.sink, -1, 1);
  p.window_bias = args.number("window-bias", p.window_bias, -1, 1);
  p.window = args.integer("window", p.window, 1, INT32_MAX);
  p.min_distance = args.integer("min-distance", p.min_distance, 16, INT32_MAX);
  p.planted_fraction = args.number("planted-fraction", p.planted_fraction, 0, 1);
  p.dtype = dtype_from_name(args.choice("dtype", "f32", {"f32", "f16", "bf16", "float32", "float16", "bfloat16"}));
  const bool quiet = args.flag("quiet");
  if (std::filesystem::is_directory(out)) throw UsageError("--out " + out + " is a directory");
  const std::string reason = analysis::synth_can_run(p);
  if (!reason.empty()) throw UsageError(reason);

  DumpMeta meta;
  meta.model = "synthetic";
  meta.source = analysis::synth_source(p);
  meta.rope_applied = false;
  meta.numeric_attributes = analysis::synth_attributes(p);

  int64_t n_planted = 0;
  {
    DumpWriter writer(out, meta);
    Progress progress("synth " + out, 3 * static_cast<int64_t>(p.n_layers), quiet);
    for (int layer = 0; layer < p.n_layers; ++layer) {
      // Keys stay in memory for the queries; values are written and dropped first.
      const Tensor3 keys = analysis::synth_keys(p, layer);
      writer.write_tensor(layer, TensorKind::k, keys, p.dtype);
      progress.advance();
      writer.write_tensor(layer, TensorKind::v, analysis::synth_values(p, layer), p.dtype);
      progress.advance();
      std::vector<int32_t> planted;
      const Tensor3 queries = analysis::synth_queries(p, layer, keys, &planted);
      writer.write_tensor(layer, TensorKind::q, queries, p.dtype);
      writer.write_planted(layer, p.n_q_heads, p.n_tokens, planted);
      for (const int32_t x : planted) n_planted += x >= 0;
      progress.advance();
    }
    writer.commit();
    progress.finish();
  }

  std::printf("wrote %s: %d layer%s x %lld q heads (%lld kv heads) x %lld tokens x head dim %lld, %s, seed %llu\n",
              out.c_str(), p.n_layers, p.n_layers == 1 ? "" : "s", static_cast<long long>(p.n_q_heads),
              static_cast<long long>(p.n_kv_heads), static_cast<long long>(p.n_tokens),
              static_cast<long long>(p.head_dim), dtype_name(p.dtype), static_cast<unsigned long long>(p.seed));
  std::printf("planted %lld of %lld queries (min distance %lld); delta_mu_eff %.4g; theory SNR",
              static_cast<long long>(n_planted),
              static_cast<long long>(p.n_layers * p.n_q_heads * p.n_tokens),
              static_cast<long long>(p.min_distance), analysis::synth_delta_mu_eff(p));
  for (const int64_t b : {16, 32, 64, 128, 256, 512, 1024}) {
    if (b > p.min_distance) break;  // the plant is routable only for B <= min distance
    std::printf(" B=%lld: %.3f", static_cast<long long>(b), analysis::synth_snr_theory(p, b));
  }
  std::printf("\n");
  return 0;
}

const Command kSynth("synth", "write a synthetic dump from the routing SNR model (planted truth)", run_synth);

}  // namespace
}  // namespace moba::cli
