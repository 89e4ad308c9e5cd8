#pragma once
// The GPU-resident analysis (DESIGN.md §8: "the analysis runs where --device says, end to
// end"): one KV group of one layer measured on the device — dense pass, pooled keys, gate
// scores, every router's selection for every (B, k), the oracle, every per-position metric,
// the SNR probe and the reductions (means, quantiles, buckets, trailing window, SNR sums).
// Only each head's statistics (analysis/head_summary.h HeadMeasures) and, when asked for,
// its per-position arrays and selections come back to the host.
//
// Device memory per group: its q/k/v once (fp32, plus their 16-bit copies for 16-bit dumps),
// kconv keys and pooled keys per (gate router, block size); per head: o_full [T, d], the
// per-position arrays (8 floats per query and (configuration, router)), the selections
// (T x k int32 per (configuration, router): MoBA attention reads whole selections), SNR rows;
// per query chunk: block masses, gate scores and token-score moments of the chunk.
// Nothing is T x T.
//
// Semantics are analyze's (analysis/analyze.h), numerics the kernels' (docs/gpu.md); results
// agree with the host path within the per-dtype tolerances (tests/gpu).
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "analysis/analyze.h"
#include "analysis/head_summary.h"

namespace moba::analysis {

// Empty when analyze_group_gpu can run `opt` on a layer of this plan and head dim; otherwise
// why not, in words for the user (the caller then runs the host path and says so).
std::string gpu_analysis_unsupported(const AnalyzeOptions& opt, const AnalyzePlan& plan, int64_t head_dim);

// The group's q, k and v uploaded to CUDA device `device` (fp32 and, for 16-bit dumps, their
// 16-bit copies) on a stream of their own, for GroupInput::gpu_inputs: the next KV group's,
// uploaded by the thread that read it while this group's heads run. analyze_group_gpu then
// takes them instead of uploading q, k and v itself.
std::shared_ptr<void> upload_group_gpu(const TensorView& q, const TensorView& k, const TensorView& v, DType dtype,
                                       int device = 0);
// The same from a 16-bit dump's values as stored (DumpReader::read_raw16_into): q [q_heads,
// n_tokens, head_dim], k and v [1, n_tokens, head_dim]; the same device tensors, bit for bit,
// from half the bytes and no widening on the host.
std::shared_ptr<void> upload_group_gpu16(const uint16_t* q, int64_t q_heads, const uint16_t* k, const uint16_t* v,
                                         int64_t n_tokens, int64_t head_dim, DType dtype, int device = 0);

// Measures every head of in.heads on CUDA device `device`, in order, and hands each head's
// measures to `head_done`, in head order, as a future (with keep_arrays, the arrays and
// selections of the configurations opt.keep keeps, or of all with opt.keep_arrays; the others
// carry their key only). A head whose arrays come back is handed on at once, its future ready
// once they are assembled on a thread of its own, which may outlive this call (one such thread
// per device at a time: a later kept head waits for the one before); the others' futures are
// ready. A failed assembly's exception comes from its future. `progress` (null: none) advances
// by the plan's chunks (plan.chunk) as the device's larger chunks complete. Throws
// std::runtime_error naming the failed CUDA step. Every kernel reduces in a fixed order, so a
// head's measures do not depend on the device or on the other heads.
void analyze_group_gpu(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan, bool keep_arrays,
                       Progress* progress, const std::function<void(std::future<HeadMeasures>)>& head_done,
                       int device = 0);

// For a process whose CUDA work is over (`moba analyze` once the last group is measured): waits
// for kept heads' arrays still being copied back (above), then tears down the CUDA context of
// every device the GPU analysis has used (cudaDeviceReset: every device allocation, pinned
// host memory included, is freed). No CUDA call may follow in the process. Throws nothing; the
// context's teardown otherwise comes with the process's exit (70-90 ms on an H100), after
// everything the run still writes.
void release_gpus() noexcept;

// The heads the last analyze_group_gpu call kept in flight (1 or 2: analyze_gpu.cu; for tests).
int analyze_gpu_heads_in_flight();
// Query chunks, since the process began, whose SNR-probe moments the dense pass computed
// (analyze_gpu.cu measure_chunk; for tests).
int64_t analyze_gpu_moments_in_dense();
// Launches, since the process began, of the routing rows' one-warp-a-row kernel with room for 8
// configurations (block sizes with at most 8, unless kernels::CudaTuning::row_ctas is 5;
// analyze_gpu.cu run_rows; for tests).
int64_t analyze_gpu_row_launches_nc8();

}  // namespace moba::analysis
