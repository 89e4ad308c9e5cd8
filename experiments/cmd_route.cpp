// `moba route`: one layer's block selections (and optionally the MoBA attention output) for
// one router configuration (DESIGN.md §3, §7). One KV group is in memory at a time; the
// output file is written atomically (core/h5_output.h).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "analysis/backend.h"
#include "analysis/gpu/route_gpu.h"
#include "analysis/metrics.h"
#include "analysis/router.h"
#include "core/dump.h"
#include "core/errors.h"
#include "core/h5_output.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/command.h"
#include "experiments/routing_args.h"

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba route DUMP --layer L --block-size B --top-k K --out OUT.h5 [options]\n"
    "\n"
    "Routes every query of layer L with MoBA's rules (docs/routing.md) and writes `selected`\n"
    "int32 [n_q_heads, n_tokens, K]: block indices per query, ascending, current block\n"
    "included, -1 padded. With --with-output also `output` float32 [n_q_heads, n_tokens,\n"
    "head_dim] and `lse` float32 [n_q_heads, n_tokens] (natural log, 1/sqrt(d) included):\n"
    "attention over the selected blocks' keys, causal in the current block.\n"
    "\n"
    "  --layer L                  layer index (as in /layers/L)\n"
    "  --block-size B             block size, >= 1\n"
    "  --top-k K                  blocks per query, current block included, >= 1\n"
    "  --out OUT.h5               output file (written atomically)\n"
    "  --with-output              also write the MoBA attention output and its lse\n"
    "  --router R                 moba | moba-kconv | oracle | quest | sink-window | minference-bs |\n"
    "                             nsa-shared | moba-threshold | oracle-topp\n"
    "                             (moba; --kconv W implies moba-kconv; docs/routing.md defines each)\n"
    "  --tau X                    moba-threshold / oracle-topp: the mass to reach, in (0, 1] (0.9);\n"
    "                             --top-k caps the budget; writes /n_selected [heads, tokens]\n"
    "  --tie recent|older         equal scores: larger (recent, default) or smaller block index wins\n"
    "  --gqa per-head|shared      per query head (default) or one choice per KV group (summed scores)\n"
    "  --pool-precision dump|fp32 round the pooled key mean to the dump dtype (default) or keep fp32\n"
    "  --kconv W                  key conv width 3 or 5 for moba-kconv (3)\n"
    "  --kconv-weights FILE       conv weights [W, head_dim]: .npy float32 or text (W lines of\n"
    "                             head_dim numbers; row l multiplies k_{t-l}); default uniform 1/W\n"
    "  --kconv-apply routing|both conv keys for routing only (default) or also for attention\n"
    "  --device cpu|cuda|auto     backend (cpu)\n"
    "  --precision exact|fast     CUDA numerics (exact): the dump's own precision, or bf16 tensor cores\n"
    "  --quiet                    no progress on stderr\n";

int run_route(const std::vector<std::string>& argv) {
  const Args args(argv,
                  with_routing_flags({"layer", "block-size", "top-k", "out", "router"}),
                  {"with-output", "quiet", "help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw UsageError("expected exactly one DUMP argument (see --help)");
  const std::string dump_path = args.positional()[0];
  const int layer = static_cast<int>(parse_int("--layer", args.required("layer"), 0, INT32_MAX));
  const int64_t B = parse_int("--block-size", args.required("block-size"), 1, INT32_MAX);
  const int K = static_cast<int>(parse_int("--top-k", args.required("top-k"), 1, 1 << 20));
  const std::string out_path = args.required("out");
  check_output_file("--out", out_path, {dump_path});
  const bool with_output = args.flag("with-output");
  const bool quiet = args.flag("quiet");

  analysis::RouterKind router = analysis::router_from_name(args.choice("router", "moba", {"moba", "moba-kconv", "oracle", "quest", "sink-window", "minference-bs", "nsa-shared", "moba-threshold", "oracle-topp"}));
  if (args.has("kconv")) {
    if (args.has("router") && router != analysis::RouterKind::moba_kconv)
      throw UsageError("--kconv needs --router moba-kconv (or no --router)");
    router = analysis::RouterKind::moba_kconv;
  }
  if (args.has("tau") && !analysis::router_is_variable_budget(router))
    throw UsageError("--tau applies to moba-threshold and oracle-topp only");
  if ((args.has("kconv-weights") || args.has("kconv-apply")) && router != analysis::RouterKind::moba_kconv)
    throw UsageError("--kconv-weights / --kconv-apply apply to the moba-kconv router only (add --kconv W)");
  analysis::RoutingOptions ro = parse_routing(args);
  const analysis::DeviceInfo device = parse_device(args);

  const auto reader = open_dump(dump_path);
  const DumpInfo& info = reader->info();
  const LayerInfo& l = info.layer(layer);
  const int64_t n_q = l.n_q_heads, n_kv = l.n_kv_heads, T = l.n_tokens, d = l.head_dim, group = n_q / n_kv;
  load_routing_weights(args, d, ro);
  // The dump's SHA-256 for the provenance attributes, beside the routing (once the arguments
  // are checked: an error then does not wait for a large dump's hash).
  std::future<std::string> dump_sha256 = std::async(std::launch::async, [dump_path] { return sha256_file(dump_path); });

  if (device.device == analysis::Device::cuda && !analysis::router_is_gate(router)) {
    const std::string why = analysis::route_gpu_unsupported(router, T, d, B);
    if (!why.empty())
      std::fprintf(stderr, "note: %s routes on the CPU (%s); the dense pass and MoBA attention run on cuda\n",
                   analysis::router_name(router), why.c_str());
  }

  H5Output out(out_path);
  out.create_i32("/selected", {n_q, T, K});
  // Variable-budget routers: the realised budget |S_t| of every query (current block included).
  const bool variable = analysis::router_is_variable_budget(router);
  if (variable) out.create_i32("/n_selected", {n_q, T});
  std::vector<int32_t> n_selected(variable ? static_cast<size_t>(group * T) : 0);
  if (with_output) {
    out.create_f32("/output", {n_q, T, d});
    out.create_f32("/lse", {n_q, T});
  }
  std::vector<int32_t> selected(static_cast<size_t>(group * T * K));
  std::vector<float> output(with_output ? static_cast<size_t>(group * T * d) : 0), lse(with_output ? static_cast<size_t>(group * T) : 0);
  Progress progress("route " + dump_path, n_kv, quiet);
  for (int64_t g = 0; g < n_kv; ++g) {
    const Tensor3 q = reader->read(layer, TensorKind::q, g * group, group);
    const Tensor3 k = reader->read(layer, TensorKind::k, g, 1);
    const Tensor3 v = with_output ? reader->read(layer, TensorKind::v, g, 1) : Tensor3();
    analysis::route_group(q.view(), k.view(), with_output ? v.view() : k.view(), l.dtype, router, ro, B, K,
                          device.device, selected.data(), with_output ? output.data() : nullptr,
                          with_output ? lse.data() : nullptr);
    out.write_rows("/selected", g * group, group, selected.data());
    if (variable) {
      for (size_t i = 0; i < n_selected.size(); ++i)
        n_selected[i] = analysis::selection_count(selected.data() + i * K, K);
      out.write_rows("/n_selected", g * group, group, n_selected.data());
    }
    if (with_output) {
      out.write_rows("/output", g * group, group, output.data());
      out.write_rows("/lse", g * group, group, lse.data());
    }
    progress.advance();
  }
  progress.finish();

  out.set_integer("/", "moba_route_version", 1);
  out.set_string("/", "dump", dump_path);
  out.set_string("/", "dump_sha256", dump_sha256.get());
  out.set_integer("/", "dump_bytes", static_cast<int64_t>(std::filesystem::file_size(dump_path)));
  out.set_string("/", "model", info.model);
  out.set_integer("/", "layer", layer);
  out.set_integer("/", "block_size", B);
  out.set_integer("/", "top_k", K);
  out.set_integer("/", "n_blocks", kernels::block_count(T, B));
  out.set_integer("/", "n_q_heads", n_q);
  out.set_integer("/", "n_kv_heads", n_kv);
  out.set_integer("/", "n_tokens", T);
  out.set_integer("/", "head_dim", d);
  out.set_string("/", "dtype", dtype_name(l.dtype));
  out.set_string("/", "router", analysis::router_name(router));
  for (const auto& [name, value] : routing_record(ro)) {
    if (name.rfind("kconv_", 0) == 0 && router != analysis::RouterKind::moba_kconv) continue;  // conv unused
    if (name == "tau" && !analysis::router_is_variable_budget(router)) continue;
    if (name == "kconv_width")
      out.set_integer("/", name, ro.kconv_width);
    else if (name == "tau")
      out.set_number("/", name, ro.tau);
    else
      out.set_string("/", name, value);
  }
  out.set_integer("/", "with_output", with_output ? 1 : 0);
  out.set_number("/", "softmax_scale", 1.0 / std::sqrt(static_cast<double>(d)));
  out.set_string("/", "device", device.description);
  out.set_string("/", "git_commit", build_commit_label());
  out.commit();

  std::printf("routed layer %d of %s: %lld q heads x %lld tokens, B %lld, k %d, router %s -> %s (device: %s)\n",
              layer, dump_path.c_str(), static_cast<long long>(n_q), static_cast<long long>(T),
              static_cast<long long>(B), K, analysis::router_name(router), out_path.c_str(), device.description.c_str());
  return 0;
}

const Command kRoute("route", "block selections (and MoBA output) of one layer", run_route);

}  // namespace
}  // namespace moba::cli
