// analyze_dump (analysis/analyze.h): a whole dump, one KV group at a time.
#include <algorithm>
#include <cstdio>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <tuple>

#include "analysis/analyze.h"
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/stage_profile.h"
#include "core/errors.h"

namespace moba::analysis {

DumpAnalysis analyze_dump(DumpReader& reader, const std::vector<int>& layers_in, const std::vector<int64_t>& heads_in,
                          const AnalyzeOptions& opt, bool quiet, H5Output* h5,
                          const std::function<void(const DumpAnalysis&, int layer)>& layer_done) {
  validate_options(opt);
  const DumpInfo& info = reader.info();
  std::vector<int> layers = layers_in;
  if (layers.empty())
    for (const LayerInfo& l : info.layers) layers.push_back(l.index);
  for (size_t i = 0; i < layers.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (layers[i] == layers[j]) throw UsageError("--layers: layer " + std::to_string(layers[i]) + " given twice");
  for (size_t i = 0; i < heads_in.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (heads_in[i] == heads_in[j]) throw UsageError("--heads: head " + std::to_string(heads_in[i]) + " given twice");
  for (const int L : layers) {
    bool found = false;
    for (const LayerInfo& l : info.layers) found = found || l.index == L;
    if (!found) throw UsageError("--layers: the dump " + info.path + " has no layer " + std::to_string(L));
  }
  // Every listed head (analysed or kept) exists in every analysed layer, checked before any work.
  for (const int L : layers) {
    const LayerInfo& l = info.layer(L);
    const auto check = [&](const char* flag, int64_t h) {
      if (h < 0 || h >= l.n_q_heads)
        throw UsageError(std::string(flag) + ": layer " + std::to_string(L) + " has query heads 0.." +
                         std::to_string(l.n_q_heads - 1) + ", not " + std::to_string(h));
    };
    for (const int64_t h : heads_in) check("--heads", h);
    for (const int64_t h : opt.keep.heads) check("--keep-heads", h);
  }
  DumpAnalysis out;
  SynthParams synth;
  if (info.attributes.count("synth_version") && !info.layers.empty()) {
    SynthParams shape;
    const LayerInfo& l0 = info.layers.front();
    shape.n_tokens = l0.n_tokens;
    shape.n_layers = static_cast<int>(info.layers.size());
    shape.n_q_heads = l0.n_q_heads;
    shape.n_kv_heads = l0.n_kv_heads;
    shape.head_dim = l0.head_dim;
    shape.dtype = l0.dtype;
    std::string why;
    out.synth = synth_params_from_attributes(info.attributes, shape, &synth, &why);
    if (!out.synth)  // a broken or foreign synth header: said (also under --quiet), not passed over
      std::fprintf(stderr, "moba analyze: note: %s: %s; the dump is analysed as not synthetic (no snr_synth, "
                           "no model predictions from the synth parameters)\n",
                   info.path.c_str(), why.c_str());
  }

  int64_t total = 0;
  for (const int L : layers) {
    const LayerInfo& l = info.layer(L);
    const int64_t n_heads = heads_in.empty() ? l.n_q_heads : static_cast<int64_t>(heads_in.size());
    total += n_heads * analyze_chunks_per_head(opt, l.n_tokens);
  }
  Progress progress("analyze " + info.path, total, quiet);
  SummaryQueue queue;  // head summaries beside the measurement (GPU-resident analysis)

  // A KV group's tensors: only the query heads needed (all of the group under `shared`, else
  // the analysed span).
  struct GroupTensors {
    int64_t g = 0, q_first = 0;
    std::vector<int64_t> heads;
    Tensor3 q, k, v;
    // One GPU measuring a 16-bit dump: q, k, v as stored (read_raw16_into), uploaded as they
    // are; `q`, `k` and `v` above then stay unread (raw: true).
    Raw16 q16, k16, v16;
    bool raw = false;
    int64_t q_count = 0, n_tokens = 0, head_dim = 0;  // q's heads (from q_first), the layer's shape
    std::shared_ptr<void> gpu;  // q, k, v on the GPU (upload_group_gpu), or null
    // [n_heads, n_tokens, head_dim] views: of the floats, or (raw) shapes without values, which
    // is all the GPU path and the summaries read of a group uploaded beforehand.
    TensorView view(const Tensor3& t, int64_t n_heads) const {
      return raw ? TensorView{nullptr, n_heads, n_tokens, head_dim, n_tokens * head_dim, head_dim, 1} : t.view();
    }
  };
  // Buffers of groups whose summaries are through, refilled by later reads, across layers too:
  // a fresh allocation per group faults in its pages again (B4 on an H200: ~130 ms a group's
  // read, the run's critical path; kernels/cuda/NOTES.md, seventeenth session).
  std::mutex spare_mutex;
  std::vector<GroupTensors> spare;

  for (const int L : layers) {
    const LayerInfo& l = info.layer(L);
    std::vector<int64_t> heads = heads_in;
    if (heads.empty())
      for (int64_t h = 0; h < l.n_q_heads; ++h) heads.push_back(h);
    out.head_dim = l.head_dim;
    out.n_tokens = l.n_tokens;
    const int64_t group = l.n_q_heads / l.n_kv_heads;
    const std::vector<int32_t> planted = l.has_planted ? reader.read_planted(L) : std::vector<int32_t>();
    // The KV groups with analysed heads. On the GPU the next group is read
    // from the dump while the current one is analysed (every HDF5 call holds the library's
    // lock, so the reader and analysis.h5 take turns).
    std::vector<GroupTensors> specs;
    for (int64_t g = 0; g < l.n_kv_heads; ++g) {
      GroupTensors t;
      t.g = g;
      for (const int64_t h : heads)
        if (h / group == g) t.heads.push_back(h);
      if (t.heads.empty()) continue;
      std::sort(t.heads.begin(), t.heads.end());
      specs.push_back(std::move(t));
    }
    // Every query head of the group is read under --gqa shared and for nsa-shared (its row sums
    // the softmaxed gate scores of every head of the group, analysed or not).
    const bool shared = opt.routing.gqa == kernels::GqaMode::shared ||
                        std::find(opt.routers.begin(), opt.routers.end(), RouterKind::nsa_shared) != opt.routers.end();
    auto read_group = [&reader, &opt, &l, L, group, shared, &spare, &spare_mutex](GroupTensors spec) {
      StageTimer timer(opt.profile);
      GroupTensors t;
      {
        std::lock_guard<std::mutex> lock(spare_mutex);
        if (!spare.empty()) {
          t = std::move(spare.back());
          spare.pop_back();
        }
      }
      t.g = spec.g;
      t.heads = std::move(spec.heads);
      t.q_first = shared ? t.g * group : t.heads.front();
      t.q_count = shared ? group : t.heads.back() - t.heads.front() + 1;
      const int64_t q_count = t.q_count;
      const std::string what = "layer " + std::to_string(L) + " group " + std::to_string(t.g);
      // Where one GPU worker measures the group, the thread that read it also uploads it: the
      // next group's upload runs beside this group's heads. A 16-bit dump's values go up as
      // stored where the reader has them so (half the bytes, no widening on the host: B4's
      // read + upload had grown longer than a group's device work; kernels/cuda/NOTES.md,
      // twenty-sixth session).
      const bool one_gpu = gpu_one_worker(opt, l.n_tokens, l.head_dim, t.heads.size());
      t.n_tokens = l.n_tokens, t.head_dim = l.head_dim;
      t.raw = one_gpu && l.dtype != DType::f32 && reader.read_raw16_into(L, TensorKind::q, t.q_first, q_count, &t.q16) &&
              reader.read_raw16_into(L, TensorKind::k, t.g, 1, &t.k16) &&
              reader.read_raw16_into(L, TensorKind::v, t.g, 1, &t.v16);
      if (!t.raw) {
        reader.read_into(L, TensorKind::q, t.q_first, q_count, &t.q);
        reader.read_into(L, TensorKind::k, t.g, 1, &t.k);
        reader.read_into(L, TensorKind::v, t.g, 1, &t.v);
      }
      timer.lap("host: read KV groups (HDF5; prefetched on cuda)", what);
      if (one_gpu) {
        t.gpu = t.raw ? upload_group_gpu16(t.q16.data(), q_count, t.k16.data(), t.v16.data(), l.n_tokens, l.head_dim,
                                           l.dtype)
                      : upload_group_gpu(t.q.view(), t.k.view(), t.v.view(), l.dtype);
        timer.lap("host: upload KV groups (on the reading thread)", what);
      }
      return t;
    };
    const bool prefetch = opt.device == Device::cuda;
    // A group whose summaries may still be running on the queue: its input and result live
    // until then (the summaries read the measures and the input's shape, never its tensors,
    // which go back to `spare` as soon as the group is measured). What a lagging group holds
    // is its summary rows, bucket curves and SNR sums (kilobytes), and, where one of its heads
    // is kept, that head's per-position arrays until the queue has compressed and written them
    // (up to the keep budget, 256 MiB a head by default). So the lag is bounded by groups with
    // kept heads, kKeptLagging of them, and otherwise only by kLagging groups: a kept head's
    // writes (B4: ~0.3 s for head 0's 24 configurations) run beside the next groups'
    // measurement instead of holding up the fifth group (B4 on an H100: 42-103 ms of an idle
    // GPU with a bound of 4 groups of any kind; kernels/cuda/NOTES.md, twenty-sixth session).
    constexpr size_t kKeptLagging = 4, kLagging = 64;
    struct Pending {
      GroupInput in;
      GroupResult result;
      std::shared_future<void> summarised;
      bool kept = false;  // a head of the group keeps per-position arrays
    };
    // Whether analysing `heads` keeps per-position data of one of them (opt.keep's heads, any
    // configuration: an overestimate only tightens the bound).
    const auto keeps_positions = [&opt, h5](const std::vector<int64_t>& heads) {
      if (opt.keep_arrays) return true;
      if (!h5 || opt.keep.level == PositionLevel::none) return false;
      if (opt.keep.heads.empty()) return !heads.empty();
      for (const int64_t h : heads)
        if (std::find(opt.keep.heads.begin(), opt.keep.heads.end(), h) != opt.keep.heads.end()) return true;
      return false;
    };
    size_t kept_pending = 0;
    std::deque<std::unique_ptr<Pending>> pending;
    // On an exception, no queued job may outlive the groups it reads (destroyed after this).
    struct DrainOnExit {
      SummaryQueue& q;
      ~DrainOnExit() {
        try {
          q.drain();
        } catch (...) {
        }
      }
    } drain_on_exit{queue};
    const auto collect = [&out, &queue, &kept_pending](Pending& p) {
      StageTimer timer(false);  // --trace only
      queue.wait(p.summarised);
      kept_pending -= p.kept ? 1 : 0;
      timer.lap("host: wait for a group's summaries", "group " + std::to_string(p.in.kv_head));
      for (auto& x : p.result.rows) out.head_rows.push_back(std::move(x));
      for (auto& x : p.result.buckets) out.buckets.push_back(std::move(x));
      for (auto& x : p.result.snr) out.snr.push_back(std::move(x));
    };
    std::future<GroupTensors> next;
    for (size_t si = 0; si < specs.size(); ++si) {
      // In `pending` from the start: if measuring the group throws, its jobs already queued (a
      // kept head's waits for its arrays) run in drain_on_exit while `in` and `result` still live.
      pending.push_back(std::make_unique<Pending>());
      Pending* const p = pending.back().get();
      GroupTensors cur = si == 0 || !prefetch ? read_group(specs[si]) : next.get();
      if (prefetch && si + 1 < specs.size()) next = std::async(std::launch::async, read_group, specs[si + 1]);
      GroupInput& in = p->in;
      p->kept = keeps_positions(cur.heads);
      kept_pending += p->kept ? 1 : 0;
      in.heads = cur.heads;
      in.layer = L;
      in.kv_head = cur.g;
      in.q = cur.view(cur.q, cur.q_count);
      in.q_head_first = cur.q_first;
      in.k = cur.view(cur.k, 1);
      in.v = cur.view(cur.v, 1);
      in.dtype = l.dtype;
      in.planted = planted.empty() ? nullptr : &planted;
      in.synth = out.synth ? &synth : nullptr;
      in.gpu_inputs = cur.gpu;
      analyze_group_queued(in, opt, &progress, h5, queue, p->result);
      p->summarised = queue.mark();
      // Measured: the tensors (and their GPU copy) are free for the next read; the views keep
      // their shapes, which the summaries read.
      in.q.data = in.k.data = in.v.data = nullptr;
      in.gpu_inputs.reset();
      cur.gpu.reset();
      {
        std::lock_guard<std::mutex> lock(spare_mutex);
        spare.push_back(std::move(cur));
      }
      // The earlier groups' summaries ran beside this group's measurement: collect them.
      while (kept_pending > kKeptLagging || pending.size() > kLagging) {
        collect(*pending.front());
        pending.pop_front();
      }
    }
    if (L == layers.back() && opt.device == Device::cuda && opt.device_work_done) opt.device_work_done();
    for (; !pending.empty(); pending.pop_front()) collect(*pending.front());
    std::stable_sort(out.head_rows.begin(), out.head_rows.end(), [](const SummaryRow& a, const SummaryRow& b) {
      return std::tie(a.key.layer, a.key.head) < std::tie(b.key.layer, b.key.head);
    });
    // Layer and overall rows from every finished layer.
    out.layer_rows = aggregate_rows(out.head_rows, out.snr, out.head_dim, true);
    out.overall_rows = aggregate_rows(out.head_rows, out.snr, out.head_dim, false);
    if (layer_done) layer_done(out, L);
  }
  progress.finish();
  return out;
}

}  // namespace moba::analysis
