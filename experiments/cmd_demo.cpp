// `moba demo`: placeholder until the CPU engine lands (it will analyse the embedded default
// dump at several block sizes). For now: synthesize a small default dump into a temporary
// directory, read it back through the dump reader, and describe it.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis/synth.h"
#include "core/dump.h"
#include "core/errors.h"
#include "experiments/args.h"
#include "experiments/command.h"

namespace moba::cli {
namespace {

// Removes the temporary directory on every path out of run_demo.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "moba-demo-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("cannot create a temporary directory in " + pattern);
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

int run_demo(const std::vector<std::string>& argv) {
  const Args args(argv, {}, {"help"});
  if (args.flag("help") || !args.positional().empty()) {
    std::fputs("usage: moba demo   (no arguments)\n", args.flag("help") ? stdout : stderr);
    return args.flag("help") ? 0 : 2;
  }

  analysis::SynthParams p;  // the defaults: 4096 tokens, 4 q / 2 kv heads, d 64
  p.seed = 1;
  const TempDir dir;
  const std::string path = dir.path + "/demo.h5";
  {
    DumpMeta meta;
    meta.model = "synthetic";
    meta.source = analysis::synth_source(p);
    meta.rope_applied = false;
    meta.numeric_attributes = analysis::synth_attributes(p);
    DumpWriter writer(path, meta);
    for (int layer = 0; layer < p.n_layers; ++layer) {
      const analysis::SynthLayer l = analysis::synth_layer(p, layer);
      writer.write_tensor(layer, TensorKind::q, l.q, p.dtype);
      writer.write_tensor(layer, TensorKind::k, l.k, p.dtype);
      writer.write_tensor(layer, TensorKind::v, l.v, p.dtype);
      writer.write_planted(layer, p.n_q_heads, p.n_tokens, l.planted);
    }
    writer.commit();
  }

  const auto reader = open_dump(path);
  const DumpInfo& info = reader->info();
  std::printf("moba demo (placeholder: the routing engine is not built yet; this shows the synthetic\n"
              "dump it will analyse, with the SNR the FlashMoBA model predicts for it)\n\n");
  std::printf("dump     %s (%s, schema v%lld, temporary, removed on exit)\n", info.path.c_str(), info.format.c_str(),
              static_cast<long long>(info.version));
  std::printf("model    %s, rope_applied %d\n", info.model.c_str(), info.rope_applied ? 1 : 0);
  for (const LayerInfo& l : info.layers) {
    const std::vector<int32_t> planted = reader->read_planted(l.index);
    long long n_planted = 0;
    for (const int32_t x : planted) n_planted += x >= 0;
    std::printf("layer %d  q heads %lld, kv heads %lld, tokens %lld, head dim %lld, %s; planted %lld of %zu queries\n",
                l.index, static_cast<long long>(l.n_q_heads), static_cast<long long>(l.n_kv_heads),
                static_cast<long long>(l.n_tokens), static_cast<long long>(l.head_dim), dtype_name(l.dtype),
                n_planted, planted.size());
  }
  std::printf("model    delta_mu %.3g, cluster m %d, mu_cluster %.3g -> delta_mu_eff %.3g, sigma^2 = 1/d\n\n",
              p.delta_mu, p.cluster_size, p.mu_cluster, analysis::synth_delta_mu_eff(p));
  std::printf("block size   theory SNR = delta_mu_eff sqrt(d/2B)\n");
  for (const int64_t b : {16, 32, 64, 128, 256})
    std::printf("%10lld   %.3f\n", static_cast<long long>(b), analysis::synth_snr_theory(p, b));
  std::printf("\nWrite your own with `moba synth --out FILE --seed S`; `moba info FILE` describes it.\n");
  return 0;
}

const Command kDemo("demo", "placeholder: synthesize a default dump and describe it", run_demo);

}  // namespace
}  // namespace moba::cli
