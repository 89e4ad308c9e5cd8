// The GPU-resident analysis (analysis/gpu/analyze_gpu.h): the host side that owns the device
// buffers and runs, per KV group and head, the stages of analysis/analyze.cpp as device
// kernels (analysis/gpu/analyze_gpu_kernels.cuh) and the kernels/cuda ops.
#include "analysis/gpu/analyze_gpu.h"
#include "analysis/stage_profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <condition_variable>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/gpu/analyze_gpu_kernels.cuh"
#include "analysis/gpu/block_rows.h"
#include "analysis/gpu/device_util.cuh"
#include "analysis/gpu/warp_rows.cuh"
#include "analysis/selection_bands.h"
#include "kernels/backend.h"
#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/tuning.h"
#include "kernels/dense_pass.h"
#include "kernels/kconv.h"
#include "kernels/moba_attention.h"

namespace moba::analysis {
namespace {

std::atomic<int> last_heads_in_flight{0};  // analyze_gpu_heads_in_flight
std::atomic<int64_t> moments_in_dense_chunks{0};  // analyze_gpu_moments_in_dense
std::atomic<int64_t> row_launches_nc8{0};         // analyze_gpu_row_launches_nc8

using gpu::kMaxCfgPerBlock;
using gpu::kMaxGates;
using gpu::kMaxRows;
using gpu::kMetricCount;
using gpu::kSlots;

using gpu::allow_smem;
using gpu::ck;
using gpu::ck_launch;
using gpu::ck_op;
using gpu::Dev;
using gpu::DevOperand;

template <int THREADS, int IPT>
size_t row_smem() {
  return sizeof(typename gpu::RowKernel<THREADS, IPT>::Smem);
}
template <int THREADS, int IPT>
void launch_row(const gpu::RowArgs& a, int64_t nq) {
  const size_t smem = row_smem<THREADS, IPT>();
  allow_smem(reinterpret_cast<const void*>(gpu::row_kernel<THREADS, IPT>), smem);
  gpu::row_kernel<THREADS, IPT><<<static_cast<unsigned>(nq), THREADS, smem>>>(a);
  ck_launch("row kernel");
}
using gpu::kMaxRowBlocks;

// One warp per query row (gpu::warp_row_kernel) where every router row picks a fixed budget,
// else the block-wide sort of row_kernel (variable budgets rank every block in order). The warp
// kernel with room for 8 configurations a block size takes half the shared memory of the one
// with room for 16, so its CTAs a multiprocessor are capped by registers alone: 8 by default
// (64 registers, then ~1 KB of spill loads a thread, ~0.5 KB since the fiftieth session: 8 B6
// heads' routing rows on an H100 0.734 -> 0.621 s; 6 CTAs 0.695, 7 0.637; the same bits;
// kernels/cuda/NOTES.md, forty-eighth session).
void run_rows(const gpu::RowArgs& a, int64_t nq, int64_t c_max) {
  bool fixed = kernels::cuda_tuning().row_warp;
  for (int si = 0; si < a.n_rows; ++si) fixed = fixed && a.row_mode[si] == gpu::kRowFixed;
  if (fixed) {
    constexpr int W = gpu::kWarpRowWarps;
    const auto launch = [&](auto nc, auto minb) {
      constexpr int NC = decltype(nc)::value, MINB = decltype(minb)::value;
      const size_t smem = W * sizeof(gpu::WarpRowSmemT<NC>);
      const void* k = reinterpret_cast<const void*>(gpu::warp_row_kernel<W, NC, MINB>);
      allow_smem(k, smem);
      gpu::warp_row_kernel<W, NC, MINB><<<static_cast<unsigned>((nq + W - 1) / W), W * 32, smem>>>(a, nq);
      ck_launch("warp row kernel");
      if (NC == 8) row_launches_nc8.fetch_add(1);
    };
    using C8 = std::integral_constant<int, 8>;
    const int ctas = kernels::cuda_tuning().row_ctas;
    if (a.n_cfg > C8::value || ctas == 5)
      launch(std::integral_constant<int, kMaxCfgPerBlock>{}, std::integral_constant<int, 5>{});
    else if (ctas == 6)
      launch(C8{}, std::integral_constant<int, 6>{});
    else if (ctas == 7)
      launch(C8{}, std::integral_constant<int, 7>{});
    else
      launch(C8{}, C8{});
    return;
  }
  gpu::by_row_tier(c_max, [&](auto threads, auto ipt) { launch_row<decltype(threads)::value, decltype(ipt)::value>(a, nq); });
}

// moments_kernel's tiles: q and k [64][d + 1], the scores [64][65].
size_t moments_smem(int d) {
  return (static_cast<size_t>(gpu::kTileQ + gpu::kTileK) * (d + 1) + 64 * 65) * sizeof(float);
}

// One set of routing keys whose token-score moments the SNR probe needs.
struct MomentBuffers {
  Dev<double> sum, sq, pre_sum, pre_sq;
  Dev<float> mx;
  Dev<int32_t> arg, pre_arg;
};

// The tensor-core moments kernel's instantiation for head dim d (<= 128).
template <typename T16>
const void* moments_mma_entry(int d) {
  return d <= 64 ? reinterpret_cast<const void*>(gpu::moments_mma_kernel<64, T16>)
                 : reinterpret_cast<const void*>(gpu::moments_mma_kernel<128, T16>);
}

// The moments' exclusive prefixes over each query's base blocks (prefix_kernel).
void run_prefixes(int64_t t0, int64_t nq, int64_t base, int64_t stride, bool with_arg, MomentBuffers& m) {
  gpu::PrefixArgs p;
  p.t0 = t0, p.base = base, p.stride = stride, p.pre_stride = stride + 1;
  p.sum = m.sum.get(), p.sq = m.sq.get();
  p.mx = m.mx.get(), p.arg = m.arg.get();
  p.pre_sum = m.pre_sum.get(), p.pre_sq = m.pre_sq.get();
  p.pre_arg = with_arg ? m.pre_arg.get() : nullptr;
  gpu::prefix_kernel<<<static_cast<unsigned>(nq), 256>>>(p);
  ck_launch("prefix kernel");
}

// The token-score moments of `keys` and their prefixes. q16 / k16: the same q and keys as
// 16-bit values of `dtype` (a 16-bit dump's own; null for fp32 dumps and conv keys): then, for
// base a multiple of 16, on tensor cores.
void run_moments(const float* q, const float* keys, const uint16_t* q16, const uint16_t* k16, DType dtype, int d,
                 int64_t t0, int64_t nq, int64_t base, int64_t stride, bool with_arg, MomentBuffers& m) {
  gpu::MomentsArgs a;
  a.q = q, a.q_st = d, a.k = keys, a.k_st = d, a.d = d;
  a.t0 = t0, a.nq = nq, a.base = base, a.stride = stride;
  a.sum = m.sum.get(), a.sq = m.sq.get();
  a.mx = with_arg ? m.mx.get() : nullptr;
  a.arg = with_arg ? m.arg.get() : nullptr;
  // The kernel: tensor cores for a 16-bit dump's own q and keys and base a multiple of 16, else
  // fp32 SIMT; picked once, for the occupancy query and the launch.
  const bool mma = q16 && k16 && base % 16 == 0 && d <= 128 && dtype != DType::f32;
  const void* kernel = !mma                   ? reinterpret_cast<const void*>(gpu::moments_kernel)
                       : dtype == DType::bf16 ? moments_mma_entry<__nv_bfloat16>(d)
                                              : moments_mma_entry<__half>(d);
  const int threads = mma ? 128 : 256;
  const size_t smem = mma ? 0 : moments_smem(d);
  if (!mma) allow_smem(kernel, smem);
  // Key ranges: a multiple of lcm(64, base) keys (a base block never straddles two), as many
  // as still fit the grid in one wave of the CTAs an SM holds (4 for the tensor-core kernel at
  // head dim 128, 3 at 64: its registers): the CTAs of a chunk do about the same work, so a
  // second, part-filled wave doubled the time (B6's chunks of 8207 queries: 129 x 5 CTAs on
  // 528 slots).
  int per_sm = 0;
  ck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem), "moments occupancy");
  const int64_t q_tiles = (nq + gpu::kTileQ - 1) / gpu::kTileQ;
  const int64_t unit = std::lcm<int64_t>(gpu::kTileK, base);
  const int64_t n_keys = std::max<int64_t>(((t0 + nq - 1) / base) * base, 1);
  const int64_t want = std::max<int64_t>(1, std::max(per_sm, 1) * kernels::cuda_detail::sm_count() / q_tiles);
  a.split = std::max<int64_t>(unit, (n_keys + want * unit - 1) / (want * unit) * unit);
  const dim3 grid(static_cast<unsigned>(q_tiles), static_cast<unsigned>((n_keys + a.split - 1) / a.split));
  gpu::MomentsMmaArgs b;
  if (mma) {
    b.q = q16, b.k = k16, b.d = d;
    b.t0 = t0, b.nq = nq, b.base = base, b.stride = stride, b.split = a.split;
    b.sum = a.sum, b.sq = a.sq, b.mx = a.mx, b.arg = a.arg;
  }
  void* args[] = {mma ? static_cast<void*>(&b) : static_cast<void*>(&a)};
  ck(cudaLaunchKernel(kernel, grid, dim3(static_cast<unsigned>(threads)), args, smem, nullptr),
     mma ? "moments kernel (mma)" : "moments kernel");
  run_prefixes(t0, nq, base, stride, with_arg, m);
}

// Wall time per stage when profiling (AnalyzeOptions::profile): each stage ends with a device
// synchronisation, so its time is its own (analysis/stage_profile.h sums them).
struct StageClock {
  bool on = false;
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  void lap(const char* stage) {
    if (!on) return;
    ck(cudaDeviceSynchronize(), stage);
    const auto now = std::chrono::steady_clock::now();
    const std::string name = std::string("gpu: ") + stage;
    stage_profile_add(name, std::chrono::duration<double>(now - t).count());
    stage_trace_add(name, "", t, now);
    t = now;
  }
};

// Everything fixed while one KV group is measured.
struct Group {
  const GroupInput& in;
  const AnalyzeOptions& opt;
  const AnalyzePlan& plan;
  int64_t T = 0, d = 0, G = 0;
  int n_routers = 0, n_gates = 0;
  std::vector<int> gate_of_router;         // [ri]
  std::vector<RouterKind> gate_kinds;      // [gi]
  DevOperand q, k, v;
  Dev<float> conv;                         // kconv keys [T, d] when a router needs them
  std::vector<std::vector<Dev<float>>> kbar;  // [gi][bi]: [nb, d]
  // Row routers: every listed router but the oracle, in list order (gpu::RowArgs rows).
  std::vector<int> row_of_router;          // [ri]: si, -1 for the oracle
  std::vector<RouterKind> row_kinds;       // [si]
  std::vector<int> gate_of_row;            // [si]: gi, -1 for the non-gate routers
  // [si][bi]: the block-score keys of the non-gate rows: quest kmin then kmax [2, nb, d],
  // minference-bs, moba-threshold and nsa-shared the pooled keys [nb, d] (moba's); empty
  // otherwise.
  std::vector<std::vector<Dev<float>>> score_keys;
  int64_t base = 1, n_base = 0, chunk = 0;
  // Nested budgets: per block size its configurations by k ascending, and per configuration
  // the next smaller k of its block size (0 for the smallest). The device holds and attends
  // each (configuration, router)'s band of that order (gpu::RowArgs::k_prev), not its whole
  // selection: one block size's bands together cost its largest k, not the sum of its k.
  std::vector<std::vector<int>> by_k;      // [bi]: configuration indices
  std::vector<int> k_prev;                 // [ci]
  int band_k(int slot) const {
    const int ci = slot / n_routers;
    return plan.configs[ci].top_k - k_prev[ci];
  }
  // The queries with a choice at configuration ci are t >= first_choice(ci) (has_choice: t >= k B).
  int64_t first_choice(int ci) const {
    return std::min<int64_t>(T, static_cast<int64_t>(plan.configs[ci].top_k) * plan.configs[ci].block_size);
  }
  // Router ri's slot in the row kernel (gpu::RowArgs): 0 the oracle, 1 + si row si.
  int row_slot(int ri) const { return row_of_router[ri] >= 0 ? 1 + row_of_router[ri] : 0; }
  const float* routing_keys(int gi) const {
    return gate_kinds[gi] == RouterKind::moba_kconv ? conv.get() : k.f32.get();
  }
};

int64_t gcd_of(const std::vector<int64_t>& xs) {
  int64_t g = 0;
  for (const int64_t x : xs) g = std::gcd(g, x);
  return std::max<int64_t>(g, 1);
}

// The row routers of the group and the block-score keys (analysis/router.h block_score_keys)
// of quest, minference-bs, moba-threshold and nsa-shared per block size, on the device.
void setup_score_rows(Group& g) {
  int gi = 0;
  for (int ri = 0; ri < g.n_routers; ++ri) {
    const RouterKind kind = g.opt.routers[ri];
    if (kind == RouterKind::oracle) {
      g.row_of_router.push_back(-1);
      continue;
    }
    g.row_of_router.push_back(static_cast<int>(g.row_kinds.size()));
    g.row_kinds.push_back(kind);
    g.gate_of_row.push_back(router_is_gate(kind) ? gi++ : -1);
  }
  g.score_keys.resize(g.row_kinds.size());
  for (size_t si = 0; si < g.row_kinds.size(); ++si) {
    const RouterKind kind = g.row_kinds[si];
    if (kind != RouterKind::quest && kind != RouterKind::minference_bs && kind != RouterKind::moba_threshold &&
        kind != RouterKind::nsa_shared)
      continue;
    for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi) {
      const int64_t nb = g.plan.n_blocks[bi];
      kernels::BlockPoolParams p;
      p.k = g.k.view32();
      p.block_size = g.plan.block_sizes[bi];
      Dev<float> keys;
      if (kind == RouterKind::quest) {  // min/max: exact key values; the mean is scratch
        keys.resize(static_cast<size_t>(3 * nb * g.d));
        p.pool_dtype = DType::f32;
        p.min = keys.get();
        p.max = keys.get() + nb * g.d;
        p.mean = keys.get() + 2 * nb * g.d;
      } else {  // moba's pooled keys (pooled_keys)
        keys.resize(static_cast<size_t>(nb * g.d));
        p.pool_dtype = g.opt.routing.pool_fp32 ? DType::f32 : g.in.dtype;
        p.mean = keys.get();
      }
      ck_op(kernels::block_pool_cuda(p), "block pool (block-score keys)");
      g.score_keys[si].push_back(std::move(keys));
    }
  }
}

// upload_group_gpu's result: q, k, v on the device once `done` has passed on `stream`.
struct GpuGroupUpload {
  DevOperand q, k, v;
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
  ~GpuGroupUpload() {
    if (done) cudaEventDestroy(done);
    if (stream) cudaStreamDestroy(stream);
  }
};

void setup_group(Group& g) {
  const GroupInput& in = g.in;
  g.T = in.q.n_tokens, g.d = in.q.head_dim, g.G = in.q.n_heads;
  g.n_routers = static_cast<int>(g.opt.routers.size());
  GateIndex gates = gate_index(g.opt.routers);
  g.gate_of_router = std::move(gates.of_router);
  g.gate_kinds = std::move(gates.kinds);
  g.n_gates = static_cast<int>(g.gate_kinds.size());
  if (in.gpu_inputs) {  // uploaded by the thread that read the group (its upload stream)
    auto* up = static_cast<GpuGroupUpload*>(in.gpu_inputs.get());
    g.q = std::move(up->q);
    g.k = std::move(up->k);
    g.v = std::move(up->v);
    ck(cudaStreamWaitEvent(nullptr, up->done, 0), "stream wait");
  } else {
    if (!in.q.data || !in.k.data || !in.v.data)  // a group read as 16-bit for an upload that was not made
      throw std::logic_error("GPU analysis: the group's q, k and v are neither on the device nor on the host");
    g.q.set(in.q, in.dtype);
    g.k.set(in.k, in.dtype);
    g.v.set(in.v, in.dtype);
  }
  const bool need_conv = std::find(g.gate_kinds.begin(), g.gate_kinds.end(), RouterKind::moba_kconv) != g.gate_kinds.end();
  Dev<float> weights;
  if (need_conv) {
    g.conv.resize(static_cast<size_t>(g.T * g.d));
    kernels::KconvParams p;
    p.k = g.k.view32();
    p.width = g.opt.routing.kconv_width;
    if (!g.opt.routing.kconv_weights.empty()) {
      weights.upload(g.opt.routing.kconv_weights.data(), g.opt.routing.kconv_weights.size());
      p.weights = weights.get();
    }
    p.out = g.conv.get();
    ck_op(kernels::kconv_cuda(p), "kconv");
  }
  g.kbar.resize(static_cast<size_t>(g.n_gates));
  for (int gi = 0; gi < g.n_gates; ++gi)
    for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi) {
      Dev<float> kb(static_cast<size_t>(g.plan.n_blocks[bi] * g.d));
      kernels::BlockPoolParams p;
      TensorView keys = g.k.view32();
      keys.data = g.routing_keys(gi);
      p.k = keys;
      p.block_size = g.plan.block_sizes[bi];
      p.pool_dtype = g.opt.routing.pool_fp32 ? DType::f32 : in.dtype;
      p.mean = kb.get();
      ck_op(kernels::block_pool_cuda(p), "block pool");
      g.kbar[gi].push_back(std::move(kb));
    }
  setup_score_rows(g);
  g.k_prev.assign(static_cast<size_t>(g.plan.n_configs()), 0);
  for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi) {
    std::vector<int> cis = g.plan.configs_of_block[bi];
    std::sort(cis.begin(), cis.end(), [&](int a, int b) { return g.plan.configs[a].top_k < g.plan.configs[b].top_k; });
    for (size_t x = 1; x < cis.size(); ++x) g.k_prev[cis[x]] = g.plan.configs[cis[x - 1]].top_k;
    g.by_k.push_back(std::move(cis));
  }
  g.base = gcd_of(g.plan.block_sizes);
  g.n_base = (g.T + g.base - 1) / g.base;
  // Query chunk: as large as the chunk buffers allow (moments: ~48 bytes per (query, base
  // block); masses and scores: 4 bytes per (query, block) per block size and router row).
  // nsa-shared: 8 more (its double sum over the group's heads).
  const bool nsa = std::find(g.row_kinds.begin(), g.row_kinds.end(), RouterKind::nsa_shared) != g.row_kinds.end();
  int64_t per_query = 48 * (g.n_base + 1), nb_max = 1;
  for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi) {
    per_query += 4 * g.plan.n_blocks[bi] * (1 + static_cast<int64_t>(g.row_kinds.size()));
    nb_max = std::max(nb_max, g.plan.n_blocks[bi]);
  }
  if (nsa) per_query += 8 * nb_max;
  // Up to kernels::CudaTuning::chunk_rows queries (32768 by default), a multiple of 64 (the
  // dense pass runs one CTA per 64 queries of the head): per-chunk kernels (dense pass, gate
  // scores, moments) then fill the device (16384 queries give 2 CTAs per SM of an H200). Budget:
  // an eighth of the free device memory, between 256 MB and 8 GB (B6: ~0.5 MB a query, 16384
  // queries; B4: ~145 KB a query, 32768).
  const size_t free_bytes = gpu::device_free_bytes();
  const int64_t budget = std::clamp<int64_t>(static_cast<int64_t>(free_bytes / 8), int64_t{1} << 28, int64_t{1} << 33);
  g.chunk = std::clamp<int64_t>(budget / std::max<int64_t>(per_query, 1), 64, kernels::cuda_tuning().chunk_rows) / 64 * 64;
  g.chunk = std::min(g.chunk, g.T);
}

// Selection buffers a head may hold (HeadBuffers::sel): two where the device has room, else one.
constexpr int kSelBufs = 2;
// Stage 4's streams (output_errors, AttnStreams).
constexpr int kAttnStreams = 16;

// A head's reductions as copied back: pinned, so that the copies stay asynchronous.
struct HeadResults {
  gpu::HostPinned<gpu::MeanOut> means;     // [Reductions::n_jobs]
  gpu::HostPinned<double> quant;           // [n_slots * kMetricCount][3]
  gpu::HostPinned<gpu::SnrTotals> snr;     // [n_gates * n_bs]
  gpu::HostPinned<unsigned long long> sel_count, signal_hits, planted_hits;  // as HeadBuffers'
};
// Two HeadResults for one group's analysis, from a process-wide pool (gpu::IdlePool): a pinned
// allocation or free would wait for the whole device (e.g. the next group's upload), and with
// several GPUs every group runs on a fresh thread. Sets are made on first need, only grown, and
// kept for the process's life (the driver frees pinned memory at exit); pinned memory is
// portable, so one pool serves every device.
class ResultsLease {
 public:
  ResultsLease() {
    for (HeadResults*& s : sets_)
      if (!(s = gpu::IdlePool<HeadResults>::take(0))) s = new HeadResults;
  }
  ~ResultsLease() {
    for (HeadResults* s : sets_) gpu::IdlePool<HeadResults>::give(0, s);
  }
  ResultsLease(const ResultsLease&) = delete;
  ResultsLease& operator=(const ResultsLease&) = delete;
  HeadResults* operator[](int i) const { return sets_[i]; }

 private:
  HeadResults* sets_[2] = {};
};

// What one head keeps on the device from its first chunk to its reductions. Two heads may be in
// flight (analyze_group_gpu), each with a set of its own.
struct HeadBuffers {
  Dev<float> metrics;      // [slot = ci * n_routers + ri][8][T]
  Dev<float> oracle_cov;   // [ci][T]
  // [buf * n_slots + slot]: [window, band_k(slot)], a window's selection bands. kSelBufs buffers
  // where the device has room: window w + 1's chunks (dense pass, routing rows) then run while
  // window w's attention still reads its bands (wait_attention); `cur` is this window's.
  std::vector<Dev<int32_t>> sel;
  int n_sel_bufs = 1, cur = 0, n_slots = 0;
  int32_t* sel_of(int slot) const { return sel[static_cast<size_t>(cur * n_slots + slot)].get(); }
  Dev<float> o_full;              // [T, d]
  Dev<gpu::SnrRow> snr;           // [gi * n_bs + bi][T]
  Dev<gpu::SnrTotals> snr_tot;    // [gi * n_bs + bi]: snr reduced (Reductions::snr_stream)
  Dev<unsigned long long> planted_hits, signal_hits;  // [ci * kSlots + slot], [ci * kMaxGates + gi]
  Dev<unsigned long long> sel_count;  // [ci * kSlots + slot]: variable-budget rows' sum of |S_t|
  const int32_t* planted = nullptr;   // [T]: the head's planted blocks (in the group's upload), or null
  Dev<gpu::MeanJob> mean_jobs;    // the reductions' mean jobs over these arrays (mean_jobs())
  HeadResults* res = nullptr;     // this set's (ResultsLease)
  // done[buf][stream]: the attention of the last window that used selection buffer buf is
  // through on that stream (recorded by output_errors).
  cudaEvent_t done[kSelBufs][kAttnStreams] = {};
  cudaEvent_t reduced = nullptr;  // the head's reductions and their copies into `res` are through
  cudaEvent_t snr_ready = nullptr;  // snr_tot is written
  HeadBuffers() {
    for (auto& d : done)
      for (auto& e : d) ck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
    ck(cudaEventCreateWithFlags(&reduced, cudaEventDisableTiming), "event");
    ck(cudaEventCreateWithFlags(&snr_ready, cudaEventDisableTiming), "event");
  }
  ~HeadBuffers() {
    for (auto& d : done)
      for (auto& e : d) cudaEventDestroy(e);
    cudaEventDestroy(reduced);
    cudaEventDestroy(snr_ready);
  }
  HeadBuffers(const HeadBuffers&) = delete;
  HeadBuffers& operator=(const HeadBuffers&) = delete;
  // Makes `stream` wait for the attention that last read selection buffer `buf`.
  void wait_attention(int buf, cudaStream_t stream) const {
    for (int i = 0; i < kAttnStreams; ++i) ck(cudaStreamWaitEvent(stream, done[buf][i], 0), "stream wait");
  }
};

// Stage 4's scratch per attention stream, shared by the heads in flight (a stream runs their
// units in order): the attention rows of up to n_bands bands ([n_bands][window, d],
// [n_bands][window]) and the running merge of a (block size, router)'s bands ([window, d], [window]).
struct AttnScratch {
  std::vector<Dev<float>> o_band, lse_band, o_acc, lse_acc;
  int64_t window = 0;
  int n_bands = 1;  // bands per attention pass (kernels::moba_attention_bands_cuda)
};

struct ChunkBuffers {
  Dev<float> lse;
  std::vector<Dev<float>> mass;   // [bi]: [chunk, nb]
  Dev<int32_t> top;               // [chunk, n_top]
  std::vector<Dev<float>> scores; // [si]: [chunk, nb_max] (oracle-topp: none)
  Dev<float> qbar;                // [nb_max, d]: minference-bs' mean queries of the chunk's blocks
  Dev<double> nsa_sum;            // [chunk, nb_max]: nsa-shared's sum over the group's heads
  MomentBuffers dump_moments;
  std::vector<MomentBuffers> gate_moments;  // [gi] for gates whose keys are not the dump's
};

void alloc_moments(MomentBuffers& m, int64_t chunk, int64_t stride, bool with_arg) {
  const size_t n = static_cast<size_t>(chunk * stride), np = static_cast<size_t>(chunk * (stride + 1));
  m.sum.resize(n), m.sq.resize(n), m.pre_sum.resize(np), m.pre_sq.resize(np);
  if (with_arg) m.mx.resize(n), m.arg.resize(n), m.pre_arg.resize(np);
}

// Row si's scores [nq, nb] for the chunk's queries at block size bi (analysis/gpu/block_rows.h
// score_rows_cuda): gate scores on the gate's pooled keys, the block-score routers' rows on
// their keys (moba-threshold's and nsa-shared's: moba's pooled keys; nsa-shared's row sums
// every head of the group, all in g.q). oracle-topp: none.
void score_row_chunk(const Group& g, int64_t local, int si, int bi, int64_t t0, int64_t nq, ChunkBuffers& cb) {
  const RouterKind kind = g.row_kinds[si];
  if (kind == RouterKind::oracle_topp) return;
  gpu::ScoreRowSource src;
  src.kind = kind;
  src.q = g.q.f32.get();
  src.n_heads = g.G, src.n_tokens = g.T, src.head_dim = g.d;
  const int gi = g.gate_of_row[si];
  if (kind != RouterKind::sink_window) src.keys = gi >= 0 ? g.kbar[gi][bi].get() : g.score_keys[si][bi].get();
  src.block_size = g.plan.block_sizes[bi], src.n_blocks = g.plan.n_blocks[bi];
  src.qbar = cb.qbar.get(), src.nsa_sum = cb.nsa_sum.get();
  gpu::score_rows_cuda(src, local, t0, nq, cb.scores[si].get());
}

// Stage 3 on the device for one chunk of one head.
void measure_chunk(const Group& g, int64_t local, int64_t t0, int64_t nq, int64_t w0, HeadBuffers& h,
                   ChunkBuffers& cb, StageClock& clock) {
  const AnalyzePlan& plan = g.plan;
  const int d = static_cast<int>(g.d);
  // Dense pass: lse, o_full, block masses, top keys.
  kernels::DensePassParams dp;
  const kernels::Precision prec = g.opt.routing.precision;
  dp.precision = prec;
  dp.q = g.q.operand(prec, local, 1);
  dp.k = g.k.operand(prec);
  dp.v = g.v.operand(prec);
  dp.query_begin = t0;
  dp.query_count = nq;
  dp.lse = cb.lse.get();
  dp.out = h.o_full.get() + t0 * g.d;
  dp.n_block_sizes = plan.n_block_sizes();
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    dp.block_sizes[bi] = plan.block_sizes[bi];
    dp.block_mass[bi] = cb.mass[bi].get();
  }
  dp.top_n = plan.n_top;
  dp.top_index = cb.top.get();
  // The SNR probe's moments of the dump's keys at base 16 come from the dense pass's own score
  // tiles where it runs on the same 16-bit q and k (bit for bit the moments kernel's; one QK^T
  // a head fewer: kernels/cuda/NOTES.md, twenty-seventh session).
  const int64_t stride = g.n_base;
  const bool h16 = g.in.dtype != DType::f32;
  const uint16_t* q16 = h16 ? g.q.h16.get() + local * g.T * g.d : nullptr;
  const uint16_t* k16 = h16 ? g.k.h16.get() : nullptr;
  const bool moments_in_dense = g.n_gates > 0 && g.base == 16 && q16 && dp.q.raw16 == q16 && dp.k.raw16 == k16 &&
                                !kernels::cuda_tuning().moments_apart;
  if (moments_in_dense) {
    moments_in_dense_chunks.fetch_add(1);
    dp.score_sum = cb.dump_moments.sum.get(), dp.score_sq = cb.dump_moments.sq.get();
    dp.score_max = cb.dump_moments.mx.get(), dp.score_arg = cb.dump_moments.arg.get();
    dp.score_stride = stride;
  }
  ck_op(kernels::dense_pass_cuda(dp), "dense pass");
  clock.lap("dense pass");

  const float* qh = g.q.f32.get() + local * g.T * g.d;
  if (g.n_gates > 0) {
    if (moments_in_dense)
      run_prefixes(t0, nq, g.base, stride, true, cb.dump_moments);
    else
      run_moments(qh, g.k.f32.get(), q16, k16, g.in.dtype, d, t0, nq, g.base, stride, true, cb.dump_moments);
    for (int gi = 0; gi < g.n_gates; ++gi)
      if (g.gate_kinds[gi] == RouterKind::moba_kconv)
        run_moments(qh, g.conv.get(), nullptr, nullptr, g.in.dtype, d, t0, nq, g.base, stride, false,
                    cb.gate_moments[gi]);
    clock.lap("token-score moments");
  }
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    const int64_t B = plan.block_sizes[bi], nb = plan.n_blocks[bi];
    const int64_t c_max = (t0 + nq - 1) / B;
    for (int si = 0; si < static_cast<int>(g.row_kinds.size()); ++si) score_row_chunk(g, local, si, bi, t0, nq, cb);
    clock.lap("gate scores");
    gpu::RowArgs a;
    a.t0 = t0, a.T = g.T, a.B = B, a.nb = nb;
    const std::vector<int>& cfgs = plan.configs_of_block[bi];
    a.n_cfg = static_cast<int>(cfgs.size());
    a.n_rows = static_cast<int>(g.row_kinds.size());
    for (int si = 0; si < a.n_rows; ++si) {
      const RouterKind kind = g.row_kinds[si];
      a.row_mode[si] = kind == RouterKind::moba_threshold ? gpu::kRowThreshold
                       : kind == RouterKind::oracle_topp  ? gpu::kRowTopp
                                                          : gpu::kRowFixed;
      a.row_gate[si] = g.gate_of_row[si];
      a.scores[si] = kind == RouterKind::oracle_topp ? nullptr : cb.scores[si].get();
    }
    a.tau = g.opt.routing.tau;
    a.score_scale = 1.0 / std::sqrt(static_cast<double>(g.d));  // select_threshold_host's scale
    a.sel_count = h.sel_count.get();
    a.recent = g.opt.routing.tie == kernels::TieRule::recent;
    a.mass = cb.mass[bi].get();
    a.top = cb.top.get(), a.n_top = plan.n_top, a.top_n = g.opt.top_n;
    for (int jc = 0; jc < a.n_cfg; ++jc) {
      const int ci = cfgs[jc];
      a.top_k[jc] = plan.configs[ci].top_k;
      a.k_prev[jc] = g.k_prev[ci];
      a.cfg_index[jc] = ci;
      a.oracle_cov[jc] = h.oracle_cov.get() + ci * g.T;
      for (int ri = 0; ri < g.n_routers; ++ri) {
        const int slot_in_row = g.row_slot(ri);
        const int slot = ci * g.n_routers + ri;
        a.metric[jc][slot_in_row] = h.metrics.get() + static_cast<int64_t>(slot) * kMetricCount * g.T;
        a.sel[jc][slot_in_row] = h.sel_of(slot);
      }
    }
    a.sel_t0 = w0;
    a.planted_hits = h.planted_hits.get();
    a.signal_hits = h.signal_hits.get();
    a.planted = h.planted;
    a.base = g.base, a.pre_stride = stride + 1;
    for (int gi = 0; gi < g.n_gates; ++gi) {
      const MomentBuffers& m = g.gate_kinds[gi] == RouterKind::moba_kconv ? cb.gate_moments[gi] : cb.dump_moments;
      a.pre_sum[gi] = m.pre_sum.get();
      a.pre_sq[gi] = m.pre_sq.get();
      a.rkeys[gi] = g.routing_keys(gi);
      a.snr[gi] = h.snr.get() + (static_cast<int64_t>(gi) * plan.n_block_sizes() + bi) * g.T;
    }
    a.pre_arg = g.n_gates > 0 ? cb.dump_moments.pre_arg.get() : nullptr;
    a.q = qh, a.q_st = g.d, a.rk_st = g.d, a.d = d;
    run_rows(a, nq, c_max);
    clock.lap("routing + metrics rows");
  }
}

// Stage 4: MoBA attention on each router's selection and its error against o_full.
// A (block size, router)'s budgets are nested: each band is attended once (its bands share
// gather passes, band_pass_size) and merged into the running output of the smaller budgets
// (gpu::band_errors_kernel, a pass's bands in one launch), k ascending on one stream.
// Those chains are independent, and one alone (a single query head) fills little of the
// device: they run on kAttnStreams streams, the costliest first, each on the least loaded
// stream (optionally cut into query parts, opt.attn_split); events order them after the
// selections and before the reductions. A window's rows are the same bits however it is cut
// (kernels/moba_attention.h), so the parts change the time only.
// The default stream does not wait for a window's attention when it ends: the head's
// HeadBuffers::done events mark when it is through (the default stream waits for them before a
// window writes that selection buffer again, the reduction stream before the head's reductions).
struct AttnStreams {
  cudaStream_t s[kAttnStreams] = {};
  cudaEvent_t ready = nullptr;
  AttnStreams() {
    ck(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "event");
    for (int i = 0; i < kAttnStreams; ++i) ck(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking), "stream");
  }
  ~AttnStreams() {
    for (int i = 0; i < kAttnStreams; ++i) cudaStreamDestroy(s[i]);
    cudaEventDestroy(ready);
  }
  AttnStreams(const AttnStreams&) = delete;
  AttnStreams& operator=(const AttnStreams&) = delete;
};

// One (block size, router, query part) of a window: rows [r0, r0 + rn) of it.
struct AttnUnit {
  int bi = 0, ri = 0;
  int64_t r0 = 0, rn = 0;
  double cost = 0;  // keys per row (largest k, causal) x rows, plus a block visit's ~48 keys
};
std::vector<AttnUnit> attention_units(const Group& g, int64_t w0, int64_t wn) {
  // One part by default: B6 on an H200 (8 heads, 14 chains on 16 streams) took 14.3 s of
  // attention in one part and 16.8 s in four (kernels/cuda/NOTES.md, eighth session).
  const int parts = std::max(g.opt.attn_split, 1);
  const int64_t part = std::max<int64_t>(64, ((wn + parts - 1) / parts + 63) / 64 * 64);
  std::vector<AttnUnit> units;
  for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi) {
    const double B = static_cast<double>(g.plan.block_sizes[bi]);
    const double k_max = static_cast<double>(g.plan.configs[g.by_k[bi].back()].top_k);
    for (int ri = 0; ri < g.n_routers; ++ri)
      for (int64_t r0 = 0; r0 < wn; r0 += part) {
        const int64_t rn = std::min(part, wn - r0);
        const double keys = std::min(k_max * B, static_cast<double>(w0 + r0) + 0.5 * static_cast<double>(rn));
        units.push_back({bi, ri, r0, rn, keys * (1.0 + 48.0 / B) * static_cast<double>(rn)});
      }
  }
  std::stable_sort(units.begin(), units.end(), [](const AttnUnit& a, const AttnUnit& b) { return a.cost > b.cost; });
  return units;
}

// The gather path's query rows per CTA for a window's calls. They run side by side, so their
// CTAs are counted together: the largest power of two in [256, 4096] that still gives >=
// kWindowCtasPerSmMany CTAs per multiprocessor over the window's units; where none does, the
// largest in [128, 4096] giving >= kWindowCtasPerSm (the kernel's own rule counts one call's:
// 256 rows for B6's 128K tokens). Results do not depend on it. 8 of B6's heads on an H200,
// attention + error: one band a pass, 256 rows 14.1 s, 1024 rows 10.4 s, 4096 rows 21.5 s;
// bands sharing passes (fuller block lists), 512 rows 7.98 s, 1024 rows 8.84 s, 2048 rows
// 12.03 s (kernels/cuda/NOTES.md, twelfth session). On an H100 with the wgmma rounds (thirty-
// eighth session): 8 B6 heads 512 rows 5.01 s, 256 4.71-4.73 s, 128 4.67-4.68 s; the whole B6
// 26.9 s at 512, 25.9-26.0 s at 256 or 128; B4 (256 rows under either rule) 0.88-0.92 s, at 128
// 0.96-0.99 s.
constexpr int64_t kWindowCtasPerSm = 6;
constexpr int64_t kWindowCtasPerSmMany = 12;
int window_rows(const std::vector<AttnUnit>& units) {
  const int64_t sms = kernels::cuda_detail::sm_count();
  const auto ctas = [&](int r) {
    int64_t n = 0;
    for (const AttnUnit& u : units) n += (u.rn + r - 1) / r;
    return n;
  };
  const auto largest = [&](int least, int64_t per_sm) {
    int rows = 4096;
    while (rows > least && ctas(rows) < per_sm * sms) rows /= 2;
    return rows;
  };
  const int many = largest(256, kWindowCtasPerSmMany);
  return ctas(many) >= kWindowCtasPerSmMany * sms ? many : largest(128, kWindowCtasPerSm);
}

// Bands per attention pass: a (block size, router)'s bands share a gather pass (each key
// block's K/V staged once for all of them) in groups of up to kernels::kMaxAttentionBands, their
// rows kept on the device until merged: at most kBandPassBytes for every stream's, else fewer
// bands a pass (at least one). B6's 8 bands of 32768 rows x (128 + 1) fp32 on 16 streams need
// 2.16 GB (with 2 GiB the eighth band had a pass of its own).
constexpr int64_t kBandPassBytes = int64_t{3} << 30;
int band_pass_size(const Group& g, int64_t window) {
  size_t most = 1;
  for (const auto& cis : g.by_k) most = std::max(most, cis.size());
  const int64_t per_band = kAttnStreams * window * (g.d + 1) * static_cast<int64_t>(sizeof(float));
  const int64_t fit = std::max<int64_t>(1, kBandPassBytes / std::max<int64_t>(per_band, 1));
  return static_cast<int>(std::min<int64_t>({fit, static_cast<int64_t>(most), kernels::kMaxAttentionBands}));
}

// Queries [w0, w0 + wn): the window whose selection bands h.sel_of holds. Of the least loaded
// streams the first from `first_stream` on takes the next unit: the heads in flight start on
// different streams (a stream runs its units in order).
void output_errors(const Group& g, int64_t local, int64_t w0, int64_t wn, HeadBuffers& h, AttnScratch& sc,
                   AttnStreams& st, int first_stream) {
  if (g.d > gpu::kBandErrorMaxD)  // gpu::head_dim_unsupported keeps such dumps off the GPU
    throw std::runtime_error("GPU analysis: head dim " + std::to_string(g.d) + " in the output error");
  ck(cudaEventRecord(st.ready, nullptr), "event record");
  for (int i = 0; i < kAttnStreams; ++i) ck(cudaStreamWaitEvent(st.s[i], st.ready, 0), "stream wait");
  double load[kAttnStreams] = {};
  const std::vector<AttnUnit> units = attention_units(g, w0, wn);
  const int rows = window_rows(units);
  for (const AttnUnit& u : units) {
    int si = first_stream % kAttnStreams;
    for (int x = 1; x < kAttnStreams; ++x) {
      const int y = (first_stream + x) % kAttnStreams;
      if (load[y] < load[si]) si = y;
    }
    load[si] += u.cost;
    const int ri = u.ri;
    kernels::MobaAttentionParams ap;
    const kernels::Precision prec = g.opt.routing.precision;
    ap.precision = prec;
    if (g.opt.routers[ri] == RouterKind::moba_kconv && g.opt.routing.kconv_both) {
      // fp32 conv keys: q and v as typed fp32 values (a raw 16-bit operand cannot join them)
      TensorView cv = g.k.view32();
      cv.data = g.conv.get();
      ap.q = g.q.typed(prec, local, 1);
      ap.k = kernels::Operand(cv);
      ap.v = g.v.typed(prec);
    } else {
      ap.q = g.q.operand(prec, local, 1);
      ap.k = g.k.operand(prec);
      ap.v = g.v.operand(prec);
    }
    ap.q_begin = w0 + u.r0;
    ap.q_count = u.rn;
    ap.block_size = g.plan.block_sizes[u.bi];
    ap.rows_per_cta = rows;
    const std::vector<int>& cis = g.by_k[u.bi];
    // Queries t < k B have no choice at budget k (analysis/metrics.h has_choice): a fixed-budget
    // router's selection is then every block, o = o_full, so the band of k and every larger band
    // are not attended for them (MobaAttentionBand::first_query; band_errors_kernel writes 0
    // and 1). A variable budget (moba-threshold, oracle-topp) may pick fewer: attended.
    const int64_t t_end = w0 + u.r0 + u.rn;
    const bool fixed = !router_is_variable_budget(g.opt.routers[ri]);
    bool first = true;
    // The bands in passes of sc.n_bands (k ascending), then merged one after another.
    for (size_t c0 = 0; c0 < cis.size(); c0 += static_cast<size_t>(sc.n_bands)) {
      const int n = static_cast<int>(std::min(cis.size() - c0, static_cast<size_t>(sc.n_bands)));
      kernels::MobaAttentionBand bands[kernels::kMaxAttentionBands];
      int n_run = 0;  // the leading bands that some query of the part has a choice in
      for (int x = 0; x < n; ++x) {
        const int ci = cis[c0 + static_cast<size_t>(x)], slot = ci * g.n_routers + ri;
        const int64_t kb = g.band_k(slot);
        bands[x].selected = h.sel_of(slot) + u.r0 * kb;
        bands[x].top_k = static_cast<int>(kb);
        bands[x].out = sc.o_band[si].get() + (x * sc.window + u.r0) * g.d;
        bands[x].lse = sc.lse_band[si].get() + x * sc.window + u.r0;
        bands[x].first_query = fixed ? g.first_choice(ci) : 0;
        if (bands[x].first_query < t_end) n_run = x + 1;
      }
      if (n_run > 0) ck_op(kernels::moba_attention_bands_cuda(ap, bands, n_run, st.s[si]), "MoBA attention");
      // The pass's bands merged and measured in one launch (the merge stays in registers).
      gpu::BandErrorArgs ea{};
      for (int x = 0; x < n; ++x) {
        const int slot = cis[c0 + static_cast<size_t>(x)] * g.n_routers + ri;
        float* M = h.metrics.get() + static_cast<int64_t>(slot) * kMetricCount * g.T + w0 + u.r0;
        const auto rel = static_cast<int64_t>(PositionMetric::output_rel_err),
                   cosine = static_cast<int64_t>(PositionMetric::output_cosine);
        ea.band[x] = gpu::BandErrorBand{bands[x].out, bands[x].lse, M + rel * g.T, M + cosine * g.T,
                                        std::clamp<int64_t>(bands[x].first_query - (w0 + u.r0), 0, u.rn)};
      }
      ea.n = n;
      ea.first = first;
      ea.acc = sc.o_acc[si].get() + u.r0 * g.d;
      ea.lse_acc = sc.lse_acc[si].get() + u.r0;
      ea.ref = h.o_full.get() + (w0 + u.r0) * g.d;
      ea.T = u.rn;
      ea.d = static_cast<int>(g.d);
      // 128-thread CTAs: at the kernel's 72 registers a multiprocessor holds seven, 28 warps
      // (two 256-thread CTAs of the earlier 84-register kernel held 16).
      const int64_t threads = 128, blocks = (u.rn * 32 + threads - 1) / threads;
      gpu::band_errors_kernel<<<static_cast<unsigned>(blocks), threads, 0, st.s[si]>>>(ea);
      ck_launch("output error");
      first = false;
    }
  }
  for (int i = 0; i < kAttnStreams; ++i) ck(cudaEventRecord(h.done[h.cur][i], st.s[i]), "event record");
}

// Stage 5a on the device: ConfigStats of every (configuration, router), SNR sums, hits. A
// head's reductions run on a stream of their own once its chunks and attention are through,
// in scratch that every head shares (the stream runs one head's after the other's), and end
// with copies into the head's pinned HeadResults; finish_reductions reads them.
struct Reductions {
  cudaStream_t stream = nullptr;
  cudaStream_t snr_stream = nullptr;  // the SNR sums (enqueue_snr_sums)
  cudaEvent_t chunks = nullptr;  // recorded on the default stream after a head's chunks
  std::vector<int64_t> edges;    // the position buckets
  int n_slots = 0, n_buckets = 0, n_seg = 0, n_snr = 0;
  size_t per_slot_jobs = 0, n_jobs = 0, temp_bytes = 0;
  int64_t n_items = 0;
  Dev<int64_t> seg_begin, seg_end;  // [n_seg]: the quantile segments of the (slot, metric)s
  Dev<gpu::MeanOut> means;          // [n_jobs]
  Dev<float> sorted;                // [n_items]: the segments sorted (NaN last)
  Dev<unsigned char> temp;          // the segmented sort's
  Dev<gpu::QuantileJob> qjobs;      // [n_seg]
  Dev<double> quant;                // [n_seg][3]
  Reductions() {
    ck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    ck(cudaStreamCreateWithFlags(&snr_stream, cudaStreamNonBlocking), "stream");
    ck(cudaEventCreateWithFlags(&chunks, cudaEventDisableTiming), "event");
  }
  ~Reductions() {
    cudaStreamDestroy(stream);
    cudaStreamDestroy(snr_stream);
    cudaEventDestroy(chunks);
  }
  Reductions(const Reductions&) = delete;
  Reductions& operator=(const Reductions&) = delete;
};

// The mean jobs over one head's arrays: per slot and metric its queries with a choice, the
// trailing window and the buckets; then per slot the coverage over all queries; per
// configuration the oracle coverage over its queries with a choice.
std::vector<gpu::MeanJob> mean_jobs(const Group& g, const HeadBuffers& h, const std::vector<int64_t>& edges) {
  const int64_t T = g.T;
  const int n_slots = g.plan.n_configs() * g.n_routers, n_buckets = static_cast<int>(edges.size()) - 1;
  std::vector<gpu::MeanJob> jobs;
  for (int slot = 0; slot < n_slots; ++slot) {
    const int64_t first = g.first_choice(slot / g.n_routers);
    const float* M = h.metrics.get() + static_cast<int64_t>(slot) * kMetricCount * T;
    for (int m = 0; m < kMetricCount; ++m) {
      const float* v = M + m * T;
      jobs.push_back({v, first, T});
      jobs.push_back({v, std::max(first, T - g.plan.trailing), T});
      for (int e = 0; e < n_buckets; ++e) jobs.push_back({v, std::max(first, edges[e]), std::max(first, edges[e + 1])});
    }
    jobs.push_back({M, 0, T});
  }
  for (int ci = 0; ci < g.plan.n_configs(); ++ci) jobs.push_back({h.oracle_cov.get() + ci * T, g.first_choice(ci), T});
  return jobs;
}

// The group's reduction scratch, and each head buffer set's mean jobs and pinned results.
void setup_reductions(const Group& g, Reductions& r, HeadBuffers* heads, int n_heads, const ResultsLease& pinned) {
  const AnalyzePlan& plan = g.plan;
  const int64_t T = g.T;
  r.edges = bucket_edges(T, g.opt.n_buckets, g.opt.bucket_width);
  r.n_slots = plan.n_configs() * g.n_routers;
  r.n_buckets = static_cast<int>(r.edges.size()) - 1;
  r.per_slot_jobs = static_cast<size_t>(kMetricCount * (2 + r.n_buckets) + 1);
  r.n_jobs = static_cast<size_t>(r.n_slots) * r.per_slot_jobs + static_cast<size_t>(plan.n_configs());
  r.n_snr = g.n_gates * plan.n_block_sizes();
  // Quantiles: every (slot, metric) segment [first, T) sorted (NaN last); n of its mean job
  // over the queries with a choice.
  r.n_seg = r.n_slots * kMetricCount;
  r.n_items = static_cast<int64_t>(r.n_seg) * T;
  if (r.n_items > INT32_MAX)
    throw std::runtime_error("GPU analysis: " + std::to_string(r.n_items) +
                             " per-position values per head exceed the segmented sort's 2^31 "
                             "(fewer configurations per run)");
  std::vector<int64_t> seg_begin(static_cast<size_t>(r.n_seg)), seg_end(static_cast<size_t>(r.n_seg));
  for (int slot = 0; slot < r.n_slots; ++slot) {
    const int64_t first = g.first_choice(slot / g.n_routers);
    for (int m = 0; m < kMetricCount; ++m) {
      seg_begin[static_cast<size_t>(slot * kMetricCount + m)] = (static_cast<int64_t>(slot) * kMetricCount + m) * T + first;
      seg_end[static_cast<size_t>(slot * kMetricCount + m)] = (static_cast<int64_t>(slot) * kMetricCount + m + 1) * T;
    }
  }
  r.seg_begin.upload(seg_begin.data(), seg_begin.size());
  r.seg_end.upload(seg_end.data(), seg_end.size());
  r.means.resize(r.n_jobs);
  r.sorted.resize(static_cast<size_t>(r.n_items));
  ck(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, r.temp_bytes, heads[0].metrics.get(), r.sorted.get(),
                                             static_cast<int>(r.n_items), r.n_seg, r.seg_begin.get(), r.seg_end.get()),
     "segmented sort (size)");
  r.temp.resize(r.temp_bytes);
  std::vector<gpu::QuantileJob> qjobs;
  for (int sg = 0; sg < r.n_seg; ++sg) {
    const size_t slot = static_cast<size_t>(sg / kMetricCount), m = static_cast<size_t>(sg % kMetricCount);
    qjobs.push_back({r.sorted.get() + seg_begin[static_cast<size_t>(sg)],
                     r.means.get() + slot * r.per_slot_jobs + m * static_cast<size_t>(2 + r.n_buckets)});
  }
  r.qjobs.upload(qjobs.data(), qjobs.size());
  r.quant.resize(static_cast<size_t>(r.n_seg) * 3);
  for (int x = 0; x < n_heads; ++x) {
    HeadBuffers& h = heads[x];
    h.snr_tot.resize(static_cast<size_t>(std::max(r.n_snr, 1)));
    const std::vector<gpu::MeanJob> jobs = mean_jobs(g, h, r.edges);
    h.mean_jobs.upload(jobs.data(), jobs.size());
    h.res = pinned[x];
    h.res->means.resize(r.n_jobs);
    h.res->quant.resize(static_cast<size_t>(r.n_seg) * 3);
    h.res->snr.resize(static_cast<size_t>(std::max(r.n_snr, 1)));
    h.res->sel_count.resize(h.sel_count.size());
    h.res->signal_hits.resize(h.signal_hits.size());
    h.res->planted_hits.resize(h.planted_hits.size());
  }
}

// Head h's SNR sums per (gate, block size), in query order, into h.snr_tot: on r.snr_stream
// once the head's chunks (whose routing rows write h.snr) are through (r.chunks recorded), so
// beside the head's attention instead of at the end of its reductions, which a group's last
// head runs with the device otherwise idle; r.stream waits for them.
void enqueue_snr_sums(const Group& g, HeadBuffers& h, Reductions& r) {
  if (r.n_snr == 0) return;
  ck(cudaStreamWaitEvent(r.snr_stream, r.chunks, 0), "stream wait");
  gpu::snr_reduce_kernel<<<static_cast<unsigned>(r.n_snr), 256, 0, r.snr_stream>>>(h.snr.get(), g.T, h.snr_tot.get());
  ck_launch("SNR sums");
  ck(cudaEventRecord(h.snr_ready, r.snr_stream), "event record");
  ck(cudaStreamWaitEvent(r.stream, h.snr_ready, 0), "stream wait");
}

// Enqueues head h's reductions on r.stream (which has waited for the head's chunks, its SNR
// sums and attention) and the copies of their results into *h.res.
void enqueue_reductions(const Group& g, HeadBuffers& h, Reductions& r) {
  const cudaStream_t s = r.stream;
  gpu::mean_kernel<<<static_cast<unsigned>(r.n_jobs), 256, 0, s>>>(h.mean_jobs.get(), r.means.get());
  ck_launch("means");
  size_t temp_bytes = r.temp_bytes;
  ck(cub::DeviceSegmentedRadixSort::SortKeys(r.temp.get(), temp_bytes, h.metrics.get(), r.sorted.get(),
                                             static_cast<int>(r.n_items), r.n_seg, r.seg_begin.get(),
                                             r.seg_end.get(), 0, static_cast<int>(sizeof(float) * 8), s),
     "segmented sort");
  const auto quantile_ctas = static_cast<unsigned>((r.n_seg + 127) / 128);
  gpu::quantile_kernel<<<quantile_ctas, 128, 0, s>>>(r.qjobs.get(), r.n_seg, r.quant.get());
  ck_launch("quantiles");
  const auto back = [&](void* dst, const void* src, size_t bytes) {
    ck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "download reductions");
  };
  back(h.res->means.get(), r.means.get(), r.n_jobs * sizeof(gpu::MeanOut));
  back(h.res->quant.get(), r.quant.get(), static_cast<size_t>(r.n_seg) * 3 * sizeof(double));
  if (r.n_snr > 0) back(h.res->snr.get(), h.snr_tot.get(), static_cast<size_t>(r.n_snr) * sizeof(gpu::SnrTotals));
  back(h.res->sel_count.get(), h.sel_count.get(), h.sel_count.size() * sizeof(unsigned long long));
  back(h.res->signal_hits.get(), h.signal_hits.get(), h.signal_hits.size() * sizeof(unsigned long long));
  back(h.res->planted_hits.get(), h.planted_hits.get(), h.planted_hits.size() * sizeof(unsigned long long));
}

// Head h's measures, once its reductions (enqueue_reductions, then h.reduced) are through.
HeadMeasures finish_reductions(const Group& g, int64_t head, const HeadBuffers& h, const Reductions& r) {
  ck(cudaEventSynchronize(h.reduced), "reductions");
  const AnalyzePlan& plan = g.plan;
  const int64_t T = g.T;
  const int n_slots = r.n_slots, n_buckets = r.n_buckets;
  const size_t per_slot_jobs = r.per_slot_jobs;
  const gpu::MeanOut* means = h.res->means.get();
  const double* quant = h.res->quant.get();
  const unsigned long long* sel_count = h.res->sel_count.get();
  HeadMeasures out;
  out.head = head;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto stat = [&](const gpu::MeanOut& m) {
    Stats s;
    s.n = m.n;
    s.mean = m.n > 0 ? m.sum / static_cast<double>(m.n) : nan;
    s.p5 = s.p50 = s.p95 = nan;
    return s;
  };
  for (int slot = 0; slot < n_slots; ++slot) {
    ConfigStats cs;
    const size_t j0 = static_cast<size_t>(slot) * per_slot_jobs;
    cs.buckets.resize(static_cast<size_t>(n_buckets));
    for (int m = 0; m < kMetricCount; ++m) {
      const size_t jm = j0 + static_cast<size_t>(m * (2 + n_buckets));
      Stats c = stat(means[jm]);
      const size_t qi = static_cast<size_t>(slot * kMetricCount + m) * 3;
      if (c.n > 0) c.p5 = quant[qi], c.p50 = quant[qi + 1], c.p95 = quant[qi + 2];
      cs.choice[static_cast<size_t>(m)] = c;
      cs.trailing[static_cast<size_t>(m)] = stat(means[jm + 1]);
      for (int e = 0; e < n_buckets; ++e)
        cs.buckets[static_cast<size_t>(e)][static_cast<size_t>(m)] = stat(means[jm + 2 + static_cast<size_t>(e)]);
    }
    cs.coverage_all_mean = stat(means[j0 + per_slot_jobs - 1]).mean;
    const int ci = slot / g.n_routers;
    cs.oracle_coverage_mean = stat(means[static_cast<size_t>(n_slots) * per_slot_jobs + static_cast<size_t>(ci)]).mean;
    // Realised budget of the variable-budget routers (the fixed ones select exactly k).
    const int ri = slot % g.n_routers;
    if (router_is_variable_budget(g.opt.routers[ri])) {
      const int64_t n = T - g.first_choice(ci);
      cs.selected_mean = n > 0 ? static_cast<double>(sel_count[static_cast<size_t>(ci * kSlots + g.row_slot(ri))]) / n : nan;
    }
    out.stats.push_back(std::move(cs));
  }

  // SNR sums per (gate, block size), in query order.
  for (int x = 0; x < r.n_snr; ++x) {
    const gpu::SnrTotals& t = h.res->snr[static_cast<size_t>(x)];
    SnrStats st;
    st.n_queries = t.n_queries, st.n_pairs = t.n_pairs, st.n_negative = t.n_negative;
    st.sum_d = t.sum_d, st.sum_d2 = t.sum_d2, st.sum_delta_mu = t.delta_mu, st.sum_excess = t.excess;
    st.sum_var_noise = t.var_noise;
    for (int b = 0; b < gpu::kRankBins; ++b) st.rank_hist[static_cast<size_t>(b)] = t.hist[b];
    out.snr.push_back(st);
  }
  const unsigned long long* sig = h.res->signal_hits.get();
  const unsigned long long* pl = h.res->planted_hits.get();
  out.signal_hits.assign(static_cast<size_t>(plan.n_configs() * std::max(g.n_gates, 1)), 0);
  out.planted_hits.assign(static_cast<size_t>(n_slots), 0);
  for (int ci = 0; ci < plan.n_configs(); ++ci) {
    for (int gi = 0; gi < g.n_gates; ++gi)
      out.signal_hits[static_cast<size_t>(ci * g.n_gates + gi)] = static_cast<int64_t>(sig[static_cast<size_t>(ci * kMaxGates + gi)]);
    for (int ri = 0; ri < g.n_routers; ++ri) {
      out.planted_hits[static_cast<size_t>(ci * g.n_routers + ri)] =
          static_cast<int64_t>(pl[static_cast<size_t>(ci * kSlots + g.row_slot(ri))]);
    }
  }
  return out;
}

// Stage 5b: the per-position arrays and selections of the kept (configuration, router)s
// (opt.keep, or all of them with opt.keep_arrays), for the host; the others get their key only.
// What a kept head's assembly reads of its group, copied: the assembly may outlive the group.
struct KeptShape {
  int64_t T = 0;
  int layer = 0, n_routers = 0;
  std::vector<BlockConfig> configs;
  std::vector<RouterKind> routers;
  std::vector<std::vector<int>> by_k;  // Group::by_k
  explicit KeptShape(const Group& g)
      : T(g.T), layer(g.in.layer), n_routers(g.n_routers), configs(g.plan.configs), routers(g.opt.routers),
        by_k(g.by_k) {}
  ConfigKey slot_key(int64_t head, int slot) const {
    const BlockConfig& cfg = configs[static_cast<size_t>(slot / n_routers)];
    return {layer, head, cfg.block_size, cfg.top_k, routers[static_cast<size_t>(slot % n_routers)]};
  }
};
// A kept head's selections and arrays: copied on the device in stream order (the buffers are
// the next window's and the next head's), then copied back and assembled on a thread of its
// own while the next heads run, of this group or the next (analyze_group_gpu hands the
// measures on in head order, this head's as a future).
struct KeptCopy {
  // One (window, block size, router)'s bands up to its largest kept k, as the device held them.
  struct Bands {
    int64_t w0 = 0, wn = 0;
    int bi = 0, ri = 0;
    std::vector<Dev<int32_t>> bands;  // [x]: [wn, widths[x]]
    std::vector<int> widths;
  };
  std::vector<Bands> sel;
  std::vector<char> whole;  // [slot]: keeps its whole selection (keeps_whole_selection)
  std::vector<int> slots;   // the slots whose arrays come back, ascending
  Dev<float> metrics;       // [slots.size()][kMetricCount][T]
  cudaEvent_t ready = nullptr;
};

// Rows [w0, w0 + wn) of the kept whole selections: each band of a (block size, router) up to
// its largest kept k, copied once for all its kept slots.
void copy_selections(const Group& g, const HeadBuffers& h, int64_t w0, int64_t wn, KeptCopy& kc) {
  for (int bi = 0; bi < g.plan.n_block_sizes(); ++bi)
    for (int ri = 0; ri < g.n_routers; ++ri) {
      const std::vector<int>& cis = g.by_k[bi];  // k ascending
      size_t n = cis.size();
      while (n > 0 && !kc.whole[static_cast<size_t>(cis[n - 1] * g.n_routers + ri)]) --n;
      if (n == 0) continue;
      KeptCopy::Bands b;
      b.w0 = w0, b.wn = wn, b.bi = bi, b.ri = ri;
      for (size_t x = 0; x < n; ++x) {
        const int slot = cis[x] * g.n_routers + ri, w = g.band_k(slot);
        b.bands.emplace_back(static_cast<size_t>(wn * w));
        ck(cudaMemcpyAsync(b.bands.back().get(), h.sel_of(slot), static_cast<size_t>(wn * w) * sizeof(int32_t),
                           cudaMemcpyDeviceToDevice, cudaStreamLegacy),
           "copy selections");
        b.widths.push_back(w);
      }
      kc.sel.push_back(std::move(b));
    }
}

// The kept slots' per-position arrays, copied beside the selections in the order of `stream`
// (the reduction stream: after the head's attention wrote the output errors); the copy is
// ready when kc.ready is.
void copy_arrays(const Group& g, const HeadBuffers& h, KeptCopy& kc, cudaStream_t stream) {
  const int64_t per_slot = static_cast<int64_t>(kMetricCount) * g.T;
  kc.metrics.resize(std::max<size_t>(1, kc.slots.size() * static_cast<size_t>(per_slot)), stream);
  for (size_t i = 0; i < kc.slots.size(); ++i)
    ck(cudaMemcpyAsync(kc.metrics.get() + static_cast<int64_t>(i) * per_slot, h.metrics.get() + kc.slots[i] * per_slot,
                       static_cast<size_t>(per_slot) * sizeof(float), cudaMemcpyDeviceToDevice, stream),
       "copy arrays");
  ck(cudaEventCreateWithFlags(&kc.ready, cudaEventDisableTiming), "event");
  ck(cudaEventRecord(kc.ready, stream), "event record");
}

// Stage 5b on the host: the kept (configuration, router)s' arrays and selections (the CPU's
// layout: [T, k], blocks ascending, the current block last, -1 after; the union of a block
// size's bands up to its own k, merge_selection_bands); the others get their key only. The
// copies come back through pinned chunks (gpu::StagingLease; B4's kept head: 66 -> 55 ms, on the
// way to the next group), else from the pageable vectors directly.
void assemble_kept(const KeptShape& g, int64_t head, KeptCopy& kc, HeadMeasures& m) {
  const int64_t T = g.T;
  const int n_slots = static_cast<int>(g.configs.size()) * g.n_routers;
  cudaStream_t stream = nullptr;  // none where nothing comes back (kc.ready unset)
  std::unique_ptr<gpu::StagingLease> lease;
  if (kc.ready) {
    ck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    ck(cudaStreamWaitEvent(stream, kc.ready, 0), "wait event");
    lease = std::make_unique<gpu::StagingLease>();
    if (!lease->ok()) lease.reset();
  }
  const auto download = [&](void* dst, const void* src, size_t bytes) {
    if (!bytes) return;
    if (lease)
      lease->receive(dst, src, bytes, stream);
    else
      ck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "download arrays");
  };
  std::vector<std::vector<int32_t>> kept_sel(static_cast<size_t>(n_slots));
  for (int slot = 0; slot < n_slots; ++slot)
    if (kc.whole[static_cast<size_t>(slot)])
      kept_sel[static_cast<size_t>(slot)].resize(static_cast<size_t>(T * g.configs[slot / g.n_routers].top_k));
  for (KeptCopy::Bands& b : kc.sel) {
    std::vector<std::vector<int32_t>> bands(b.bands.size());
    for (size_t x = 0; x < b.bands.size(); ++x) {
      bands[x].resize(static_cast<size_t>(b.wn * b.widths[x]));
      download(bands[x].data(), b.bands[x].get(), bands[x].size() * sizeof(int32_t));
    }
    ck(cudaStreamSynchronize(stream), "download selections");
    const std::vector<int>& cis = g.by_k[b.bi];
    for (size_t x = 0; x < bands.size(); ++x) {
      const int slot = cis[x] * g.n_routers + b.ri;
      if (!kc.whole[static_cast<size_t>(slot)]) continue;
      const int K = g.configs[cis[x]].top_k;
      const std::vector<int> widths(b.widths.begin(), b.widths.begin() + static_cast<std::ptrdiff_t>(x) + 1);
      merge_selection_bands(bands, widths, b.wn, K, kept_sel[static_cast<size_t>(slot)].data() + b.w0 * K);
    }
  }
  const int64_t per_slot = static_cast<int64_t>(kMetricCount) * T;
  size_t next = 0;
  for (int slot = 0; slot < n_slots; ++slot) {
    const BlockConfig& cfg = g.configs[slot / g.n_routers];
    PositionArrays a;
    a.key = g.slot_key(head, slot);
    if (next >= kc.slots.size() || kc.slots[next] != slot) {
      m.arrays.push_back(std::move(a));  // not kept: the key only, nothing copied back
      continue;
    }
    const float* src = kc.metrics.get() + static_cast<int64_t>(next++) * per_slot;
    a.selected = std::move(kept_sel[static_cast<size_t>(slot)]);
    for (const auto& info : position_metrics()) {
      std::vector<float>& v = a.metric(info.metric);
      v.resize(static_cast<size_t>(T));
      download(v.data(), src + static_cast<int64_t>(info.metric) * T, static_cast<size_t>(T) * sizeof(float));
    }
    a.choice.resize(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) a.choice[static_cast<size_t>(t)] = has_choice(t, cfg.block_size, cfg.top_k) ? 1 : 0;
    m.arrays.push_back(std::move(a));
  }
  if (!kc.ready) return;
  ck(cudaStreamSynchronize(stream), "download arrays");
  lease.reset();  // its chunks' DMAs are through: back to the pool
  ck(cudaStreamDestroy(stream), "stream");
  ck(cudaEventDestroy(kc.ready), "event");
  kc.ready = nullptr;
}

// A device's turn to assemble a kept head (assemble_kept on a thread of its own): one at a time
// per device, across groups, so what the assemblies hold (the head's device copies and host
// arrays) stays bounded. Taken (waiting for the one before) by the thread that starts the
// assembly, given back when the assembly ends, however it ends. The next group's sizes
// (device_free_bytes) may see an assembly's device copies still held: speed, never results.
class AssemblyTurn {
 public:
  explicit AssemblyTurn(int device) : device_(device) {
    State& s = gpu::never_destroyed<State>();
    std::unique_lock<std::mutex> lock(s.mutex);
    s.changed.wait(lock, [&] { return s.busy.count(device_) == 0; });
    s.busy.insert(device_);
  }
  AssemblyTurn(AssemblyTurn&& o) noexcept : device_(o.device_) { o.device_ = -1; }
  AssemblyTurn(const AssemblyTurn&) = delete;
  AssemblyTurn& operator=(const AssemblyTurn&) = delete;
  AssemblyTurn& operator=(AssemblyTurn&&) = delete;
  ~AssemblyTurn() {
    if (device_ < 0) return;
    State& s = gpu::never_destroyed<State>();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.busy.erase(device_);
    }
    s.changed.notify_all();
  }

 private:
  // Process-wide, gpu::never_destroyed: an assembly may end during static destruction.
  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    std::set<int> busy;  // the devices with an assembly running
  };
  int device_;
};

// The devices the GPU analysis has used in this process (release_gpus tears them down).
class UsedDevices {
 public:
  static void add(int device) {
    State& s = gpu::never_destroyed<State>();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.devices.insert(device);
  }
  static std::set<int> all() {
    State& s = gpu::never_destroyed<State>();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.devices;
  }

 private:
  // Process-wide, never_destroyed as AssemblyTurn's.
  struct State {
    std::mutex mutex;
    std::set<int> devices;
  };
};

std::future<HeadMeasures> ready_future(HeadMeasures m) {
  std::promise<HeadMeasures> p;
  p.set_value(std::move(m));
  return p.get_future();
}

}  // namespace

int analyze_gpu_heads_in_flight() { return last_heads_in_flight.load(); }

int64_t analyze_gpu_row_launches_nc8() { return row_launches_nc8.load(); }

int64_t analyze_gpu_moments_in_dense() { return moments_in_dense_chunks.load(); }

void release_gpus() noexcept {
  for (const int device : UsedDevices::all()) {
    const AssemblyTurn turn(device);  // no kept head's arrays still coming back from it
    if (cudaSetDevice(device) != cudaSuccess || cudaDeviceReset() != cudaSuccess) cudaGetLastError();
  }
}

namespace {
// A group's upload on device `device`: a stream of its own, set(q, k, v operands, stream) queued
// on it, then the event setup_group waits for.
template <typename Set>
std::shared_ptr<void> upload_group(int device, Set&& set) {
  ck(cudaSetDevice(device), "cudaSetDevice");
  UsedDevices::add(device);
  auto up = std::make_shared<GpuGroupUpload>();
  ck(cudaStreamCreateWithFlags(&up->stream, cudaStreamNonBlocking), "stream");
  ck(cudaEventCreateWithFlags(&up->done, cudaEventDisableTiming), "event");
  set(up->q, up->k, up->v, up->stream);
  ck(cudaEventRecord(up->done, up->stream), "event record");
  return up;
}
}  // namespace

std::shared_ptr<void> upload_group_gpu(const TensorView& q, const TensorView& k, const TensorView& v, DType dtype,
                                       int device) {
  return upload_group(device, [&](DevOperand& dq, DevOperand& dk, DevOperand& dv, cudaStream_t s) {
    dq.set(q, dtype, s);
    dk.set(k, dtype, s);
    dv.set(v, dtype, s);
  });
}

std::shared_ptr<void> upload_group_gpu16(const uint16_t* q, int64_t q_heads, const uint16_t* k, const uint16_t* v,
                                         int64_t n_tokens, int64_t head_dim, DType dtype, int device) {
  if (dtype == DType::f32) throw std::logic_error("upload_group_gpu16: a 16-bit dtype is needed");
  return upload_group(device, [&](DevOperand& dq, DevOperand& dk, DevOperand& dv, cudaStream_t s) {
    dq.set16(q, q_heads, n_tokens, head_dim, dtype, s);
    dk.set16(k, 1, n_tokens, head_dim, dtype, s);
    dv.set16(v, 1, n_tokens, head_dim, dtype, s);
  });
}

std::string gpu_analysis_unsupported(const AnalyzeOptions& opt, const AnalyzePlan& plan, int64_t head_dim) {
  if (!kernels::cuda_compiled()) return "this build has no CUDA backend";
  if (opt.routing.gqa == kernels::GqaMode::shared) return "--gqa shared is measured on the host";
  if (std::string why = gpu::head_dim_unsupported(head_dim); !why.empty()) return why;
  int n_gates = 0, n_rows = 0;
  for (const RouterKind r : opt.routers) {
    n_gates += router_is_gate(r) ? 1 : 0;
    n_rows += r != RouterKind::oracle ? 1 : 0;
  }
  if (n_gates > kMaxGates) return "more than two gate routers";
  if (n_rows > kMaxRows) return "more than " + std::to_string(kMaxRows) + " routers besides the oracle";
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    if (std::string why = gpu::row_blocks_unsupported(plan.block_sizes[bi], plan.n_blocks[bi]); !why.empty())
      return why;
    if (plan.configs_of_block[bi].size() > static_cast<size_t>(kMaxCfgPerBlock))
      return "more than " + std::to_string(kMaxCfgPerBlock) + " top-k values for one block size";
  }
  if (plan.n_top > 64) return "--top-n above 64";
  return "";
}

void analyze_group_gpu(const GroupInput& in, const AnalyzeOptions& opt, const AnalyzePlan& plan, bool keep_arrays,
                       Progress* progress, const std::function<void(std::future<HeadMeasures>)>& head_done,
                       int device) {
  ck(cudaSetDevice(device), "cudaSetDevice");
  UsedDevices::add(device);
  StageClock clock;
  clock.on = opt.profile;
  Group g{in, opt, plan};
  StageTimer setup_trace(false);  // --trace only: the host's view, no synchronisation
  setup_group(g);
  setup_trace.lap("gpu: group setup (host)", "group " + std::to_string(in.kv_head));
  clock.lap("upload + pooled keys");
  const int64_t T = g.T;
  const int n_slots = plan.n_configs() * g.n_routers;
  ChunkBuffers cb;
  cb.lse.resize(static_cast<size_t>(g.chunk));
  int64_t nb_max = 1;
  for (int bi = 0; bi < plan.n_block_sizes(); ++bi) {
    cb.mass.emplace_back(static_cast<size_t>(g.chunk * plan.n_blocks[bi]));
    nb_max = std::max(nb_max, plan.n_blocks[bi]);
  }
  cb.top.resize(static_cast<size_t>(g.chunk * plan.n_top));
  for (const RouterKind kind : g.row_kinds)
    cb.scores.emplace_back(kind == RouterKind::oracle_topp ? size_t{0} : static_cast<size_t>(g.chunk * nb_max));
  cb.qbar.resize(static_cast<size_t>(nb_max * g.d));
  if (std::find(g.row_kinds.begin(), g.row_kinds.end(), RouterKind::nsa_shared) != g.row_kinds.end())
    cb.nsa_sum.resize(static_cast<size_t>(g.chunk * nb_max));
  if (g.n_gates > 0) alloc_moments(cb.dump_moments, g.chunk, g.n_base, true);
  cb.gate_moments.resize(static_cast<size_t>(g.n_gates));
  for (int gi = 0; gi < g.n_gates; ++gi)
    if (g.gate_kinds[gi] == RouterKind::moba_kconv) alloc_moments(cb.gate_moments[gi], g.chunk, g.n_base, false);

  // The device holds one attention window's selections at a time (attention_window).
  const int64_t window = attention_window(g.opt, plan, g.chunk, true);

  // A head's buffer set: a second selection buffer where it takes at most a sixteenth of the
  // free device memory; a second set (two heads in flight, below) where that set takes at most
  // an eighth.
  int64_t sel_bytes = 0;
  for (int slot = 0; slot < n_slots; ++slot) sel_bytes += window * g.band_k(slot) * static_cast<int64_t>(sizeof(int32_t));
  const size_t free_bytes = gpu::device_free_bytes();
  const int n_sel_bufs = sel_bytes * 16 <= static_cast<int64_t>(free_bytes) ? kSelBufs : 1;
  const int64_t n_snr_rows = std::max(1, g.n_gates * plan.n_block_sizes());
  const int64_t head_floats = static_cast<int64_t>(n_slots) * kMetricCount * T + plan.n_configs() * T + T * g.d;
  const int64_t head_bytes = n_sel_bufs * sel_bytes + head_floats * static_cast<int64_t>(sizeof(float)) +
                             n_snr_rows * T * static_cast<int64_t>(sizeof(gpu::SnrRow));
  // Two heads in flight: head n + 1's chunks (dense pass, routing rows) are enqueued before head
  // n is finished (its results read and handed on), so the device runs them beside head n's
  // attention and reductions instead of draining at every head's end. One under --profile (its
  // stages each end with a device synchronisation) or `--tuning heads_in_flight=1`.
  const int n_flight = !clock.on && kernels::cuda_tuning().heads_in_flight > 1 && in.heads.size() > 1 &&
                               head_bytes * 8 <= static_cast<int64_t>(free_bytes)
                           ? 2
                           : 1;
  HeadBuffers hb[2];
  for (int f = 0; f < n_flight; ++f) {
    HeadBuffers& h = hb[f];
    h.metrics.resize(static_cast<size_t>(n_slots) * kMetricCount * T);
    h.oracle_cov.resize(static_cast<size_t>(plan.n_configs() * T));
    h.n_sel_bufs = n_sel_bufs;
    h.n_slots = n_slots;
    for (int b = 0; b < n_sel_bufs; ++b)
      for (int slot = 0; slot < n_slots; ++slot) h.sel.emplace_back(static_cast<size_t>(window * g.band_k(slot)));
    h.o_full.resize(static_cast<size_t>(T * g.d));
    h.snr.resize(static_cast<size_t>(n_snr_rows * T));
    h.planted_hits.resize(static_cast<size_t>(plan.n_configs() * kSlots));
    h.signal_hits.resize(static_cast<size_t>(plan.n_configs() * kMaxGates));
    h.sel_count.resize(static_cast<size_t>(plan.n_configs() * kSlots));
  }
  AttnScratch sc;
  sc.window = window;
  sc.n_bands = band_pass_size(g, window);
  for (int i = 0; i < kAttnStreams; ++i) {
    sc.o_band.emplace_back(static_cast<size_t>(sc.n_bands * window * g.d));
    sc.o_acc.emplace_back(static_cast<size_t>(window * g.d));
    sc.lse_band.emplace_back(static_cast<size_t>(sc.n_bands * window));
    sc.lse_acc.emplace_back(static_cast<size_t>(window));
  }
  AttnStreams attn_streams;
  Reductions red;
  ResultsLease pinned;
  setup_reductions(g, red, hb, n_flight, pinned);
  last_heads_in_flight.store(n_flight);
  // The planted blocks of the group's query heads [G, T] (synthetic dumps), uploaded once.
  Dev<int32_t> planted;
  if (in.planted && !in.planted->empty()) {
    if (in.planted->size() < static_cast<size_t>((in.q_head_first + g.G) * T))
      throw std::runtime_error("GPU analysis: the planted blocks do not cover the group's query heads");
    planted.upload(in.planted->data() + in.q_head_first * T, static_cast<size_t>(g.G * T));
  }

  // A head in flight in buffer set f: its kept copies (assemble_kept) and its trace interval.
  struct InFlight {
    int64_t head = -1;  // -1: none
    std::unique_ptr<KeptCopy> kc;
    StageTimer trace{false};  // --trace only: first enqueue to the end of the reductions
  };
  InFlight fl[2];
  const auto shape = std::make_shared<const KeptShape>(g);  // for the kept heads' assemblies

  // Head `head`'s device work, in buffer set f: its chunks on the default stream, its attention
  // on the attention streams, its reductions (and a kept head's array copies) on the reduction
  // stream after both, ending with the event hb[f].reduced.
  const auto enqueue = [&](int f, int64_t head) {
    HeadBuffers& h = hb[f];
    InFlight& x = fl[f];
    x.head = head;
    x.trace = StageTimer(false);
    const int64_t local = head - in.q_head_first;
    h.planted_hits.zero();
    h.signal_hits.zero();
    h.sel_count.zero();
    // NaN everywhere first, as the host path's arrays (queries a metric does not define).
    gpu::fill_kernel<<<1024, 256>>>(h.metrics.get(), static_cast<int64_t>(h.metrics.size()));
    ck_launch("metrics init");
    h.planted = planted.size() ? planted.get() + local * T : nullptr;
    x.kc = std::make_unique<KeptCopy>();
    KeptCopy& kc = *x.kc;
    kc.whole.assign(static_cast<size_t>(n_slots), 0);
    for (int slot = 0; slot < n_slots && keep_arrays; ++slot) {
      const ConfigKey key = shape->slot_key(head, slot);
      const bool whole = keeps_whole_selection(g.opt, key);
      kc.whole[static_cast<size_t>(slot)] = whole ? 1 : 0;
      if (whole || g.opt.keep_arrays || g.opt.keep.keeps_arrays(key)) kc.slots.push_back(slot);
    }
    for (int64_t w0 = 0; w0 < T; w0 += window) {
      const int64_t wn = std::min(window, T - w0);
      // This window's selection buffer: free once the attention of the window before that used
      // it is through (with one buffer, the previous window's; the first window's, that of
      // this buffer set's previous head, whose reductions waited for it).
      h.cur = static_cast<int>((w0 / window) % h.n_sel_bufs);
      h.wait_attention(h.cur, nullptr);
      for (int64_t t0 = w0; t0 < w0 + wn; t0 += g.chunk) {
        const int64_t nq = std::min(g.chunk, w0 + wn - t0);
        measure_chunk(g, local, t0, nq, w0, h, cb, clock);
        if (progress) {  // the chunk's own work: the attention and reduction streams may still run
          const int64_t done = (t0 + nq + plan.chunk - 1) / plan.chunk - (t0 + plan.chunk - 1) / plan.chunk;
          ck(cudaStreamSynchronize(nullptr), "chunk");
          progress->advance(done);
        }
      }
      StageTimer enqueue_timer(clock.on);  // the host's part, without a synchronisation
      output_errors(g, local, w0, wn, h, sc, attn_streams, f * kAttnStreams / n_flight);
      enqueue_timer.lap("gpu: MoBA attention + output error: host enqueue (inside it)");
      clock.lap("MoBA attention + output error");
      copy_selections(g, h, w0, wn, kc);
      clock.lap("download arrays");
    }
    ck(cudaEventRecord(red.chunks, nullptr), "event record");
    ck(cudaStreamWaitEvent(red.stream, red.chunks, 0), "stream wait");
    enqueue_snr_sums(g, h, red);
    for (int b = 0; b < h.n_sel_bufs; ++b) h.wait_attention(b, red.stream);
    enqueue_reductions(g, h, red);
    if (keep_arrays && !kc.slots.empty()) copy_arrays(g, h, kc, red.stream);
    ck(cudaEventRecord(h.reduced, red.stream), "event record");
  };

  // The head in buffer set f (if any), once its reductions are through: its measures handed
  // on. A kept head's are assembled on a thread of their own (assemble_kept) and handed on as a
  // pending future, so neither this group's later heads nor the next group wait for them with
  // the device idle (B4: the next group's heads had waited 15-36 ms for the kept head 0, an
  // H100, kernels/cuda/NOTES.md, twenty-fifth session).
  const auto finish = [&](int f) {
    InFlight& x = fl[f];
    if (x.head < 0) return;
    const int64_t head = x.head;
    x.head = -1;
    HeadMeasures m = finish_reductions(g, head, hb[f], red);
    x.trace.lap("gpu: head (first enqueue to reductions)", "head " + std::to_string(head));
    clock.lap("reductions");
    std::unique_ptr<KeptCopy> kc = std::move(x.kc);
    if (keep_arrays && !kc->slots.empty()) {
      AssemblyTurn turn(device);  // after the device's kept head before this one, if it is still assembled
      head_done(std::async(std::launch::async, [shape, head, device, turn = std::move(turn), kc = std::move(kc),
                                                m = std::move(m)]() mutable {
        const AssemblyTurn mine = std::move(turn);  // given back as this returns or throws
        StageTimer trace(false);
        ck(cudaSetDevice(device), "cudaSetDevice");
        try {
          assemble_kept(*shape, head, *kc, m);
        } catch (...) {
          kc.reset();  // on this thread, whose device is theirs (not on whichever thread drops the future)
          throw;
        }
        kc.reset();  // the device copies go back to the pool
        trace.lap("host: a kept head's arrays and selections copied back", "head " + std::to_string(head));
        return std::move(m);
      }));
      clock.lap("download arrays");
    } else {
      if (keep_arrays) assemble_kept(*shape, head, *kc, m);  // every slot's key, nothing to copy back
      clock.lap("download arrays");
      head_done(ready_future(std::move(m)));
    }
    clock.lap("host: hand-off to the summary queue");
  };
  // Left by an exception, the device's work in flight (which uses the buffers above) is waited
  // for before they are freed.
  struct DrainOnThrow {
    const int n = std::uncaught_exceptions();
    ~DrainOnThrow() {
      if (std::uncaught_exceptions() > n) cudaDeviceSynchronize();
    }
  } drain;

  // Head n into buffer set n % n_flight. One set: the previous head is finished first. Two: the
  // previous head is finished after this one's work is enqueued (the set's head before that
  // was finished then).
  int prev = -1;
  for (size_t n = 0; n < in.heads.size(); ++n) {
    const int f = static_cast<int>(n % static_cast<size_t>(n_flight));
    finish(f);
    enqueue(f, in.heads[n]);
    if (n_flight > 1 && prev >= 0) finish(prev);
    prev = f;
  }
  if (prev >= 0) finish(prev);
}

}  // namespace moba::analysis
