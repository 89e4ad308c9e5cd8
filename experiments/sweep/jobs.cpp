#include "experiments/sweep/jobs.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>

#include "core/dump.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "core/sha256.h"

namespace fs = std::filesystem;

namespace moba::sweep {
namespace {

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (const auto x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

}  // namespace

double attended_keys_mean(int64_t T, int64_t B, int64_t k) {
  // Sum over t of (t - cB + 1) + B min(k - 1, c); exact in integers.
  long double total = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = t / B;
    total += static_cast<long double>(t - c * B + 1) + static_cast<long double>(B) * std::min<int64_t>(k - 1, c);
  }
  return T > 0 ? static_cast<double>(total / T) : 0.0;
}

int64_t matched_top_k(int64_t T, int64_t B, double target) {
  const int64_t kmax = std::max<int64_t>(1, (T + B - 1) / B);
  int64_t best = 1;
  double best_d = std::abs(attended_keys_mean(T, B, 1) - target);
  for (int64_t k = 2; k <= kmax; ++k) {
    const double d = std::abs(attended_keys_mean(T, B, k) - target);
    if (d < best_d) best = k, best_d = d;
  }
  return best;
}

std::vector<MatchedTarget> matched_targets(const SweepConfig& c, int64_t n_tokens) {
  std::vector<MatchedTarget> out;
  for (const double n : c.attended_keys) out.push_back({"attended_keys", format_shortest(n), n});
  for (const double f : c.attended_fraction)
    out.push_back({"attended_fraction", format_shortest(f), f * static_cast<double>(n_tokens + 1) / 2});
  return out;
}

std::vector<DumpFacts> inspect_dumps(const SweepConfig& c) {
  std::vector<DumpFacts> out;
  for (const auto& path : c.dumps) {
    DumpFacts f;
    f.path = path;
    f.name = fs::path(path).filename().string();
    // The file name names the dump in jobs.tsv, sweep.csv's `dump` and the provenance's seeds.
    for (const DumpFacts& other : out)
      if (other.name == f.name && fs::weakly_canonical(other.path) != fs::weakly_canonical(path))
        throw InputError(c.path, "dumps",
                         other.path + " and " + path + " share the file name " + f.name +
                             ", which names a dump in jobs.tsv, sweep.csv and provenance.json; rename or link one");
    f.size = fs::file_size(path);
    std::unique_ptr<DumpReader> reader;
    try {
      reader = open_dump(path);
    } catch (const InputError& e) {
      throw InputError(c.path, "dumps", std::string("cannot read ") + e.what());
    }
    const DumpInfo& info = reader->info();
    if (info.layers.empty()) throw InputError(c.path, "dumps", path + " has no layers");
    f.n_tokens = info.layers.front().n_tokens;
    for (const auto& set : c.layer_sets)
      for (const int l : set) {
        bool found = false;
        for (const auto& li : info.layers) found = found || li.index == l;
        if (!found) throw InputError(c.path, "layers", "layer " + std::to_string(l) + " is not in " + path);
      }
    for (const int h : c.heads)
      if (h >= info.layers.front().n_q_heads)
        throw InputError(c.path, "heads", "query head " + std::to_string(h) + " is not in " + path + " (" +
                                              std::to_string(info.layers.front().n_q_heads) + " heads)");
    for (const char* key : {"synth_seed", "seed"})
      if (f.seed.empty() && info.attributes.count(key)) f.seed = info.attributes.at(key);
    JsonObject described;
    add_dump_info_json(info, described);
    f.info_json = described.str();
    reader.reset();
    f.sha256 = sha256_file(path);
    out.push_back(f);
  }
  return out;
}

std::vector<Job> expand_jobs(const SweepConfig& c, const std::vector<DumpFacts>& dumps,
                             std::vector<std::string>* notes) {
  std::vector<Job> jobs;
  for (const auto& d : dumps) {
    for (const auto& layers : c.layer_sets) {
      std::vector<std::string> common;
      if (!layers.empty()) {
        std::string s;
        for (const int l : layers) s += (s.empty() ? "" : ",") + std::to_string(l);
        common.insert(common.end(), {"--layers", s});
      }
      if (!c.heads.empty()) {
        std::string s;
        for (const int h : c.heads) s += (s.empty() ? "" : ",") + std::to_string(h);
        common.insert(common.end(), {"--heads", s});
      }
      std::string routers;
      for (const auto& r : c.routers) routers += (routers.empty() ? "" : ",") + r;
      common.insert(common.end(), {"--routers", routers, "--tie", c.tie, "--gqa", c.gqa, "--pool-precision",
                                   c.pool_precision, "--kconv", std::to_string(c.kconv), "--kconv-apply",
                                   c.kconv_apply, "--precision", c.precision, "--top-n", std::to_string(c.top_n)});
      if (!c.kconv_weights.empty()) common.insert(common.end(), {"--kconv-weights", c.kconv_weights});
      if (c.bucket_width > 0) common.insert(common.end(), {"--bucket-width", std::to_string(c.bucket_width)});
      else common.insert(common.end(), {"--buckets", std::to_string(c.buckets)});
      if (c.trailing > 0) common.insert(common.end(), {"--trailing", std::to_string(c.trailing)});
      common.insert(common.end(), {"--device", c.device});
      const std::string layer_text = layers.empty() ? "all layers" : "layers " + common[1];

      // k of a budget at block size B; the job is left out when no (B, k) of it routes.
      auto add = [&](const std::string& mode, const std::string& target, const std::vector<int64_t>& bs,
                     const std::vector<std::string>& budget_args, const std::string& summary,
                     const std::function<std::vector<int64_t>(int64_t)>& ks_at) {
        bool routes = false;
        for (const int64_t b : bs)
          for (const int64_t k : ks_at(b)) routes = routes || k < (d.n_tokens + b - 1) / b;
        if (!routes) {
          if (notes)
            notes->push_back(d.name + ", " + layer_text + ", B=" + join(bs) + ", " + summary +
                             ": every k >= n_blocks at T=" + std::to_string(d.n_tokens) +
                             " (full attention, nothing to route): job left out");
          return;
        }
        Job j;
        j.index = static_cast<int>(jobs.size());
        j.dump = d.path;
        j.dump_name = d.name;
        j.dump_sha256 = d.sha256;
        j.budget_mode = mode;
        j.budget_target = target;
        j.args = {"analyze", d.path, "--block-sizes", join(bs)};
        j.args.insert(j.args.end(), budget_args.begin(), budget_args.end());
        j.args.insert(j.args.end(), common.begin(), common.end());
        j.summary = d.name + ", " + layer_text + ", B=" + join(bs) + ", " + summary;
        std::string key = "moba sweep job v1\ndump_sha256=" + d.sha256 + "\n";
        for (const auto& a : j.args) key += a + "\x1f";
        j.hash = sha256_hex(key);
        char id[32];
        std::snprintf(id, sizeof id, "%04d-%.10s", j.index, j.hash.c_str());
        j.id = id;
        jobs.push_back(j);
      };
      if (!c.top_k.empty())
        add("top_k", "", c.block_sizes, {"--top-k", join(c.top_k)}, "top_k=" + join(c.top_k),
            [&](int64_t) { return std::vector<int64_t>(c.top_k.begin(), c.top_k.end()); });
      for (const double s : c.sparsity)  // analyze's rule: k = max(1, round((1 - s) T / B))
        add("sparsity", format_shortest(s), c.block_sizes, {"--sparsity", format_shortest(s)},
            "sparsity=" + format_shortest(s), [&](int64_t b) {
              const double k = std::round((1.0 - s) * static_cast<double>(d.n_tokens) / static_cast<double>(b));
              return std::vector<int64_t>{static_cast<int64_t>(std::max(1.0, k))};
            });
      for (const auto& m : matched_targets(c, d.n_tokens))
        for (const int64_t b : c.block_sizes) {
          const int64_t k = matched_top_k(d.n_tokens, b, m.keys);
          add(m.mode, m.text, {b}, {"--top-k", std::to_string(k)}, m.mode + "=" + m.text + " -> k=" + std::to_string(k),
              [&](int64_t) { return std::vector<int64_t>{k}; });
        }
    }
  }
  return jobs;
}

}  // namespace moba::sweep
