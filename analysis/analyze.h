#pragma once
// `moba analyze` as a library (DESIGN.md §4, §5, §7): for one KV group of one layer at a
// time, stream query chunks through ONE dense pass per (head, chunk) that serves every block
// size at once (LSE, o_full, per-block masses, top-n keys), route every configuration
// (block size x top-k) with every router from the same chunk, and reduce the chunk into
// per-position metrics and SNR sums before the next.
//
// Memory per analysed head: the KV group's q/k/v slices, o_full [n_tokens, head_dim], and per
// (configuration, router) eight per-position float arrays and its selection for one attention
// window of queries [window, top_k] (analysis/analyze_plan.h attention_window; for the whole
// sequence only where the keep rule keeps it). Per chunk:
// block masses [chunk, n_blocks(B)] per block size. Nothing is n_tokens x n_tokens or
// n_tokens x n_blocks.
//
// GQA `shared`: the oracle, like the gate routers, makes one choice per KV group, from the
// group's summed block masses (the `oracle` of analysis/router.h); it costs one more dense
// pass over the group (block masses only). Oracle coverage and block recall use that choice.
//
// Fixed sparsity (--sparsity s): for each block size B, top_k = max(1, round((1 - s) T / B))
// with T the layer's n_tokens, so top_k * B ~ (1 - s) T is the same for every B; `s` is the
// nominal sparsity 1 - top_k B / T of the MoBA report (causality ignored). The measured causal
// token sparsity is the column sparsity_mean.
//
// Determinism: results do not depend on the thread count (fixed work partition, sums merged
// in a fixed order).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "analysis/analyze_plan.h"
#include "analysis/report.h"
#include "analysis/results_schema.h"
#include "analysis/router.h"
#include "analysis/snr.h"
#include "analysis/summary.h"
#include "analysis/synth.h"
#include "core/dump.h"
#include "core/h5_output.h"
#include "core/progress.h"
#include "core/tensor.h"

namespace moba::analysis {

// Where analyze's steps run for opt.device on a layer of n_tokens x head_dim: empty for the
// CPU; on cuda, "every stage on cuda (GPU-resident analysis)" (analysis/gpu/analyze_gpu.h), or,
// where that path does not take the options, which steps stay on the host and why.
std::string analyze_device_split(const AnalyzeOptions& opt, int64_t n_tokens, int64_t head_dim);

// One KV group of one layer.
struct GroupInput {
  int layer = 0;
  int64_t kv_head = 0;
  TensorView q;                 // the group's query heads [group, T, d] (all of them, in order)
  int64_t q_head_first = 0;     // global index of q's first head
  std::vector<int64_t> heads;   // global query heads to analyse (a subset of the group)
  TensorView k, v;              // [1, T, d]
  DType dtype = DType::f32;     // the dump's element type (pool precision "dump")
  const std::vector<int32_t>* planted = nullptr;  // [n_q_heads, T] of the layer, or null
  const SynthParams* synth = nullptr;              // synth parameters of the dump, or null
  // q, k and v already on the GPU (analysis/gpu/analyze_gpu.h upload_group_gpu), or null
  std::shared_ptr<void> gpu_inputs;
};

struct GroupResult {
  std::vector<SummaryRow> rows;
  std::vector<BucketRow> buckets;
  std::vector<PositionArrays> arrays;  // only with keep_arrays
  // Per (head, B, router with gate scores) SNR sums, for layer / overall pooling.
  using Snr = SnrSums;
  std::vector<Snr> snr;
};

// Analyses the listed heads of one KV group, head by head, in stages: the shared-GQA oracle
// pre-pass (one dense pass over the group), then per head and query chunk the dense pass,
// routing + per-position metrics + SNR probe per (block size, query tile) in parallel, an
// ordered merge; then MoBA attention error per (configuration, router) and the summary rows.
// `h5` (optional) receives per head its tables (analysis/results_schema.h write_head_tables:
// summary rows, bucket curves, SNR rank histograms) and the kept per-position data
// (write_kept_arrays). `progress` advances once per (head, chunk).
GroupResult analyze_group(const GroupInput& in, const AnalyzeOptions& opt, Progress* progress, H5Output* h5);

// Summarises measured heads beside the device's work, in the order they are queued, on two
// host threads: a job's compute part (the summary rows: SNR-model predictions, parallel over
// configurations) on the first, the Commit it returns (buckets, analysis.h5 writes) on the
// second, so one head's writes overlap the next head's rows, and one KV group's summaries the
// next group's measurement (analyze_dump). A job's exception stops the queue: the jobs queued
// after it are dropped (those before it still commit) and the next push or wait rethrows it.
class SummaryQueue {
 public:
  using Commit = std::function<void()>;
  SummaryQueue();
  ~SummaryQueue();  // runs what is queued, then stops
  SummaryQueue(const SummaryQueue&) = delete;
  SummaryQueue& operator=(const SummaryQueue&) = delete;
  void push(std::function<Commit()> job);
  // A marker after the jobs queued so far: it is ready once they ran; wait() waits for it.
  std::shared_future<void> mark();
  void wait(const std::shared_future<void>& marker);
  void drain();  // waits until every job queued so far ran

 private:
  struct Job {
    std::function<Commit()> compute;
    uint64_t seq = 0;     // push order
    bool marker = false;  // runs even after a failure
  };
  struct CommitJob {
    Commit run;
    uint64_t seq = 0;
    bool marker = false;
  };
  // Whether a job is dropped: a failure stops the jobs queued after the failed one (those
  // before it still commit); markers always run. Called with mutex_ held.
  bool dropped(uint64_t seq, bool marker) const { return error_ && !marker && seq > failed_seq_; }
  // The next job of `from` that is not dropped, waiting for one until `done` (false: none left).
  template <typename J>
  bool take(std::deque<J>& from, const bool& done, J* out);
  void run_compute();
  void run_commit();
  void fail(uint64_t seq);  // records the current exception of job `seq` (the earliest job's wins)
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  std::deque<CommitJob> commits_;
  bool closed_ = false, compute_done_ = false;
  uint64_t next_seq_ = 0, failed_seq_ = 0;
  std::exception_ptr error_;
  std::thread compute_thread_, commit_thread_;  // last: start once the members above exist
};

// analyze_group with the head summaries on `queue`: the GPU-resident path queues each head as
// it is measured and returns when the device work is done; `result` is complete once the
// queue has run the jobs queued so far (mark / wait). `in`, the tensors it views, `opt`, `h5`
// and `result` must outlive that. The host path summarises before it returns.
void analyze_group_queued(const GroupInput& in, const AnalyzeOptions& opt, Progress* progress, H5Output* h5,
                          SummaryQueue& queue, GroupResult& result);
// Whether analyze_group_queued measures a group of these heads, tokens and head dim on one GPU
// (GPU-resident, one worker): then its q, k and v may come uploaded (GroupInput::gpu_inputs).
bool gpu_one_worker(const AnalyzeOptions& opt, int64_t n_tokens, int64_t head_dim, size_t n_heads);
// A whole dump: the listed layers (empty = all) and query heads (empty = all), one KV group
// at a time (the group's q/k/v slices are the only tensors held). After each layer,
// `layer_done` sees the results so far (the CLI writes its files there, so finished layers
// are never lost). Throws UsageError for layers or heads the dump does not have, or listed twice.
struct DumpAnalysis {
  std::vector<SummaryRow> head_rows, layer_rows, overall_rows;
  std::vector<BucketRow> buckets;
  std::vector<GroupResult::Snr> snr;
  int64_t head_dim = 0;
  int64_t n_tokens = 0;
  bool synth = false;  // the dump carries synth parameters (snr_synth, planted_* filled)
};
DumpAnalysis analyze_dump(DumpReader& reader, const std::vector<int>& layers, const std::vector<int64_t>& heads,
                          const AnalyzeOptions& opt, bool quiet, H5Output* h5,
                          const std::function<void(const DumpAnalysis&, int layer)>& layer_done);

}  // namespace moba::analysis
